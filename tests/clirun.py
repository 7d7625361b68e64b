"""The one way tests run the gradcalc command and read what came out (tests/conftest.py
exposes it as fixtures); no test module writes its own runner. It never decides what a test
expects: it captures, bounds in time and memory, and parses.

Two ways, same result type:

- `cli(args, ...)` calls `gradcalc.cli.main` in this process with its own stdin, stdout and
  stderr (bytes in, bytes out, UTF-8 like a real run), under a SIGALRM time bound. Fast
  enough for a corpus of hundreds of cases, and the way for a test that monkeypatches.
  `click=True` calls the click command itself in standalone mode instead, as click users do.
- `cli(args, ..., isolate=True)` runs `python -m gradcalc` (or `exe`, e.g. the console
  script) of this tree in a subprocess whose address space is capped with RLIMIT_AS, so
  that a regression in a memory limit fails a test (a MemoryError, or a kill) instead of
  taking the machine down; and under a wall-clock timeout. `stdout=` sends its output to a
  file (e.g. /dev/full) instead of capturing it.

`Run` then answers the questions every case asks: the exit status, the error kind (from
stderr's first line, and from the JSON on stdout when JSON was asked for), whether a
traceback or an escape byte appeared anywhere, and how long it took.
"""
from __future__ import annotations

import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ERROR_LINE = re.compile(r"^gradcalc: (syntax|name|call|shape|value|limit|usage) error: (.*)$")
MEMORY_CAP = 3 * 1024**3          # bytes of address space for isolated runs


class Timeout(BaseException):
    """Raised by the alarm: a BaseException, so that the CLI's `except Exception` (internal
    errors) cannot swallow it and report a hang as exit status 3."""


def strict_json(text: str):
    """RFC 8259 only: a bare NaN/Infinity in the output is a failure."""
    def reject(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=reject)


@dataclass
class Run:
    args: list
    status: int
    out: bytes
    err: bytes
    seconds: float
    lines: list = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")

    @property
    def kind(self) -> str | None:
        """The error kind named on stderr's first line, or None."""
        first = self.stderr.split("\n", 1)[0]
        m = ERROR_LINE.match(first)
        return m.group(1) if m else None

    @property
    def message(self) -> str:
        first = self.stderr.split("\n", 1)[0]
        m = ERROR_LINE.match(first)
        return m.group(2) if m else first

    def ok(self):
        """Exit 0, and clean (see assert_clean); the run, for chaining."""
        self.assert_clean()
        assert self.status == 0, (f"exit {self.status} for {self.args!r}\n"
                                  f"stdout: {self.stdout[:500]}\nstderr: {self.stderr[-2000:]}")
        return self

    def json(self):
        """The one JSON object on stdout (--json)."""
        text = self.stdout
        assert text.endswith("\n") and text.count("\n") == 1, f"not one JSON line: {text[:300]!r}"
        return strict_json(text)

    def json_lines(self):
        text = self.stdout
        assert text == "" or text.endswith("\n"), f"unterminated output: {text[-200:]!r}"
        return [strict_json(line) for line in text.splitlines()]

    def assert_clean(self):
        """What no run may ever do: print a traceback, or send an escape byte (ESC, or the
        one-byte CSI) to a pipe."""
        for name, data in (("stdout", self.out), ("stderr", self.err)):
            assert b"Traceback" not in data, f"traceback on {name}:\n{data[-3000:].decode(errors='replace')}"
            assert b"\x1b" not in data, f"escape byte on {name}: {data[:300]!r}"
            assert "\x9b" not in data.decode("utf-8", "replace"), f"CSI on {name}"
        assert self.status in (0, 1, 2), (
            f"exit status {self.status} for {self.args!r}\nstderr: {self.stderr[-2000:]}")

    def assert_error(self, kind: str, *, json_too: bool = False):
        """Exit 2 with a one-line reason of this kind on stderr (plus the text and a caret
        when the error has a position), and the same error as JSON on stdout if asked."""
        self.assert_clean()
        assert self.status == 2, (f"expected exit 2 ({kind}), got {self.status} for "
                                  f"{self.args!r}\nstdout: {self.stdout[:500]}\n"
                                  f"stderr: {self.stderr[:500]}")
        assert self.kind == kind, f"expected a {kind} error, got: {self.stderr[:500]!r}"
        lines = self.stderr.rstrip("\n").split("\n")
        assert self.stderr.endswith("\n")
        assert len(lines) in (1, 3), f"stderr is not a one-line reason (+caret): {lines!r}"
        if len(lines) == 3:
            assert lines[2].strip() == "^", lines
            assert lines[1].startswith("  ") and lines[2].startswith("  ")
            assert len(lines[1]) <= 2 + 6 + 200 * 6, "the echoed line is not shortened"
        if json_too:
            err = self.json()["error"]
            assert err["kind"] == kind
            assert isinstance(err["message"], str) and err["message"]
            assert "position" in err
        return self


