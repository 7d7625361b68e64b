"""Opaque external functions (SPEC section 11): `--extern NAME=COMMAND` as an op of one run.

It owns the co-process (started without a shell in its own process group, one JSON line each
way per call, a batch of calls streamed by a writer thread, a per-call timeout, the child's
stderr kept for error messages), the shapes each extern's first calls fix, the finite-
difference Jacobian that stands in for the VJP, and the `Op` entry made for each extern at
run time. It never runs a command through a shell, reads answers as anything but JSON, or
leaves a child running: `Externs` owns every child of a run, and an error, Ctrl-C, SIGTERM,
SIGHUP, a broken stdout pipe and interpreter exit end them (a SIGKILLed gradcalc can only
leave its children the EOF on their stdin).

Signals: each child runs in a session of its own (`start_new_session`), so a Ctrl-C typed in
a terminal reaches gradcalc only; gradcalc then ends its children itself (EOF, then SIGTERM,
then SIGKILL to the child's whole process group, so a child's own children go too) instead of
racing a child that died of the same SIGINT and reporting that as the extern's failure.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import select
import shlex
import signal
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from .errors import GradcalcError, Limits, escape_text, fmt_bytes
from .ops import Op
from .values import nested_shape

DEFAULT_TIMEOUT = 30.0      # seconds per call (SPEC: --extern-timeout)
DIFFS = ("central", "forward")
MAX_LINE = 1 << 28          # bytes of one answer line; beyond, the child is stopped
STDERR_KEEP = 4096          # bytes of the child's stderr kept for messages
STDERR_QUOTE = 300          # characters of it quoted in one message
EOF_GRACE = 0.5             # seconds a child has to exit after its stdin closes
TERM_GRACE = 1.0            # seconds between SIGTERM and SIGKILL
MEMO = 8                    # forward results kept per extern (a check re-reads the same point)
CALL_WORK = 100_000         # element operations one call costs, for the numeric check's budget

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ------------------------------------------------------------------ options
@dataclass(frozen=True)
class FiniteDifference:
    """How an extern's VJP is approximated: `central` (f(x+h) - f(x-h)) / 2h or `forward`
    (f(x+h) - f(x)) / h, with h = step * max(1, |x|) per element; step None is the cube root
    of the dtype's machine epsilon."""

    diff: str = "central"
    step: float | None = None

    def __post_init__(self):
        if self.diff not in DIFFS:
            raise GradcalcError("usage", f"--extern-diff: expected central or forward, got "
                                         f"{escape_text(str(self.diff))!r}")
        if self.step is not None and not (_is_number(self.step) and math.isfinite(self.step)
                                          and self.step > 0):
            raise GradcalcError("usage", f"--extern-step: expected a positive number, got "
                                         f"{self.step!r}")

    def h(self, dtype) -> float:
        return float(self.step) if self.step is not None else float(np.finfo(dtype).eps) ** (1 / 3)

    def describe(self, dtype=None) -> str:
        if self.step is not None:
            size = f"{self.step:.3g}"
        elif dtype is None:
            size = "cbrt(eps of the dtype)"
        else:
            size = f"{self.h(dtype):.3g} (cbrt(eps) of {np.dtype(dtype).name})"
        return f"{self.diff} differences, step {size} * max(1, |x|)"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_spec(text: str) -> tuple[str, str]:
    """`NAME=COMMAND` (the --extern option) -> (name, command)."""
    name, eq, command = text.partition("=")
    if not eq or not command.strip():
        raise GradcalcError("usage", f"--extern: expected NAME=COMMAND, got {escape_text(text)!r}")
    return check_name(name.strip()), command


def check_name(name) -> str:
    if not (isinstance(name, str) and name.isascii() and name.isidentifier()):
        raise GradcalcError("usage", f"--extern: {escape_text(str(name))!r} is not a function "
                                     "name")
    return name


