"""Start-up: what a one-liner imports (issue 15, item 7).

`gradcalc '3*a' a=2 --json --check none` loads numpy, click, orjson and gradcalc's pipeline,
and nothing that only another path needs: not sympy (the symbolic check), rich (the human
view), difflib/heapq ("did you mean", on the error path), tempfile/shutil/random (writing a
--dot file), zipfile/pathlib (.npz), csv (CSV data), shlex (`#:` lines) nor
importlib.metadata (`--version`). Each of those costs 0.3-4 ms of start-up.

The process runs with -S and the site directories on PYTHONPATH: this environment's .pth
files (an editable install's finder) import tempfile, zipfile and pathlib before gradcalc
starts, which would hide gradcalc importing them.
"""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOT_NEEDED = ["sympy", "rich", "difflib", "heapq", "tempfile", "shutil", "random", "zipfile",
              "pathlib", "csv", "shlex", "importlib.metadata"]

PROBE = """
import json, sys
from gradcalc.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported(*args, env=None) -> tuple[set, str]:
    """(modules loaded, stdout) of `gradcalc ARGS` in a fresh interpreter (with `env`'s
    variables too; None unsets one)."""
    paths = [ROOT, *site.getsitepackages(), site.getusersitepackages()]
    env = {k: v for k, v in dict(os.environ, **(env or {})).items() if v is not None}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    return set(json.loads(proc.stderr.strip().splitlines()[-1])), proc.stdout


def _not_needed_in(mods):
    return [m for m in NOT_NEEDED if m in mods or any(k.startswith(m + ".") for k in mods)]


def test_a_json_one_liner_imports_only_what_it_uses():
    mods, out = imported("3*a", "a=2", "--json", "--check", "none")
    assert json.loads(out)["grads"] == {"a": 3.0}
    assert "numpy" in mods and "gradcalc.api" in mods          # the probe saw the run
    assert _not_needed_in(mods) == []


def test_the_seed_one_liner_with_a_short_option_imports_only_what_it_uses():
    # benchmark figure 1's command: -g is a short option, which click would first look up
    # as a long one and, failing, build a "Did you mean" with difflib on the way
    mods, out = imported("3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8",
                         "-g", "0.1,1,1e-4", "--json", "--check", "none")
    assert json.loads(out)["grads"]["b"] == [1.2000000000000002, 16.0, 0.002]
    assert _not_needed_in(mods) == []


@pytest.mark.parametrize("option", ["-g", "--grad"])
def test_an_option_without_its_value_is_a_usage_error_that_names_it_as_typed(option):
    # short options reach click under their long names; a missing value must still be named
    # as typed (and never be taken from the `--` that ends the options)
    _, out = imported("3*a", "a=2", "--json", option)
    assert json.loads(out)["error"] == {"kind": "usage", "position": None,
                                        "message": f"Option '{option}' requires an argument."}


@pytest.mark.parametrize("args, needs", [
    (["3*aa", "a=2", "--json"], "difflib"),                    # did you mean 'a'?
    (["#: --grad 2\n3*a", "a=2", "--json", "--check", "none"], "shlex"),
])
def test_the_other_paths_still_load_what_they_need(args, needs):
    mods, out = imported(*args)
    assert needs in mods
    assert out.startswith("{")


GERMAN_FIT = ["fit", "-f", "samples/fit/german_training.grad", "--data",
              "samples/german_points.csv", "--params", "w=0,0", "--optimizer", "adam", "--lr",
              "0.1", "--epochs", "20", "--batch-size", "10", "--dtype", "float32"]


def test_a_gradient_fit_piped_imports_only_what_it_uses():
    # benchmark figure 17a's command: piped, its report has no loss curve, so neither
    # uniplot nor the numpy.ma its labels load; the report is a plain page, so no rich at
    # all (a sixth of the process), and no progress bar (a terminal's stderr only); nor
    # forward mode or lm's module (lm only), nor the JSON writer (orjson: 2-5 ms)
    mods, out = imported(*GERMAN_FIT)
    assert "w[0]" in out and "loss per epoch" not in out
    assert "gradcalc.fit.optimizers" in mods and "gradcalc.view.fit" in mods
    assert [m for m in ("uniplot", "numpy.ma", "readchar", "importlib.metadata", "email",
                        "gradcalc.view.style", "gradcalc.engine.higher",
                        "gradcalc.engine.traced", "sympy", "gradcalc.fit.lm", "orjson",
                        "gradcalc.jsontext") if m in mods] == []
    assert [m for m in mods if m == "rich" or m.startswith("rich.")] == []


def test_a_gradient_fit_as_json_loads_no_rich():
    # a script's fit: no report to draw and no progress bar to show (stderr is no terminal),
    # so none of rich (about 25 ms of the process) loads
    mods, out = imported(*GERMAN_FIT, "--json")
    assert json.loads(out)["params"]["w"] == pytest.approx([1.2, -3.4], rel=1e-5)
    assert "gradcalc.fit.optimizers" in mods and "orjson" in mods
    assert [m for m in mods if m == "rich" or m.startswith("rich.")] == []
    assert "gradcalc.view.fit" not in mods


def test_a_gradient_fit_asked_for_its_curve_draws_it_without_readchar():
    # --plot without a file: the curve in the piped report, drawn by uniplot, but not
    # readchar (uniplot's interactive mode: its import reads importlib.metadata and email)
    mods, out = imported(*GERMAN_FIT, "--plot")
    assert "loss per epoch (log scale)" in out and "uniplot" in mods   # the curve was drawn
    assert [m for m in ("readchar", "importlib.metadata", "email", "rich") if m in mods] == []


def test_uniplot_without_readchar_leaves_the_real_readchar_to_whoever_asks():
    code = ("import sys\n"
            "from gradcalc.view.plot import curve_lines\n"
            "lines = curve_lines([0.0, 1.0, 2.0], [[1.0, 4.0, 9.0]], width=40, height=4)\n"
            "assert 'readchar' not in sys.modules and len(lines) > 4\n"
            "import readchar, uniplot.uniplot as u\n"
            "assert readchar.readkey.__module__.startswith('readchar')   # the real one\n"
            "assert u.key.LEFT == readchar.key.LEFT and callable(u.readkey)\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT, timeout=60)
    assert proc.stdout == "ok\n", proc.stderr


def test_a_repeated_checked_one_liner_reads_its_derivation_instead_of_importing_sympy(tmp_path):
    # benchmark figure 2's command, the second time: its symbolic check's derivation was
    # kept by the first run (gradcalc/checks/stored.py)
    seed = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1,1e-4"]
    env = {"GRADCALC_CACHE_DIR": str(tmp_path), "GRADCALC_NO_CACHE": None}
    first, out1 = imported(*seed, env=env)
    second, out2 = imported(*seed, env=env)
    assert "sympy" in first and "sympy" not in second and "mpmath" not in second
    assert out1 == out2 and "symbolic check:" in out2 and "4·b" in out2
