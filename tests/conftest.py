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

import pytest

import clirun


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
