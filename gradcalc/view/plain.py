"""The style kit's rich-free half: the named styles and glyph sets every view draws with, the
statements of a program worth echoing, and a Page that writes lines of plain text to stdout,
styled (by click) only where colour is on.

A report of a few lines and one small table, `gradcalc fit`'s, draws on a Page alone: rich's
import is a sixth of such a fit's whole process (benchmark figure 17a), and the report needs
no more than columns and colour. Its rules are rich's, so every view behaves alike: colour
only on a terminal (not TERM=dumb), or where FORCE_COLOR asks, and no escape at all under
NO_COLOR; $COLUMNS, else the terminal's width, else 80; ASCII stand-ins on a stream that is
not UTF-8; user text shown with its control characters escaped. Lines wrap at spaces within
the width and never end in a space.
"""
from __future__ import annotations

import os
import sys
import textwrap

import click

from ..errors import escape_text

UNICODE = {"T": "\u1d40", "dot": "\u00b7", "d": "\u2202", "ok": "\u2713", "bad": "\u2717",
           "warn": "\u26a0", "vdots": "\u22ee", "hdots": "\u2026", "times": "\u00d7",
           "odot": "\u2299", "sum": "\u03a3"}
ASCII = {"T": "^T", "dot": "*", "d": "d", "ok": "ok", "bad": "FAILED", "warn": "!",
         "vdots": ":", "hdots": "...", "times": "x", "odot": "*", "sum": "sum"}

# rich style strings (the words click.style takes: attributes and a colour name)
STYLE = {"head": "bold", "name": "bold cyan", "v": "magenta", "grad": "bold green",
         "note": "dim", "ok": "green", "bad": "bold red", "warn": "yellow", "formula": "cyan"}

# the view's own floor for a wrapped line; a width below it (COLUMNS=0, a 0x0 pty) shows
# nothing readable, so the view falls back to the width of a terminal nobody resized
MIN_WIDTH = 20
FALLBACK_WIDTH = 80

_ATTRIBUTES = ("bold", "dim", "italic", "underline")


def statements(text: str) -> list[str]:
    """The lines of a program worth echoing above its answer: not blank, not a comment
    (which takes the `#:` option lines and `#$`/`#=` sample lines with it)."""
    return [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def glyphs_of(encoding: str | None) -> dict:
    """UNICODE for a UTF-8 encoding, else ASCII."""
    return UNICODE if (encoding or "").lower().replace("-", "").startswith("utf") else ASCII


def wants_colour(stream) -> bool:
    """rich's rule for a console on `stream`, with NO_COLOR (set and not empty) taking every
    escape away: a terminal (TTY_COMPATIBLE=1 or 0 says, else FORCE_COLOR set and not empty,
    else whether the stream is a tty) that is not TERM=dumb or unknown."""
    env = os.environ
    if env.get("NO_COLOR"):
        return False
    terminal = {"0": False, "1": True}.get(env.get("TTY_COMPATIBLE", ""))
    if terminal is None:
        force = env.get("FORCE_COLOR")
        terminal = force != "" if force is not None else _isatty(stream)
    return terminal and env.get("TERM", "").lower() not in ("dumb", "unknown")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):     # no such method, or a closed stream
        return False


def _width_of(stream) -> int:
    """$COLUMNS, else the terminal's width, else 80; under MIN_WIDTH, 80."""
    width = 0
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        pass
    if width <= 0:
        try:
            width = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            width = FALLBACK_WIDTH
    return width if width >= MIN_WIDTH else FALLBACK_WIDTH


class Page:
    """Lines of text for `stream` (stdout unless given), as rich would write them there: its
    colour, width and glyphs are read once. A line is spans, each text or (text, style
    name); user text goes in through `user`."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        encoding = (getattr(self.stream, "encoding", None) or "utf-8").lower()
        self.encoding = encoding
        self.glyphs = glyphs_of(encoding)
        self.colour = wants_colour(self.stream)
        self.width = _width_of(self.stream)

    @staticmethod
    def user(text) -> str:
        """User-supplied text, its control characters escaped (never an escape sequence)."""
        return escape_text(str(text))

    def styled(self, text: str, style: str) -> str:
        """`text` in the STYLE named `style` where colour is on, else as it is."""
        if not self.colour or not text:
            return text
        words = STYLE[style].split()
        return click.style(text, fg=next((w for w in words if w not in _ATTRIBUTES), None),
                           **{w: True for w in words if w in _ATTRIBUTES})

    def line(self, *spans):
        """One line of spans, unwrapped (each a str, or (text, style name))."""
        self._write("".join(s if isinstance(s, str) else self.styled(*s) for s in spans))

    def para(self, text: str, style: str = "", indent: str = "", hang: str = ""):
        """`text` wrapped at spaces within the width, each line in `style`, after `indent`
        (and `hang` too on the lines it continues on)."""
        for ln in textwrap.wrap(text, self.width, initial_indent=indent,
                                subsequent_indent=indent + hang,
                                break_on_hyphens=False) or [""]:
            self._write(self.styled(ln, style) if style else ln)

    def table(self, header: list[str], rows: list[list[str]], *, right: set = frozenset(),
              styles: tuple = (), head: str = "head", title: str = ""):
        """Columns two spaces apart, each as wide as its widest cell (header included),
        justified right where its index is in `right`; a column's cells in its style
        (`styles`, by index), the header in `head`, a `title` line above it."""
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

        def cells(row, style_of):
            out = []
            for k, (text, w) in enumerate(zip(row, widths)):
                pad = " " * (w - len(text))
                style = style_of(k)
                text = self.styled(text, style) if style else text
                out.append(pad + text if k in right else text + pad)
            return "  ".join(out).rstrip()

        if title:
            self.line((title, head))
        self._write(cells(header, lambda k: head))
        for row in rows:
            self._write(cells(row, lambda k: styles[k] if k < len(styles) else ""))

    def _write(self, text: str):
        if self.glyphs is ASCII:    # an encoding without these characters: escapes, no crash
            text = text.encode(self.encoding, "backslashreplace").decode(self.encoding)
        self.stream.write(text.rstrip(" ") + "\n")