def _set(environ, changes: dict):
    """Set each variable of `changes` in `environ`; a value of None unsets it."""
    for k, v in changes.items():
        if v is None:
            environ.pop(k, None)
        else:
            environ[k] = v


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(args, stdin: bytes | str = b"", *, timeout: float = 20.0, isolate: bool = False,
        env: dict | None = None, cwd: str | None = None, click: bool = False,
        exe: list | None = None, stdout=None) -> Run:
    """Run `gradcalc ARGS` with `stdin`; see the module docstring. `env` values of None
    unset a variable."""
    args = [str(a) for a in args]
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    if isolate:
        return _subprocess(args, stdin, timeout, env, cwd, exe, stdout)
    assert exe is None and stdout is None, "exe and stdout= are for isolate=True"
    return _in_process(args, stdin, timeout, env, cwd, click)


def answer(args, stdin: bytes | str = b"", **options):
    """The object of `gradcalc ARGS --json --check none`, asserting a clean exit 0."""
    return cli([*args, "--json", "--check", "none"], stdin, **options).ok().json()


def human(args, stdin: bytes | str = b"", *, columns: int = 100, env: dict | None = None,
          **options) -> str:
    """stdout of the human view of `gradcalc ARGS` at `columns`, on a pipe of a plain terminal
    (neither NO_COLOR nor FORCE_COLOR set), asserting a clean exit 0 or 1."""
    plain = {"COLUMNS": str(columns), "NO_COLOR": None, "FORCE_COLOR": None, "TERM": "dumb"}
    r = cli(args, stdin, env={**plain, **(env or {})}, **options)
    r.assert_clean()
    assert r.status in (0, 1), f"exit {r.status} for {args!r}\nstderr: {r.stderr[-2000:]}"
    return r.stdout


def _subprocess(args, stdin: bytes, timeout: float, env, cwd, exe, stdout) -> Run:
    e = dict(os.environ)
    for k in ("NO_COLOR", "FORCE_COLOR", "COLUMNS"):
        e.pop(k, None)
    # this tree's gradcalc, whatever the working directory
    e["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, e.get("PYTHONPATH")) if p)
    _set(e, env or {})
    t0 = time.monotonic()
    try:
        p = subprocess.run([*(exe or [sys.executable, "-m", "gradcalc"]), *args], input=stdin,
                           stdout=subprocess.PIPE if stdout is None else stdout,
                           stderr=subprocess.PIPE, timeout=timeout, env=e, cwd=cwd or ROOT,
                           preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"gradcalc {args!r} did not finish in {timeout} s")
    return Run(args, p.returncode, p.stdout or b"", p.stderr, time.monotonic() - t0)


def _in_process(args, stdin: bytes, timeout: float, env, cwd, click: bool) -> Run:
    from gradcalc import cli as cli_mod
    from gradcalc.cli import calc
    out_b, err_b = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    saved_cwd = os.getcwd()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out_b, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err_b, encoding="utf-8", errors="backslashreplace",
                                  write_through=True)

    def on_alarm(signum, frame):
        raise Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    status = None
    t0 = time.monotonic()
    try:
        _set(os.environ, env or {})
        if cwd:
            os.chdir(cwd)
        try:
            if click:
                calc.command.main(args, prog_name="gradcalc")
            else:
                cli_mod.main(args)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Timeout:
        raise AssertionError(f"gradcalc {args!r} did not finish in {timeout} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        seconds = time.monotonic() - t0
        mine = sys.stdin, sys.stdout, sys.stderr
        for stream in mine[1:]:
            try:
                stream.flush()
            except Exception:
                pass
        out, err = out_b.getvalue(), err_b.getvalue()
        for stream in mine:                 # so that collecting them does not close anything
            try:
                stream.detach()
            except Exception:
                pass
        sys.stdin, sys.stdout, sys.stderr = saved
        _set(os.environ, saved_env)
        os.chdir(saved_cwd)
    if status is None:
        raise AssertionError(f"gradcalc {args!r} returned without an exit status")
    return Run(args, status, out, err, seconds)
