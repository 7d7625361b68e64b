"""What every test module shares: the one runner of the gradcalc command (implemented in
tests/clirun.py), as fixtures and as importable functions. A test that runs the command
uses it, in-process or as a real process, never a runner of its own; this module holds no
expectations about gradcalc's output.

    from clirun import answer, cli, human    # or the fixtures of the same names
    r = cli(["3*a", "a=2", "--json"])        # in-process: monkeypatching reaches it
    r = cli(["3*a", "a=2"], isolate=True)    # a real `python -m gradcalc`, memory-capped
    obj = answer(["3*a", "a=2"])             # --json --check none, exit 0, parsed
    text = human(["3*a", "a=2"], columns=80) # the plain human view, exit 0 or 1
"""
from __future__ import annotations

import os

import pytest

import clirun

# the symbolic check's derivations kept across processes (gradcalc/checks/stored.py) stay
# out of the suite: every test derives afresh (a kept derivation would skip sympy, and its
# time budget, in whichever test ran second) and none writes into the user's cache;
# tests/test_stored.py turns it on, in a directory of its own
os.environ["GRADCALC_NO_CACHE"] = "1"


@pytest.fixture(autouse=True)
def fresh_programs(monkeypatch):
    """Each test starts with compute()'s program cache (api.PROGRAMS) empty: a test that
    patches the op table (a deliberately wrong rule) must not meet a program compiled and
    planned, in an earlier test, with the real one."""
    from gradcalc import api, programs
    monkeypatch.setattr(api, "PROGRAMS", programs.ProgramCache())


@pytest.fixture
def cli():
    """`cli(args, stdin=b"", *, isolate=False, click=False, env=None, cwd=None, timeout=20,
    exe=None, stdout=None) -> clirun.Run`."""
    return clirun.cli


@pytest.fixture
def answer():
    """`answer(args, stdin=b"", **options)`: the object of `gradcalc ARGS --json --check
    none`, asserting a clean exit 0."""
    return clirun.answer


@pytest.fixture
def human():
    """`human(args, stdin=b"", *, columns=100, env=None, **options) -> str`: stdout of the
    plain human view, asserting a clean exit 0 or 1."""
    return clirun.human
