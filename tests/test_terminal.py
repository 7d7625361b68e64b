"""What a user of a trusted terminal tool expects, each through a real `gradcalc` process:
options that are not data, expressions that are not options, output files written whole,
exit statuses for signals, closed pipes and full disks (issues 13 and 14)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clirun import ROOT, cli


# ---------------------------------------------------------------- options are not data
@pytest.mark.parametrize("args,typo,suggestion", [
    (["3*a", "a=1", "--jsno"], "--jsno", "--json"),
    (["--jsn"], "--jsn", "--json"),
    (["3*a", "a=1", "--chek", "none"], "--chek", "--check"),
    (["-x", "x=1"], "-x", None),
])
def test_a_mistyped_option_is_an_option_error(args, typo, suggestion):
    """click's own message (its wording differs between click 8.2 and 8.3: "No such option:
    --jsno (Possible options: --json)" / "No such option '--jsno'. Did you mean '--json'?")."""
    r = cli(args, isolate=True)
    r.assert_error("usage")
    assert "No such option" in r.stderr and typo in r.stderr
    if suggestion:
        assert suggestion in r.stderr


@pytest.mark.parametrize("expr,value,grad", [
    ("-tanh(x)", -0.9640275800758169, -0.07065082485316443),
    ("-log(x)", -0.6931471805599453, -0.5),
    ("-softplus(x)", -2.1269280110429727, -0.8807970779778823),
    ("-2*x", -4.0, -2.0),
])
def test_an_expression_that_starts_with_a_minus_is_never_an_option(expr, value, grad):
    r = cli([expr, "x=2", "--json", "--check", "none"], isolate=True)
    assert r.status == 0, r.stderr
    obj = r.json()
    assert obj["output"]["value"] == pytest.approx(value, rel=1e-15)
    assert obj["grads"]["x"] == pytest.approx(grad, rel=1e-15)


def test_an_option_value_may_start_with_a_minus():
    obj = cli(["2*x", "x=1", "-g", "-1", "--json", "--check", "none"], isolate=True).json()
    assert obj["grads"]["x"] == -2.0


# ---------------------------------------------------------------- --dot
def test_dot_dash_writes_the_graph_to_stdout(tmp_path):
    r = cli(["3*a + log(c)", "a=1", "c=2", "--dot", "-"], cwd=str(tmp_path), isolate=True)
    assert r.status == 0
    assert r.stdout.startswith("digraph gradcalc {") and r.stdout.rstrip().endswith("}")
    assert "AddBackward0" in r.stdout
    assert not (tmp_path / "-").exists()


def test_dot_dash_with_json_is_a_usage_error():
    cli(["3*a", "a=1", "--dot", "-", "--json"], isolate=True).assert_error("usage", json_too=True)


def test_dot_replaces_the_file_whole_and_keeps_no_temporary(tmp_path):
    target = tmp_path / "g.dot"
    target.write_text("old\n")
    r = cli(["3*a", "a=1", "--dot", str(target), "--check", "none", "--json"], isolate=True)
    assert r.status == 0
    assert target.read_text().startswith("digraph gradcalc {")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot"]


def test_many_processes_writing_one_dot_path_leave_a_whole_file(tmp_path):
    target = tmp_path / "g.dot"
    # Popen, not the shared runner: the eight processes must run at the same time
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-m", "gradcalc", f"{k}*a + sin(a)", "a=1",
                               "--dot", str(target), "--check", "none", "--json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
             for k in range(8)]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    text = target.read_text()
    assert text.startswith("digraph gradcalc {") and text.rstrip().endswith("}")
    assert text.count("digraph") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot"]


def test_dot_to_a_fifo_nobody_reads_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = cli(["3*a", "a=1", "--dot", str(fifo), "--check", "none"], timeout=20, isolate=True)
    r.assert_error("usage")
    assert "nobody is reading it" in r.stderr