def check_timeout(timeout) -> float:
    if not (_is_number(timeout) and math.isfinite(timeout) and timeout > 0):
        raise GradcalcError("usage", f"--extern-timeout: expected a positive number of seconds, "
                                     f"got {timeout!r}")
    return float(timeout)


# ------------------------------------------------------------------ JSON each way
def number_text(v: float) -> str:
    """One element as JSON: repr (exact, shortest) or one of the strings for NaN and inf."""
    if math.isfinite(v):
        return repr(v)
    return '"NaN"' if v != v else ('"Infinity"' if v > 0 else '"-Infinity"')


def element_texts(a) -> list[str]:
    """The JSON text of every element of `a`, in C order (formatting the numbers is the
    cost of a line; a perturbed point changes one of them and joins the rest again)."""
    flat = np.asarray(a, dtype=np.float64).ravel()
    texts = list(map(repr, flat.tolist()))
    for k in np.flatnonzero(~np.isfinite(flat)).tolist():
        texts[k] = number_text(float(flat[k]))
    return texts


def nest(texts: list[str], shape: tuple) -> str:
    """Element texts joined into a JSON array of `shape`."""
    if not shape:
        return texts[0]
    if len(shape) == 1:
        return "[" + ", ".join(texts) + "]"
    step = math.prod(shape[1:])
    return "[" + ", ".join(nest(texts[i * step:(i + 1) * step], shape[1:])
                           for i in range(shape[0])) + "]"


def call_line(arrays_json) -> bytes:
    return b'{"args": [' + ", ".join(arrays_json).encode() + b"]}\n"


def encode_call(args) -> bytes:
    """One request line: {"args": [ARRAY, ...]}; NaN and infinities as the strings JSON
    Lines uses for them."""
    return call_line([nest(element_texts(a), np.shape(a)) for a in args])


def _bare_constant(word):
    raise ValueError(f"a bare {word} is not JSON (write it as the string \"{word}\")")


def decode_array(obj, label: str) -> np.ndarray:
    """A JSON value as a float64 array: numbers, rectangular nested lists of numbers, and
    the strings "NaN", "Infinity", "-Infinity"; anything else is a value error. An array
    already made (a plain answer, a numeric numpy result) is taken as it is."""
    if isinstance(obj, np.ndarray) and obj.dtype == np.float64:
        return obj
    if type(obj) is str:
        obj = _SPECIAL.get(obj, obj)
    elif type(obj) is list:
        stack = [obj]
        while stack:
            lst = stack.pop()
            for i, x in enumerate(lst):
                if type(x) is list:
                    stack.append(x)
                elif type(x) is str and x in _SPECIAL:
                    lst[i] = _SPECIAL[x]
    nested_shape(obj, label)
    try:
        return np.array(obj, dtype=np.float64)
    except (OverflowError, ValueError) as exc:
        raise GradcalcError("value", f"{label}: not an array of numbers ({exc})")


def digest(args) -> bytes:
    """Identity of a call's arguments (dtype, shape and bytes of each)."""
    h = hashlib.blake2b(digest_size=16)
    for a in args:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.data if a.size else b"")
    return h.digest()


