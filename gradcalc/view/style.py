"""The style kit's rich half: the console factory, the glyph set a console takes, the ruled
table box, and the helpers that turn text into rich Text (the named styles and the glyph sets
themselves are plain.py's, which a view without rich draws with).

Every view drawn by rich draws with it; it imports nothing else of the view but plain.py. It
never lets user text be read as markup: `user` escapes control characters into a plain Text.
"""
from __future__ import annotations

import os
import sys

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segment, Segments
from rich.text import Text

from ..errors import escape_text
from .plain import FALLBACK_WIDTH, MIN_WIDTH, glyphs_of

# no verticals; a rule under the header and between sections (vᵀ·J under J)
RULED = box.Box("    \n    \n ── \n    \n ── \n ── \n    \n    \n")


def make_console(stderr: bool = False) -> Console:
    """rich decides colour (only on a terminal; NO_COLOR honoured) and width (the terminal's,
    else $COLUMNS, else 80; a width under MIN_WIDTH gives 80). A stream that is not UTF-8
    gets escapes for what it cannot encode instead of a crash (and the view switches to
    ASCII symbols)."""
    stream = sys.stderr if stderr else sys.stdout
    enc = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
    file = None if enc.startswith("utf") else _Lossy(stderr)
    # NO_COLOR: no escape byte at all (SPEC 8), so bold and dim go too, not only colour
    plain = bool(os.environ.get("NO_COLOR"))
    console = _Console(file=file, stderr=stderr, highlight=False, soft_wrap=False, emoji=False,
                       markup=False, **({"color_system": None} if plain else {}))
    if console.width < MIN_WIDTH:
        console.width = FALLBACK_WIDTH
    if not stderr:
        # the view's size, read once: rich otherwise asks the three standard streams for a
        # terminal size at every width it reads (hundreds of system calls and failed tries
        # for one view when piped, ~10% of drawing it); stderr's live displays keep
        # following a resized terminal
        console.size = console.size
    return console


class _Console(Console):
    """rich's Console, but a reader that went away (`| head -1`) is a BrokenPipeError for
    the CLI to end quietly with exit 0: rich's own answer is SystemExit(1), which here would
    mean "a check disagreed"."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


class StatusLine:
    """A spinner and a text on stderr, redrawn in place until stopped; stdout is left alone
    (rich's own Status would reroute it through the live display: the answers go there)."""

    def __init__(self, text: str):
        from rich.live import Live
        from rich.spinner import Spinner
        self.spinner = Spinner("dots", text)
        self.live = Live(self.spinner, console=make_console(stderr=True), transient=True,
                         redirect_stdout=False, redirect_stderr=False, refresh_per_second=8)

    def start(self):
        self.live.start()

    def update(self, text: str):
        self.spinner.update(text=text)

    def stop(self):
        self.live.stop()


def glyphs(console: Console) -> dict:
    """UNICODE on a UTF-8 console, else ASCII."""
    return glyphs_of(console.encoding)


class _Lossy:
    """sys.stdout/sys.stderr as they are at each write, with unencodable characters written
    as backslash escapes."""

    def __init__(self, stderr: bool):
        self.stderr = stderr

    @property
    def _f(self):
        return sys.stderr if self.stderr else sys.stdout

    @property
    def encoding(self):
        return getattr(self._f, "encoding", None) or "ascii"

    def write(self, text):
        return self._f.write(text.encode(self.encoding, "backslashreplace").decode(self.encoding))

    def flush(self):
        self._f.flush()

    def isatty(self):
        return self._f.isatty()

    def fileno(self):
        return self._f.fileno()


def needed_width(console: Console, renderable) -> int:
    """Columns `renderable` needs to show without wrapping (rich clamps measurements to the
    console width, so measure against a very wide one)."""
    return Measurement.get(console, console.options.update(max_width=100_000),
                           renderable).maximum


def trimmed_lines(console: Console, renderable) -> Segments:
    """`renderable` rendered at the console's width, each line without trailing blanks (a
    table pads its last column out to the column's width; piped text should not end its
    lines in spaces), as one renderable for a single print: its own segments, not Text
    rebuilt from them and laid out again line by line (the same bytes, a third of the
    drawing time of a Jacobian table)."""
    segments = []
    for row in console.render_lines(renderable, pad=False):
        line = [seg for seg in row if not seg.control]
        while line and not line[-1].text.rstrip():
            line.pop()
        if line:
            text, style, _ = line[-1]
            line[-1] = Segment(text.rstrip(), style)
        segments += line
        segments.append(Segment.line())
    return Segments(segments)


def styled(text: str, style: str = "") -> Text:
    """Text whose style stays with these characters when more text is appended (a Text's
    own style would colour everything appended to it)."""
    return Text().append(text, style=style)


def user(text, style: str | None = None) -> Text:
    """User-supplied text: control characters escaped, never read as markup."""
    return styled(escape_text(str(text)), style=style or "")