def test_dot_in_a_deleted_working_directory_is_a_usage_error(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    # not the shared runner: the working directory is deleted inside the process, after start
    code = ("import os, sys, runpy; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
            "sys.argv = ['gradcalc', '3*a', 'a=1', '--dot', 'g.dot', '--check', 'none']; "
            "runpy.run_module('gradcalc', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code, str(gone)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("gradcalc: usage error: --dot: cannot write to 'g.dot'")
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------- output that cannot be written
@pytest.mark.parametrize("args", [["3*a", "a=2", "--json"], ["3*a", "a=2"],
                                  ["fit", "mean((w*x - 1)**2)", "x=1,2", "--params", "w=0",
                                   "--json"],
                                  ["fit", "mean((w*x - 1)**2)", "x=1,2", "--params", "w=0"]],
                         ids=["json", "human", "fit-json", "fit-report"])
def test_a_full_disk_on_stdout_is_one_line_and_exit_4(args):
    """(A fit's report on a full disk was an internal error, exit 3.)"""
    with open("/dev/full", "wb") as full:
        r = cli(args, isolate=True, stdout=full, timeout=60)
    assert r.status == 4
    assert r.stderr == "gradcalc: cannot write the output: No space left on device\n"


def test_a_full_disk_under_json_lines_is_exit_4():
    with open("/dev/full", "wb") as full:
        r = cli(["-"], '{"expr": "x", "vars": {"x": 1}}\n', isolate=True, stdout=full, timeout=60)
    assert r.status == 4
    assert "No space left on device" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- signals
def _started(args, **kw):
    """A real gradcalc waiting on its stdin (a pipe kept open), ready for a signal. (Popen,
    not the shared runner, which waits for the end: the signal comes while it runs.)"""
    p = subprocess.Popen([sys.executable, "-m", "gradcalc", *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT, **kw)
    time.sleep(1.5)             # past the imports, blocked reading stdin
    return p


@pytest.mark.parametrize("args", [["x*2", "x=@-"], ["-"]], ids=["one", "json-lines"])
def test_ctrl_c_exits_130_and_says_interrupted(args):
    p = _started(args)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert err.decode() == "gradcalc: interrupted\n"


def test_json_lines_answers_before_an_interrupt_are_whole_lines():
    p = _started(["-"])
    req = json.dumps({"expr": "sum(x*x)", "vars": {"x": "linspace(0, 1, 100000)"},
                      "check": "none", "jacobian": False, "id": 1})
    p.stdin.write(req.encode() + b"\n")
    p.stdin.flush()
    line = p.stdout.readline()
    p.send_signal(signal.SIGINT)
    rest, err = p.communicate(timeout=30)
    assert json.loads(line)["id"] == 1
    assert rest == b""
    assert p.returncode == 130


# ---------------------------------------------------------------- a reader that goes away
@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["human", "json"])
def test_a_closed_pipe_is_exit_0_and_nothing_on_stderr(extra):
    """`gradcalc -f ... | head -1`: rich answered a broken pipe with exit 1 ("a check
    disagreed"); the reader went away, which is no error. (Popen, not the shared runner:
    the pipe is closed while the process writes.)"""
    p = subprocess.Popen([sys.executable, "-m", "gradcalc", "-f",
                          "samples/chinese_logistic_layer.grad", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT, COLUMNS="100"))
    p.stdout.read(1)
    p.stdout.close()              # the reader went away after the first byte
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0
    assert err == b""


# ---------------------------------------------------------------- feedback while it works
def test_brief_is_the_output_each_grad_and_the_verdict():
    r = cli(["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1,0.0001",
             "--brief"], isolate=True, env={"COLUMNS": "80"})
    assert r.status == 0
    lines = r.stdout.splitlines()
    assert lines[:4] == ["y = [22.7918, 39.9459, 61.0794]", "a.grad = [0.3, 3, 0.0003]",
                         "b.grad = [1.2, 16, 0.002]", "c.grad = [0.0166667, 0.142857, 1.25e-05]"]
    assert lines[4].startswith("symbolic check: ✓ agrees with autograd")
    assert len(lines) <= 8


def test_brief_has_a_line_per_second_order_answer_and_its_coverage():
    r = cli(["sum(x**3)", "x=1,2", "--hessian", "--hvp", "x=1,0", "--tangent", "x=0,1",
             "--taylor", "2", "--brief", "--check", "all"], isolate=True,
            env={"COLUMNS": "80"})
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:7] == ["y = 9", "x.grad = [3, 12]", "J·u = 12", "(H·u)[x] = [6, 0]",
                         "diag H[x,x] = [6, 12]", "Taylor 1 = 12", "Taylor 2 = 12"]
    assert lines[7].startswith("symbolic check: ✓ agrees with autograd")
    for kind in ("symbolic", "numeric"):
        at = next(i for i, ln in enumerate(lines) if ln.startswith(f"{kind} check"))
        shown = [ln.strip() for ln in lines[at + 1:] if ln.startswith("  ") and ":" in ln]
        assert {ln.split(":")[0] for ln in shown} >= {"J·u", "Taylor", "H·u", "Hessian"}


SLOW_CHECK = ("import sys, time\n"
              "import gradcalc.checks as checks\n"
              "real = checks.run\n"
              "def slow(kind, context):\n"
              "    time.sleep(60)\n"
              "    return real(kind, context)\n"
              "checks.run = slow\n"
              "from gradcalc.cli import main\n"
              "main(sys.argv[1:])\n")


def test_ctrl_c_during_a_slow_check_keeps_the_answer():
    """A check still running after a moment no longer holds the answer back; Ctrl-C skips
    it, the answer stands, and the exit status is that of an answer without a check."""
    p = subprocess.Popen([sys.executable, "-c", SLOW_CHECK, "3*a + 2*b*b", "a=1", "b=2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT, COLUMNS="100"))
    time.sleep(4)                   # past the view's patience: the answer went out
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    out = out.decode()
    assert p.returncode == 0, err.decode()
    assert "a.grad" in out or "grad = vᵀ·J" in out
    assert "symbolic check: skipped: interrupted (Ctrl-C): the answer above stands unchecked" \
        in " ".join(out.split())
    assert out.index("Why these grads") < out.index("symbolic check")


# ---------------------------------------------------------------- pictures
def test_plot_draws_y_and_its_derivative_over_a_grid():
    r = cli(["x*sin(x)", "x=linspace(-3,3,200)", "--plot", "--brief"], isolate=True,
            env={"COLUMNS": "90"})
    assert r.status == 0, r.stderr
    out = r.stdout
    assert "y over x" in out and "∂y/∂x over x" in out
    assert out.index("y over x") < out.index("∂y/∂x over x") < out.index("x.grad = ")
    assert max(len(line) for line in out.splitlines()) <= 90


def test_plot_writes_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    r = cli(["tanh(x)", "x=linspace(-3,3,50)", "--plot", str(tmp_path / "d.svg"), "--brief"],
            isolate=True)
    assert r.status == 0, r.stderr
    assert (tmp_path / "d.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert "y over x" not in r.stdout


def test_plot_needs_a_grid_and_an_elementwise_output():
    r = cli(["sum(x)", "x=linspace(-3,3,20)", "--plot"], isolate=True)
    r.assert_error("usage")
    assert "1-D grid leaf" in r.stderr


def test_dot_leaves_carry_their_grads():
    r = cli(["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1,0.0001",
             "--dot", "-"], isolate=True)
    assert "grad [0.3, 3, 0.0003]" in r.stdout and "grad [1.2, 16, 0.002]" in r.stdout


def test_jacobian_without_a_cotangent_gives_the_jacobian_alone():
    """--jacobian asks for J: no --grad is needed for it (issue 13, item 6)."""
    r = cli(["tanh(W @ x)", "W=[[1,2],[3,4],[5,6]]", "x=0.1,-0.2", "--jacobian", "--json"],
            isolate=True)
    assert r.status == 0, r.stderr
    obj = r.json()
    assert obj["cotangent"] is None and obj["grads"] == {}
    assert obj["grads_note"].startswith("not computed: no --grad")
    import numpy as np
    W, x = np.array([[1.0, 2], [3, 4], [5, 6]]), np.array([0.1, -0.2])
    d = 1 - np.tanh(W @ x) ** 2           # J_x = diag(1 - tanh^2) W
    np.testing.assert_allclose(obj["jacobian"]["x"], d[:, None] * W, rtol=1e-14)
    assert obj["checks"]["symbolic"]["passed"] is True
    human = cli(["tanh(W @ x)", "W=[[1,2],[3,4],[5,6]]", "x=0.1,-0.2", "--jacobian"],
                isolate=True, env={"COLUMNS": "100"})
    assert human.status == 0
    assert "J = ∂y/∂x" in human.stdout and "not computed: no --grad" in human.stdout
    # without --jacobian the missing cotangent stays the error PyTorch gives
    cli(["tanh(W @ x)", "W=[[1,2],[3,4],[5,6]]", "x=0.1,-0.2"], isolate=True).assert_error(
        "usage")


def _stderr_on_a_terminal(args, stdin=b""):
    """(exit status, stdout, what reached stderr) of `gradcalc ARGS` run with stderr a
    terminal (a pty) and stdout a pipe."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "gradcalc", *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=slave, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT, TERM="xterm"))
    os.close(slave)
    out, _ = p.communicate(stdin, timeout=120)
    seen = b""
    try:
        while True:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            seen += chunk
    except OSError:                 # (the pty's other end closed: all of it was read)
        pass
    os.close(master)
    return p.returncode, out, seen


def test_a_stream_shows_progress_on_a_terminal_stderr_and_keeps_stdout_json():
    """stderr a terminal, stdout a pipe (`gradcalc - > answers.jsonl`): the status line goes
    to the terminal, and stdout holds the answers alone, whole lines of strict JSON."""
    reqs = "".join(json.dumps({"id": k, "expr": "x*2", "vars": {"x": k}}) + "\n"
                   for k in range(5))
    code, out, seen = _stderr_on_a_terminal(["-"], reqs.encode())
    assert code == 0
    lines = out.decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2, 3, 4]
    assert b"\x1b" not in out
    assert b"JSON Lines" in seen


@pytest.mark.parametrize("as_json", [False, True])
def test_a_fit_shows_its_bar_on_a_terminal_stderr_unless_json(as_json):
    """stderr a terminal, stdout a pipe: the fit's progress bar goes to the terminal and the
    report to stdout; with --json there is no bar (and no rich loaded for one), only JSON."""
    args = ["fit", "-f", "samples/fit/german_training.grad", "--data",
            "samples/german_points.csv", "--params", "w=0,0", "--optimizer", "adam", "--lr",
            "0.1", "--epochs", "300", "--batch-size", "10"] + (["--json"] if as_json else [])
    code, out, seen = _stderr_on_a_terminal(args)
    assert code == 0
    if as_json:
        assert json.loads(out)["params"]["w"] == pytest.approx([1.2, -3.4], rel=1e-6)
        assert b"epoch" not in seen
    else:
        assert b"w[0]" in out and b"\x1b" not in out
        assert b"epoch" in seen and b"steps/s" in seen


# ---------------------------------------------------------------- a real terminal (tmux)
def tmux_screen(args, columns, rows=60, env=None):
    """The screen of a tmux pane `columns` wide after `gradcalc ARGS` ran in it (TERM set,
    stdout a terminal, `env`'s variables too): the visible lines, and the raw bytes with
    their escapes."""
    import shlex
    import shutil
    import uuid
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    name = f"gc-{uuid.uuid4().hex[:8]}"
    done = f"__done_{name}__"
    extra = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    cmd = (f"env -u NO_COLOR -u FORCE_COLOR -u COLUMNS {extra}"
           f"PYTHONPATH={shlex.quote(str(ROOT))} TERM=xterm-256color "
           f"{shlex.quote(sys.executable)} -m gradcalc "
           + " ".join(shlex.quote(a) for a in args) + f"; echo {done}; sleep 60")
    for attempt in range(3):
        # a tmux server that another client is starting or ending at the same moment
        # refuses the new session once in a while (seen under load): try again
        made = subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", str(columns),
                               "-y", str(rows), cmd], capture_output=True, text=True)
        if made.returncode == 0:
            break
        time.sleep(0.5)
    assert made.returncode == 0, made.stderr
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = subprocess.run(["tmux", "capture-pane", "-p", "-t", name],
                                   capture_output=True, text=True).stdout
            if done in shown:
                break
            time.sleep(0.2)
        raw = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", name],
                             capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    assert done in shown, shown
    return shown.split(done)[0].rstrip("\n").splitlines(), raw


@pytest.mark.parametrize("columns", [60, 120])
def test_second_order_in_a_real_terminal_at_two_widths(columns):
    """SPEC 9's human view on a real terminal: J·u said as a rate along u, the Hessian as a
    table named by leaf element with its structure, Taylor as a table of orders, and the
    checks' coverage — every line within the width, in colour."""
    lines, raw = tmux_screen(["sum(x**3) + x[0]*x[1]", "x=1,2", "--hessian", "--tangent",
                              "x=1,0", "--taylor", "2"], columns)
    assert all(len(ln) <= columns for ln in lines)
    text = "\n".join(lines)
    assert "how fast y moves when the leaves move along the tangent u" in " ".join(text.split())
    at = next(i for i, ln in enumerate(lines) if ln.startswith("Hessian of y, 2×2"))
    assert "(symmetric)" in lines[at]
    assert lines[at + 1].split() == ["x[0]", "x[1]"]
    assert lines[at + 2].split() == ["x[0]", "6", "1"]
    assert lines[at + 3].split() == ["x[1]", "1", "12"]
    taylor = next(i for i, ln in enumerate(lines) if ln.startswith("Taylor: derivatives"))
    assert lines[taylor + 2].split() == ["1", "5"]         # J·u: 3*1 + x[1] = 5
    assert lines[taylor + 3].split() == ["2", "6"]         # uᵀHu = 6
    assert "Hessian: 4 of 4 entries checked" in text
    assert "\x1b[" in raw                                   # colour on a terminal


@pytest.mark.parametrize("no_color", [False, True])
def test_a_fit_report_in_a_real_terminal(no_color):
    """`gradcalc fit` on a terminal 60 columns wide: its statements, the optimizer's line
    wrapped within the width, the parameter table, and the loss curve (a terminal's picture),
    in colour unless NO_COLOR is set."""
    args = ["fit", "-f", "samples/fit/german_training.grad", "--data",
            "samples/german_points.csv", "--params", "w=0,0", "--optimizer", "adam", "--lr",
            "0.1", "--epochs", "20", "--batch-size", "10", "--dtype", "float32"]
    lines, raw = tmux_screen(args, 60, env={"NO_COLOR": "1"} if no_color else None)
    assert lines[:4] == ["f(x, w) = 2*x*w[0] + x**2*w[1]", "loss = mse_loss(f(x, w), y)",
                         "adam (lr=0.1, betas=0.9,0.999, eps=1e-08, weight_decay=0,",
                         "amsgrad=False), 20 epochs, float32: ran every epoch"]
    at = lines.index("param  value")
    assert lines[at + 1:at + 4] == ["w[0]     1.2", "w[1]    -3.4",
                                    "loss over all data: 7.78152e-14"]
    assert "loss per epoch (log scale)" in lines[at + 5] and lines[at + 6].startswith("\u250c")
    assert all(len(ln) <= 60 for ln in lines)
    assert ("\x1b[" in raw) is not no_color

