"""`--extern NAME=COMMAND` through real gradcalc processes (issue 12, SPEC 11): the German
page's opaque f gives PyTorch's gradient, the answer says which grads rest on finite
differences, the symbolic check says why it cannot look inside, JSON Lines and `fit` use
the externs declared on the command line, and no child process outlives gradcalc."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clirun import ROOT, cli

F = "f=" + sys.executable + " samples/opaque_f.py"
PAGE = ["mse_loss(f(x, w), y)", "--extern", F, "--wrt", "w", "x=linspace(0.1, 1, 10)",
        "w=0,0", "y=2.4*linspace(0.1, 1, 10) - 3.4*linspace(0.1, 1, 10)**2"]


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def test_the_page_gradient_through_an_opaque_program():
    r = cli([*PAGE, "--json"], isolate=True)
    assert r.status == 0, r.stderr
    obj = r.json()
    # PyTorch's exact numbers for the page's first step (samples/german_fit_first_batch.grad)
    assert obj["output"]["value"] == pytest.approx(0.2092948, rel=1e-12)
    assert obj["grads"]["w"] == pytest.approx([0.418, 0.270644], rel=1e-8)
    (fd,) = obj["finite_differences"]["w"]
    assert fd["extern"] == "f" and fd["diff"] == "central"
    assert fd["step"] == pytest.approx(2.220446049250313e-16 ** (1 / 3))
    sym = obj["checks"]["symbolic"]
    assert sym["passed"] is None and "opaque extern f" in sym["skipped"]


def test_the_numeric_check_covers_an_extern():
    r = cli([*PAGE, "--check", "numeric", "--json"], isolate=True)
    assert r.status == 0, r.stderr
    assert r.json()["checks"]["numeric"]["passed"] is True


def test_the_human_view_says_which_grads_rest_on_finite_differences():
    r = cli(PAGE, isolate=True, env={"COLUMNS": "100"})
    assert r.status == 0, r.stderr
    assert "w.grad rests on finite differences through the opaque extern" in r.stdout
    r = cli([*PAGE, "--graph"], isolate=True)
    assert "fBackward" in r.stdout


def test_forward_differences_and_a_step_are_reported():
    r = cli([*PAGE, "--extern-diff", "forward", "--extern-step", "1e-7", "--json"], isolate=True)
    (fd,) = r.json()["finite_differences"]["w"]
    assert (fd["diff"], fd["step"]) == ("forward", 1e-7)
    assert r.json()["grads"]["w"] == pytest.approx([0.418, 0.270644], rel=1e-5)


def test_json_lines_requests_call_the_command_line_externs():
    reqs = [{"id": k, "expr": "sum(f(x, w))", "vars": {"x": [1.0, 2.0], "w": [1.0, k]},
             "wrt": ["w"], "check": "none"} for k in (1.0, 2.0)]
    r = cli(["-", "--extern", F], "".join(json.dumps(q) + "\n" for q in reqs), isolate=True)
    assert r.status == 0, r.stderr
    a, b = r.json_lines()
    # d/dw sum(2*x*w0 + x^2*w1) = [2*sum(x), sum(x^2)] = [6, 5]
    assert a["grads"]["w"] == pytest.approx([6, 5], rel=1e-8)
    assert b["output"]["value"] == pytest.approx(2 * 3 * 1 + 5 * 2.0)


def test_a_request_cannot_declare_an_extern():
    req = {"expr": "f(x)", "vars": {"x": 1}, "extern": {"f": "python3 -c 1"}}
    r = cli(["-"], json.dumps(req) + "\n", isolate=True)
    (ans,) = r.json_lines()
    assert ans["error"]["kind"] == "name"          # f is no function: the field is ignored
    assert "unknown function 'f'" in ans["error"]["message"]


def test_fit_trains_through_the_opaque_program():
    r = cli(["fit", "mse_loss(f(x, w), y)", "--extern", F, "--data",
             "samples/german_points.csv", "--params", "w=0,0", "--lr", "0.1", "--epochs", "20",
             "--batch-size", "10", "--dtype", "float32", "--json"], isolate=True, timeout=120)
    assert r.status == 0, r.stderr
    ref = json.load(open(os.path.join(ROOT, "tests/reference/torch_german_fit.json")))
    assert r.json()["params"]["w"] == pytest.approx(ref["w"], rel=1e-5)


def test_a_command_that_cannot_start_is_a_usage_error():
    r = cli(["f(x)", "x=1", "--extern", "f=/nonexistent/simulator"], isolate=True)
    r.assert_error("usage")
    assert "'f'" in r.stderr


def test_no_child_outlives_ctrl_c():
    hang = "import sys, time\nfor line in sys.stdin:\n    time.sleep(60)\n"
    p = subprocess.Popen([sys.executable, "-m", "gradcalc", "f(x)", "x=1", "--extern",
                          f"f={sys.executable} -c '{hang}'", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    time.sleep(2.0)
    kids = children_of(p.pid)
    assert kids, "the extern was not started"
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode == 130
    time.sleep(0.5)
    for k in kids:
        assert not os.path.exists(f"/proc/{k}") or open(f"/proc/{k}/stat").read().split()[2] == "Z"


def test_an_extern_off_the_outputs_path_does_not_skip_the_symbolic_check():
    r = cli(["u = f(x, w); sum(3*w)", "--extern", F, "x=1,2", "w=1,2", "--json"], isolate=True)
    assert r.status == 0, r.stderr
    sym = r.json()["checks"]["symbolic"]
    assert sym["passed"] is True and sym["elements_checked"] == sym["elements_total"] == 4
