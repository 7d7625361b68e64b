"""Pieces of the command line that `gradcalc` and `gradcalc fit` share.

Sizes and limits from their options (Limits built once, here, at the edge), NAME=VALUE
arguments, stdin read at most once and bounded, --data files and the run's --extern
programs. It decides nothing about what a command computes or prints.
"""
from __future__ import annotations

import sys

from ..errors import GradcalcError, Limits, escape_text


def _parse_size(text: str) -> int:
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = 1
    for suffix, m in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        v = float(t) * mult
    except ValueError:
        raise GradcalcError("usage", f"--max-memory takes a size such as 512M or 4G, got "
                                     f"{escape_text(text)!r}")
    if not v > 0 or v == float("inf"):
        raise GradcalcError("usage", "--max-memory must be a positive, finite size")
    return int(v)


def _positive(name, value, kind=int):
    if value is not None and not value > 0:      # also rejects NaN
        raise GradcalcError("usage", f"{name} must be positive, got {value}")
    return value


def build_limits(max_elements, max_memory, max_depth, symbolic_timeout, max_text=None,
                 max_repeat=None) -> Limits:
    lim = Limits()
    if _positive("--max-text", max_text) is not None:
        lim.max_text = max_text
    if _positive("--max-repeat", max_repeat) is not None:
        lim.max_repeat = max_repeat
    if _positive("--max-elements", max_elements) is not None:
        lim.max_elements = max_elements
    if max_memory is not None:
        lim.max_memory = _parse_size(max_memory)
    if _positive("--max-depth", max_depth) is not None:
        lim.max_depth = max_depth
    if _positive("--symbolic-timeout", symbolic_timeout) is not None:
        if symbolic_timeout == float("inf") or symbolic_timeout > 10**7:  # threads cannot wait
            raise GradcalcError("usage", "--symbolic-timeout takes a finite number of seconds "
                                         "(at most 10,000,000)")
        lim.symbolic_timeout = symbolic_timeout
    return lim


class Stdin:
    """@- may be read once per run, and at most `max_chars` characters of it (a VALUE or
    program read from stdin is text under the --max-text limit; /dev/zero must not hang)."""

    def __init__(self, max_chars: int):
        self.used = False
        self.max_chars = max_chars

    def __call__(self) -> str:
        if self.used:
            raise GradcalcError("usage", "standard input can be read only once (@- given twice)")
        self.used = True
        limit = self.max_chars
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:                       # a text stream (tests, embedding)
            text = sys.stdin.read(limit + 1)
        else:
            data = stream.read(4 * limit + 4)    # UTF-8: at most 4 bytes per character
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                if len(data) > 4 * limit:
                    text = "x" * (limit + 1)     # over the limit anyway
                else:
                    raise GradcalcError("value", "standard input is not UTF-8 text")
        if len(text) > limit:
            raise GradcalcError("limit", f"standard input holds more than {limit:,} characters "
                                         "(--max-text)")
        return text


def long_running():
    """A JSON Lines stream may run for hours: if the one-shot start-up turned garbage
    collection off, turn it back on, but never rescan what the imports created."""
    import gc
    if not gc.isenabled():
        gc.enable()
        gc.freeze()


def split_bindings(args):
    out = {}
    for a in args:
        name, eq, value = a.partition("=")
        if not eq or not name:
            raise GradcalcError("usage", f"expected NAME=VALUE, got {quoted(a[:200])}")
        if not name.isidentifier() or not name.isascii():
            raise GradcalcError("usage", f"{quoted(name[:200])} is not a variable name")
        if name in out:
            raise GradcalcError("usage", f"{name} is given twice")
        out[name] = value
    return out


def extern_options(command):
    """The --extern options, as `gradcalc` and `gradcalc fit` both take them."""
    import click
    options = [
        click.option("--extern", "externs", multiple=True, metavar="NAME=COMMAND",
                     help="Make NAME(...) call COMMAND, an opaque program (one JSON line each "
                          "way), differentiated by finite differences (repeatable)."),
        click.option("--extern-diff", metavar="[central|forward]", default="central",
                     help="Finite differences of the externs (default central)."),
        click.option("--extern-step", type=float, metavar="H",
                     help="Their step: H*max(1,|x|) (default the cube root of the dtype's "
                          "eps)."),
        click.option("--extern-timeout", type=float, default=30.0, metavar="S",
                     help="Seconds an extern may take to answer one call (default 30).")]
    for option in reversed(options):
        command = option(command)
    return command


def open_externs(specs, diff, step, timeout, limits):
    """The run's opaque functions (--extern), started on entering, ended on leaving; a
    context that holds none when no --extern was given."""
    if not specs:
        import contextlib
        return contextlib.nullcontext()
    from ..extern import Externs
    return Externs(specs, timeout=timeout, diff=diff, step=step, limits=limits)


def read_data_files(paths, settings, limits) -> dict:
    """--data FILE ...: every named array of the files, later files over earlier ones."""
    if not paths:
        return {}
    import numpy as np
    from ..datafile import read_data
    out = {}
    for path in paths:
        out.update(read_data(path, dtype=np.dtype(settings.dtype or "float64"), limits=limits))
    return out


def quoted(text: str) -> str:
    """User text quoted for a message, control characters escaped (once: repr() would double
    the backslashes of the escapes)."""
    return "'" + escape_text(text) + "'"


def stdin_once(bindings, grad, program_from_stdin):
    """Standard input can feed one thing: say so before reading it (SPEC section 8)."""
    users = [f"{n}=@-" for n, v in bindings.items() if v == "@-"]
    if grad == "@-":
        users.append("--grad @-")
    if program_from_stdin:
        users.insert(0, "-f -")
    if len(users) > 1:
        raise GradcalcError("usage", "standard input can be read only once, but "
                                     f"{' and '.join(users)} both read it")
