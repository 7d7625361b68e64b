"""The one error type of gradcalc and the limits that bound every calculation.

Every problem a user can cause is a `GradcalcError` with a kind from SPEC section 8
(syntax, name, call, shape, value, limit, usage), a one-line message and, where the text
has one, a 0-based position. Nothing here imports numpy or anything heavy.
"""
from __future__ import annotations


KINDS = ("syntax", "name", "call", "shape", "value", "limit", "usage")

# exit statuses (SPEC section 1), the same for one calculation and a JSON Lines stream
EXIT_OK = 0
EXIT_DISAGREED = 1          # a cross-check disagreed
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3           # a bug in gradcalc
EXIT_OUTPUT = 4             # the answer could not be written (a full disk, an I/O error)
EXIT_INTERRUPTED = 130      # Ctrl-C (128 + SIGINT), as shells report it


class GradcalcError(Exception):
    """A bad input: exit status 2, never a traceback."""

    def __init__(self, kind: str, message: str, position: int | None = None, *,
                 source: str | None = None):
        assert kind in KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.position = position
        self.source = source

    def with_source(self, source: str) -> "GradcalcError":
        """Attach the text the position refers to, unless one is attached already."""
        if self.source is None:
            self.source = source
        return self

    def line_column(self) -> tuple[int, int] | None:
        """1-based (line, column) of the position in the source, if both are known."""
        if self.position is None or self.source is None:
            return None
        before = self.source[: self.position]
        line = before.count("\n") + 1
        column = self.position - (before.rfind("\n") + 1) + 1
        return line, column

    def to_json(self) -> dict:
        err = {"kind": self.kind, "message": self.message, "position": self.position}
        lc = self.line_column()
        if lc is not None and self.source is not None and "\n" in self.source:
            err["line"], err["column"] = lc
        return err


class OutputError(Exception):
    """The answer could not be written to stdout (a full disk, an I/O error): exit 4."""

    def __init__(self, exc: OSError):
        super().__init__(exc.strerror or type(exc).__name__)


def as_error(exc: BaseException) -> GradcalcError | None:
    """What a failure is reported as: a bad input as itself; Python running out of stack or
    memory as the limit it is; None for anything else, which is a bug in gradcalc."""
    if isinstance(exc, GradcalcError):
        return exc
    if isinstance(exc, RecursionError):
        return GradcalcError("limit", "the input is nested too deeply")
    if isinstance(exc, MemoryError):
        return GradcalcError("limit", "out of memory (see --max-memory)")
    return None


def internal_error_json(exc: BaseException, detail: str = "") -> dict:
    """The error object of a bug, for a pipeline that asked for JSON."""
    return {"kind": "internal", "message": f"internal error ({type(exc).__name__}{detail}); "
                                           "this is a bug in gradcalc, please report it",
            "position": None}


class Limits:
    """SPEC section 8 limits; each has a command-line option. (A plain class: a dataclass
    costs 0.3-1 ms to define, at the start of every process; the program cache keys on
    vars() of it, in this order.)"""

    def __init__(self, max_text: int = 1_000_000, max_depth: int = 200,
                 max_elements: int = 10**8, max_memory: int = 2 * 1024**3,
                 max_repeat: int = 10_000, symbolic_timeout: float = 10.0,
                 max_nodes: int = 1_000_000, max_file: int = 1024**3, max_ndim: int = 32):
        self.max_text = max_text                  # characters of an expression or program
        self.max_depth = max_depth                # nesting of parentheses, calls, unary/power
                                                  # chains
        self.max_elements = max_elements          # elements in any one array
        self.max_memory = max_memory              # estimated working memory in bytes
        self.max_repeat = max_repeat              # --repeat
        self.symbolic_timeout = symbolic_timeout  # seconds for the symbolic check
        self.max_nodes = max_nodes                # graph equations after inlining functions
        self.max_file = max_file                  # bytes read from an @file (.json, .csv)
        self.max_ndim = max_ndim                  # dimensions of any array

    @property
    def max_line(self) -> int:
        """Bytes of one JSON Lines request line: 8 x the text limit (8 MB by default), so a
        request can carry its variables inline but a runaway line cannot exhaust memory."""
        return 8 * self.max_text


def escape_text(text: str) -> str:
    """Show control characters (and anything non-printable) as escapes: `\\x1b`."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\t" or (32 <= o < 127):
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif o < 256:
            out.append(f"\\x{o:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{o:04x}")
    return "".join(out)


def clip(text: str, width: int = 200) -> str:
    """A name or token echoed inside a message: at most `width` characters of it, then "...",
    like the line shown under a caret (a 100 KB name must not become 200 KB of stderr)."""
    return text if len(text) <= width else text[:width] + "..."


def caret_lines(source: str, position: int, width: int = 200) -> tuple[str, str]:
    """The line of `source` holding `position` (escaped, at most `width` chars around it)
    and a caret line under the offending character."""
    position = max(0, min(position, len(source)))
    start = source.rfind("\n", 0, position) + 1
    end = source.find("\n", position)
    if end < 0:
        end = len(source)
    lo = max(start, position - width // 2)
    hi = min(end, lo + width)
    prefix = "..." if lo > start else ""
    suffix = "..." if hi < end else ""
    # a tab would move the caret by a terminal-dependent width: show it as one space
    shown_before = escape_text(source[lo:position]).replace("\t", " ")
    text = prefix + shown_before + escape_text(source[position:hi]).replace("\t", " ") + suffix
    return text, " " * (len(prefix) + len(shown_before)) + "^"


def fmt_bytes(n: int) -> str:
    """A byte count for a limit message: 512 B, 1.5 KiB, 2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
