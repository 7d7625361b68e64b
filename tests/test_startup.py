"""Start-up: what a one-liner imports (issue 15, item 7).

`gradcalc '3*a' a=2 --json --check none` loads numpy, click, json and gradcalc's pipeline,
and nothing that only another path needs: not sympy (the symbolic check), rich (the human
view), difflib/heapq ("did you mean", on the error path), tempfile/shutil/random (writing a
--dot file), zipfile/pathlib (.npz), csv (CSV data), shlex (`#:` lines), orjson (large
answers) nor importlib.metadata (`--version`). Each of those costs 0.3-4 ms of start-up.

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
              "pathlib", "csv", "shlex", "orjson", "importlib.metadata"]

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


def imported(*args) -> tuple[set, str]:
    """(modules loaded, stdout) of `gradcalc ARGS` in a fresh interpreter."""
    paths = [ROOT, *site.getsitepackages(), site.getusersitepackages()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    return set(json.loads(proc.stderr.strip().splitlines()[-1])), proc.stdout


def test_a_json_one_liner_imports_only_what_it_uses():
    mods, out = imported("3*a", "a=2", "--json", "--check", "none")
    assert json.loads(out)["grads"] == {"a": 3.0}
    assert "numpy" in mods and "gradcalc.api" in mods          # the probe saw the run
    loaded = [m for m in NOT_NEEDED if m in mods or any(k.startswith(m + ".") for k in mods)]
    assert loaded == []


@pytest.mark.parametrize("args, needs", [
    (["3*aa", "a=2", "--json"], "difflib"),                    # did you mean 'a'?
    (["#: --grad 2\n3*a", "a=2", "--json", "--check", "none"], "shlex"),
    (["sum(x**2)", "x=linspace(0,1,1000)", "--json", "--check", "none"], "orjson"),
])
def test_the_other_paths_still_load_what_they_need(args, needs):
    mods, out = imported(*args)
    assert needs in mods
    assert out.startswith("{")