# ------------------------------------------------------------------ the co-process
def _signal_group(pid: int, sig) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class CoProcess:
    """One external command speaking the JSON Lines protocol. Threads: a writer (so a batch
    larger than the pipe's buffer cannot deadlock against the child's answers), a stdout
    reader (so each answer can be waited for with a timeout) and a stderr drain (so a chatty
    child never blocks, and its last words can be quoted)."""

    def __init__(self, name: str, command: str, timeout: float = DEFAULT_TIMEOUT):
        self.name, self.command, self.timeout = name, command, check_timeout(timeout)
        self.label = f"extern '{name}'"
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise GradcalcError("usage", f"{self.label}: cannot split the command "
                                         f"{escape_text(command)!r}: {exc}")
        if not self.argv:
            raise GradcalcError("usage", f"{self.label}: the command is empty")
        self.proc = None
        self.failure: str | None = None     # set once the child is stopped for misbehaving
        self.calls = 0
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.proc is not None:
            return
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise GradcalcError("usage", f"{self.label}: cannot start "
                                         f"{escape_text(self.command)!r}: {reason}")
        # a last resort at interpreter exit (or if this object is dropped unclosed)
        self._finalizer = weakref.finalize(self, _signal_group, self.proc.pid, signal.SIGKILL)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=f, daemon=True, name=f"extern-{self.name}")
                         for f in (self._write_loop, self._read_loop, self._stderr_loop)]
        for t in self._threads:
            t.start()

    def close(self, polite: bool = True) -> None:
        """End the child and reap it: EOF on its stdin (polite), then SIGTERM, then SIGKILL
        to its process group; anything of its group still running after it exits is killed
        too (the unreaped leader keeps the group id from being reused meanwhile)."""
        proc = self.proc
        if proc is None or self._closed:
            return
        self._closed = True
        writer = self._threads[0]
        exited = self.wait_exit(0)
        if polite and not exited:
            self._requests.put(None)
            writer.join(EOF_GRACE)
            if not writer.is_alive():
                self._close_stdin()
            exited = self.wait_exit(EOF_GRACE)
        if not exited:
            self.signal(signal.SIGTERM)
            exited = self.wait_exit(TERM_GRACE)
        if not exited:
            self.signal(signal.SIGKILL)
        self.wait_exit(None)
        self.signal(signal.SIGKILL)
        proc.wait()
        self._finalizer.detach()
        self._requests.put(None)
        writer.join(TERM_GRACE)       # its write failed with EPIPE, or it saw the None
        if not writer.is_alive():
            self._close_stdin()
        for t in self._threads[1:]:
            t.join(TERM_GRACE)

    def signal(self, sig) -> None:
        """Send `sig` to the child's process group (itself and whatever it started)."""
        if self.proc is not None and self.proc.returncode is None:
            _signal_group(self.proc.pid, sig)

    def _settle_stderr(self):
        """Let the drain take in what the child wrote to stderr before its last answer or
        its exit (those words are already in the pipe), so that a message can quote them."""
        if self.wait_exit(0):
            self._threads[2].join(TERM_GRACE)      # ends at the pipe's EOF
            return
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + 0.2
        while select.select([fd], [], [], 0)[0] and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.005)                          # between its read and its append

    def _close_stdin(self):
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass

    def wait_exit(self, timeout: float | None) -> bool:
        """Whether the child has exited, waiting up to `timeout` seconds (None: for ever),
        without reaping it."""
        pid = self.proc.pid
        if self.proc.returncode is not None:
            return True
        if timeout is None:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            return True
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    # -- threads -------------------------------------------------------------------------
    def _write_loop(self):
        stdin = self.proc.stdin
        while True:
            lines = self._requests.get()
            if lines is None:
                return
            try:
                for line in lines:
                    stdin.write(line)
                    stdin.flush()
            except (OSError, ValueError):
                return          # the child is gone (EPIPE): the reader sees its EOF

    def _read_loop(self):
        stdout = self.proc.stdout
        while True:
            try:
                line = stdout.readline(MAX_LINE + 1)
            except (OSError, ValueError):
                line = b""
            self._answers.put(line)
            if not line:
                return

    def _stderr_loop(self):
        stderr = self.proc.stderr
        while True:
            try:
                chunk = stderr.read1(65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            with self._lock:
                self._stderr += chunk
                del self._stderr[:-STDERR_KEEP]

    # -- calls ---------------------------------------------------------------------------
    def evaluate(self, points, n: int, lines=None) -> list:
        """The answers to `n` calls, `points` an iterable of argument tuples (or `lines`,
        the same already encoded): all lines are streamed without waiting, the answers
        read in order, each within the timeout. A plain answer (numbers and lists only:
        no string but the key, no true/false/null) becomes an array at once."""
        if self.failure is not None:
            raise GradcalcError("value", f"{self.label} was stopped earlier: {self.failure}")
        self.start()
        self._requests.put(lines if lines is not None else (encode_call(p) for p in points))
        out, refused = [], None
        for k in range(n):
            where = f"call {self.calls + 1}" + (f" ({k + 1} of a batch of {n})" if n > 1 else "")
            try:
                line = self._answers.get(timeout=self.timeout)
            except queue.Empty:
                raise self.fail(f"gave no answer to {where} within {self.timeout:g} s "
                                "(--extern-timeout)")
            if not line:
                raise self.fail(f"{self._end_words()} before answering {where}")
            if len(line) > MAX_LINE:
                raise self.fail(f"answered {where} with a line longer than {MAX_LINE:,} bytes")
            self.calls += 1
            try:
                obj = json.loads(line, parse_constant=_bare_constant)
            except ValueError as exc:
                raise self.fail(f"answered {where} with something that is not JSON "
                                f"({_cut(line)!r}: {exc})")
            if type(obj) is not dict or ("value" in obj) == ("error" in obj):
                raise self.fail(f"answered {where} with {_cut(line)!r}, which is neither "
                                '{"value": ARRAY} nor {"error": "message"}')
            if "error" in obj:          # a refusal in the protocol: the child stays usable
                if refused is None:
                    refused = f"answered {where} with the error {_quote(str(obj['error']))}"
                continue
            if refused is None:
                out.append(_plain_array(obj["value"]) if line.count(b'"') == 2 and not any(
                    w in line for w in (b"true", b"false", b"null")) else obj["value"])
        if refused is not None:
            raise GradcalcError("value", self._message(refused))
        return out

    def fail(self, what: str) -> GradcalcError:
        """Stop the child for breaking the protocol; the error names it and quotes its stderr."""
        self.close(polite=False)
        message = self._message(what)
        self.failure = message
        return GradcalcError("value", message)

    def _end_words(self) -> str:
        if not self.wait_exit(TERM_GRACE):
            return "closed its stdout"
        if self.proc.returncode is not None:
            code = self.proc.returncode
            return f"exited with status {code}" if code >= 0 else \
                f"was killed by {signal.Signals(-code).name}"
        info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info.si_code == os.CLD_EXITED:
            return f"exited with status {info.si_status}"
        return f"was killed by {signal.Signals(info.si_status).name}"

    def _message(self, what: str) -> str:
        if self.proc is not None:
            self._settle_stderr()
        with self._lock:
            text = self._stderr.decode("utf-8", "replace").strip()
        said = f"its stderr ends: {_quote(text)}" if text else "its stderr is empty"
        return f"{self.label} ({escape_text(self.command)}) {what}; {said}"


def _plain_array(value):
    """numpy's conversion of a value known to hold only numbers and lists (ragged or
    overflowing ones are left to decode_array, which says what is wrong)."""
    try:
        return np.array(value, dtype=np.float64)
    except (ValueError, OverflowError):
        return value


def _quote(text: str) -> str:
    shown = escape_text(text)
    if len(shown) > STDERR_QUOTE:
        shown = "..." + shown[-STDERR_QUOTE:]
    return f'"{shown}"'


def _cut(line: bytes) -> str:
    text = line.decode("utf-8", "replace").rstrip("\n")
    return escape_text(text[:80]) + ("..." if len(text) > 80 else "")


class Function:
    """A Python callable as an extern (the API's form): numpy arrays in, an array-like out.
    Its exceptions become value errors naming it (the original is the error's cause)."""

    def __init__(self, name: str, fn):
        self.name, self.fn, self.label, self.calls = name, fn, f"extern '{name}'", 0

    def evaluate(self, points, n: int, lines=None) -> list:
        out = []
        for p in points:
            self.calls += 1
            try:
                v = self.fn(*[a.copy() for a in p])
            except Exception as exc:  # noqa: BLE001 - the user's code, reported as theirs
                raise GradcalcError("value", f"{self.label} raised {type(exc).__name__}: "
                                             f"{escape_text(str(exc))[:STDERR_QUOTE]}") from exc
            if isinstance(v, (np.ndarray, np.generic)) and v.dtype.kind in "iuf":
                v = np.array(v, np.float64)
            out.append(v)
        return out

    def fail(self, what: str) -> GradcalcError:
        return GradcalcError("value", f"{self.label} {what}")

    def close(self, polite: bool = True) -> None:
        pass


# ------------------------------------------------------------------ the black box
class Extern:
    """One extern as the engine sees it: forward values (the last few remembered by their
    arguments), the output shape each argument shape fixed, and the finite-difference
    Jacobian of the last point asked (so the rules of one backward share one batch)."""

    def __init__(self, backend, fd: FiniteDifference, limits: Limits):
        self.backend, self.fd, self.name = backend, fd, backend.name
        self.limits = limits
        self.shapes: dict[tuple, tuple] = {}       # argument shapes -> output shape
        self._memo: dict[bytes, np.ndarray] = {}
        self._jac = (None, None)
        # (diff, step, arguments perturbed) -> backward passes that rested on it
        self.finite_differences: dict[tuple, int] = {}

    def known_shape(self, shapes) -> tuple | None:
        return self.shapes.get(tuple(tuple(s) for s in shapes))

    def _answers(self, points, n, arg_shapes, lines=None) -> list[np.ndarray]:
        raw = self.backend.evaluate(points, n, lines)
        key = tuple(tuple(s) for s in arg_shapes)
        out = []
        for k, obj in enumerate(raw):
            try:
                v = decode_array(obj, "its answer")
            except GradcalcError as err:
                raise self.backend.fail(f"answered call {k + 1} of {n} with something that is "
                                        f"not an array of numbers ({err.message})")
            want = self.shapes.setdefault(key, v.shape)
            if v.shape != want:
                shown = ", ".join(str(s) for s in key)
                raise self.backend.fail(f"answered with shape {v.shape}, but its first call "
                                        f"with arguments of shapes {shown} answered shape {want}")
            out.append(v)
        return out

    def forward(self, args) -> np.ndarray:
        """One call, in the arguments' dtype."""
        args = [np.asarray(a) for a in args]
        dtype = _float_dtype(args)
        key = digest(args)
        hit = self._memo.get(key)
        if hit is None:
            [hit] = self._answers([args], 1, [a.shape for a in args])
            if len(self._memo) >= MEMO:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = hit
        return hit.astype(dtype)

    def jacobian(self, args, ans, wrt: tuple) -> dict[int, np.ndarray]:
        """d out / d args[k] for k in `wrt`, each (out.size, args[k].size) in float64, by
        finite differences: every perturbed point of every argument in one streamed batch."""
        args = [np.asarray(a) for a in args]
        dtype = _float_dtype(args)
        H, central = self.fd.h(dtype), self.fd.diff == "central"
        key = (digest(args), wrt, self.fd.diff, H)
        if self._jac[0] == key:
            return self._jac[1]
        plan = []        # (k, x, up, down, denominator) per argument perturbed
        for k in wrt:
            x = args[k]
            flat = x.ravel().astype(np.float64)
            h = H * np.maximum(1.0, np.abs(flat))
            up = (flat + h).astype(dtype)           # points the dtype can hold, and the
            down = (flat - h).astype(dtype) if central else x.ravel()   # steps they really are
            plan.append((k, x, up, down, up.astype(np.float64) - down.astype(np.float64)))

        def points():
            for k, x, up, down, _ in plan:
                for e in range(x.size):
                    for moved in ((up, down) if central else (up,)):
                        y = x.copy().reshape(-1)
                        y[e] = moved[e]
                        yield args[:k] + [y.reshape(x.shape)] + args[k + 1:]

        def lines():        # the same points as JSON, each number formatted once
            texts = [element_texts(a) for a in args]
            joined = [nest(t, a.shape) for t, a in zip(texts, args)]
            for k, x, up, down, _ in plan:
                t, here = texts[k], list(joined)
                for e in range(x.size):
                    old = t[e]
                    for moved in ((up, down) if central else (up,)):
                        t[e] = number_text(float(moved[e]))
                        here[k] = nest(t, x.shape)
                        yield call_line(here)
                    t[e] = old

        n = sum((2 if central else 1) * x.size for _, x, *_ in plan)
        # the answers kept and the Jacobians, checked before any call is made
        need = 8 * (n + sum(x.size for _, x, *_ in plan)) * max(1, np.size(ans))
        if need > self.limits.max_memory:
            raise GradcalcError("limit", f"extern '{self.name}': its finite-difference Jacobian "
                                         f"({n:,} calls) needs about {fmt_bytes(need)}, over the "
                                         f"memory limit of {fmt_bytes(self.limits.max_memory)} "
                                         "(--max-memory)")
        got = self._answers(points(), n, [a.shape for a in args], lines()) if n else []
        base = self._memo.get(key[0])
        base = np.asarray(ans, np.float64) if base is None else base
        jac, at = {}, 0
        for k, x, up, down, den in plan:
            m = x.size
            if m == 0:
                jac[k] = np.zeros((base.size, 0))
                continue
            if central:
                hi, lo = _columns(got[at: at + 2 * m: 2]), _columns(got[at + 1: at + 2 * m: 2])
                at += 2 * m
            else:
                hi, lo = _columns(got[at: at + m]), base.reshape(-1, 1)
                at += m
            with np.errstate(all="ignore"):
                jac[k] = (hi - lo) / den
        use = (self.fd.diff, H, wrt)
        self.finite_differences[use] = self.finite_differences.get(use, 0) + 1
        self._jac = (key, jac)
        return jac

    def close(self, polite: bool = True) -> None:
        self.backend.close(polite)


def _columns(answers) -> np.ndarray:
    return np.stack([v.ravel() for v in answers], axis=1)


def _float_dtype(args) -> np.dtype:
    dt = np.result_type(*args) if args else np.dtype(np.float64)
    return dt if dt.kind == "f" else np.dtype(np.float64)


# ------------------------------------------------------------------ the op
def extern_op(ext: Extern) -> Op:
    """The table entry of one extern for one run. Its compile-time params carry `_wrt`
    (which inputs require grad, set by the compiler) so that one backward perturbs all of
    them in one batch; the compiler also calls it once before inferring its shape."""
    name = ext.name
    rules = {}

    def forward(*arrays, _wrt=None):
        return ext.forward(arrays)

    def infer(shapes, params):
        shape = ext.known_shape(shapes)
        if shape is None:
            raise GradcalcError("call", f"{name}(): an extern's output shape is known only "
                                        "after a call with arguments of these shapes")
        return shape, params

    def vjp(i):
        if i not in rules:
            def rule(g, ans, *arrays, _wrt=None):
                wrt = tuple(k for k, w in enumerate(_wrt) if w) if _wrt else (i,)
                if i not in wrt:
                    wrt = tuple(sorted(wrt + (i,)))
                J = ext.jacobian(list(arrays), ans, wrt)[i]
                g = np.asarray(g)
                batch = g.shape[: g.ndim - np.ndim(ans)]
                v = g.reshape(batch + (J.shape[0],)).astype(np.float64) @ J
                return v.reshape(batch + np.shape(arrays[i])).astype(g.dtype)
            rules[i] = rule
        return rules[i]

    command = getattr(ext.backend, "command", None)
    what = f"external program `{command}`" if command else "a Python function"
    return Op(name=name, sig="*args", forward=forward, vjps=vjp, infer=infer,
              torch=f"{name}Backward", family="extern", sympy=None,
              doc=f"{what}; its VJP by {ext.fd.describe()}",
              cost=lambda out_size, in_shapes: CALL_WORK + out_size +
              sum(math.prod(s) for s in in_shapes))


# ------------------------------------------------------------------ one run's externs
class Externs:
    """Every extern of one run, as a context manager: entering starts the commands (a
    command that cannot start is a usage error before anything is computed), leaving ends
    them whatever happened. While inside, SIGTERM and SIGHUP end the children before
    gradcalc dies of the signal as it would have (a KeyboardInterrupt and a broken stdout
    pipe are exceptions that leave the block)."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self, specs=(), *, limits: Limits, functions=None,
                 timeout: float = DEFAULT_TIMEOUT, diff: str = "central",
                 step: float | None = None):
        """`specs`: "NAME=COMMAND" strings or (name, command) pairs; `functions`: name ->
        Python callable (the API's form); `limits.max_memory` bounds a finite-difference
        Jacobian."""
        fd = FiniteDifference(diff, step)
        timeout = check_timeout(timeout)
        self.externs: dict[str, Extern] = {}
        pairs = [parse_spec(s) if isinstance(s, str) else tuple(s) for s in specs]
        for name, command in pairs:
            self._new(name)
            self.externs[name] = Extern(CoProcess(name, command, timeout), fd, limits)
        for name, fn in (functions or {}).items():
            self._new(name)
            if not callable(fn):
                raise GradcalcError("usage", f"extern '{name}': not callable")
            self.externs[name] = Extern(Function(name, fn), fd, limits)
        self.ops: dict[str, Op] = {name: extern_op(e) for name, e in self.externs.items()}
        self._previous = {}

    def _new(self, name):
        check_name(name)
        if name in self.externs:
            raise GradcalcError("usage", f"--extern: '{name}' is declared twice")

    def __enter__(self) -> "Externs":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                before = signal.getsignal(sig)
                if before not in (signal.SIG_IGN, None):
                    self._previous[sig] = before
                    signal.signal(sig, self._on_signal)
        try:
            for e in self.externs.values():
                if isinstance(e.backend, CoProcess):
                    e.backend.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        # on Ctrl-C (or a second one during a polite close) no waiting for EOF
        self.close(polite=exc_type is None or issubclass(exc_type, Exception))
        self._restore()
        return False

    def close(self, polite: bool = True) -> None:
        try:
            for e in self.externs.values():
                e.close(polite)
        except BaseException:
            for e in self.externs.values():
                e.close(polite=False)
            raise

    def _restore(self):
        for sig, before in self._previous.items():
            signal.signal(sig, before)
        self._previous = {}

    def _on_signal(self, signum, frame):
        """gradcalc is about to die of `signum`: SIGTERM to every child's group, a grace
        period shared by all, SIGKILL to what is left (not reaped: nothing waits any more,
        and this may interrupt a close() in progress)."""
        before = self._previous.get(signum, signal.SIG_DFL)
        procs = [e.backend for e in self.externs.values() if getattr(e.backend, "proc", None)]
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE
        for p in procs:
            p.wait_exit(max(0.0, deadline - time.monotonic()))
        for p in procs:
            p.signal(signal.SIGKILL)
        self._restore()
        if callable(before):
            before(signum, frame)
        else:                       # SIG_DFL: die of the signal, as without externs
            os.kill(os.getpid(), signum)

    def finite_difference(self, graph, output: int) -> dict[str, list[dict]]:
        """Which leaves' grads rest on finite differences: leaf name -> [{"extern", "diff",
        "step"}] for every extern node on a path from the leaf to `output` that carries
        gradient (the step for the graph's dtype)."""
        nodes = graph.nodes
        through: dict[int, set] = {output: set()}
        for eq in reversed(nodes[: output + 1]):
            if eq.id not in through or eq.kind != "op":
                continue
            here = set(through[eq.id])
            if eq.op is self.ops.get(eq.op.name):
                here.add(eq.op.name)
            for j, i in enumerate(eq.inputs):
                if nodes[i].requires_grad and eq.op.vjp(j) is not None:
                    through.setdefault(i, set()).update(here)
        out = {}
        for name, i in graph.leaves.items():
            names = sorted(through.get(i, ()))
            if names:
                out[name] = [{"extern": n, "diff": self.externs[n].fd.diff,
                              "step": self.externs[n].fd.h(graph.dtype)} for n in names]
        return out
