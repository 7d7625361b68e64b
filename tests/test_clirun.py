"""The shared CLI runner (tests/clirun.py, fixtures in tests/conftest.py) reports what a run
did, the same way in-process and in a real process; and no test module grows a runner of its
own again (issue 9: eight hand-written runners became this one).

Expected numbers: 3*a at a=2 is 6, its grad 3.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# test_checks.py is being rewritten with the checks package: its runner moves here after that
NOT_YET: set = set()


@pytest.mark.parametrize("mode", [{}, {"isolate": True}, {"click": True}],
                         ids=["in-process", "process", "click"])
def test_each_way_gives_the_same_run(cli, mode):
    r = cli(["3*a", "a=2", "--json", "--check", "none"], **mode)
    r.ok()
    obj = r.json()
    assert (obj["output"]["value"], obj["grads"]) == (6.0, {"a": 3.0})
    assert r.stderr == ""


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "process"])
def test_an_error_is_read_from_stderr_and_json(cli, isolate):
    r = cli(["3*a +", "a=2", "--json"], isolate=isolate)
    r.assert_error("syntax", json_too=True)
    assert r.json()["error"]["position"] == 5


def test_answer_and_human(answer, human):
    assert answer(["3*a", "a=2"])["grads"] == {"a": 3.0}
    out = human(["3*a", "a=2", "--check", "none"], columns=60)
    assert "a.grad" in out and max(len(ln) for ln in out.splitlines()) <= 60


def test_env_is_set_for_the_run_and_restored(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "77")
    monkeypatch.delenv("NO_COLOR", raising=False)
    wide = cli(["3*a", "a=2", "--check", "none"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    narrow = cli(["3*a", "a=2", "--check", "none"], env={"COLUMNS": "40"})
    assert max(map(len, wide.ok().stdout.splitlines())) > 40
    assert max(map(len, narrow.ok().stdout.splitlines())) <= 40
    assert os.environ["COLUMNS"] == "77" and "NO_COLOR" not in os.environ


def test_a_hang_fails_the_test_instead_of_the_suite(cli):
    with pytest.raises(AssertionError, match="did not finish in 0.5 s"):
        cli([], isolate=True, exe=[sys.executable, "-c", "import time; time.sleep(30)"],
            timeout=0.5)


def test_no_test_module_runs_gradcalc_its_own_way():
    """click's CliRunner, or `subprocess.run` of gradcalc, outside the shared runner."""
    own = re.compile(r"click\.testing|CliRunner|subprocess\.run\(\s*\[sys\.executable, \"-m\", "
                     r"\"gradcalc\"")
    offenders = [p.name for p in sorted(TESTS.glob("test_*.py"))
                 if p.name not in NOT_YET and p.name != Path(__file__).name
                 and own.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"run gradcalc through tests/clirun.py (conftest): {offenders}"
