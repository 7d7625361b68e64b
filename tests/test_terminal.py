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
@pytest.mark.parametrize("args,says", [
    (["3*a", "a=1", "--jsno"], "No such option '--jsno'"),
    (["--jsn"], "Did you mean '--json'?"),
    (["3*a", "a=1", "--chek", "none"], "No such option '--chek'"),
    (["-x", "x=1"], "No such option '-x'"),
])
def test_a_mistyped_option_is_an_option_error(args, says):
    r = cli(args, isolate=True)
    r.assert_error("usage")
    assert says in r.stderr


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
@pytest.mark.parametrize("extra", [["--json"], []], ids=["json", "human"])
def test_a_full_disk_on_stdout_is_one_line_and_exit_4(extra):
    with open("/dev/full", "wb") as full:
        r = cli(["3*a", "a=2", *extra], isolate=True, stdout=full, timeout=60)
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
