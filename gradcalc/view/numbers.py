"""Numbers and arrays as short text for the human view: significant digits, one-line and
aligned multi-line forms, and summaries (shape, structure, min/max, a corner of values) for
arrays too large to show whole.

It owns no output stream and imports nothing of the view (numpy and the error module's
escaping only), so it is cheap to test. It never turns more elements into text than it
shows (a summary of 10^7 values formats a corner of them), and never changes a value: -0
is shown as 0, but the JSON output keeps every bit.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import escape_text

DEFAULT_PRECISION = 6


class Numbers:
    """Format numbers with `precision` significant digits (`%g` style)."""

    def __init__(self, precision: int | None = None, ascii_only: bool = False):
        self.p = precision or DEFAULT_PRECISION
        self.ellipsis = "..." if ascii_only else "\u2026"
        self.times = "x" if ascii_only else "\u00d7"

    def num(self, x) -> str:
        x = float(x)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == 0:
            return "0"           # -0 is a sign bit nobody asked about
        return f"{x:.{self.p}g}"

    # -- one line ----------------------------------------------------------------------
    def line(self, a, max_items: int | None = None) -> str:
        """`[[1, 2], [3, 4]]`; with `max_items`, each axis shows at most that many entries
        (the first max_items-1 and the last, with an ellipsis between)."""
        a = np.asarray(a)
        if a.ndim == 0:
            return self.num(a)
        n = a.shape[0]
        if max_items is not None and n > max_items:
            keep = list(range(max_items - 1)) + [n - 1]
            parts = [self.line(a[i], max_items) for i in keep]
            parts.insert(max_items - 1, self.ellipsis)
        else:
            parts = [self.line(a[i], max_items) for i in range(n)]
        return "[" + ", ".join(parts) + "]"

    def line_fitting(self, a, width: int) -> str:
        """The one-line form, shortened (per-axis ellipses) until it fits `width`; when even
        two entries per axis do not fit (2^ndim numbers), `flat [first, ..., last]` in
        memory order. Only the entries of the candidate forms are formatted: a line of c
        numbers is at least 3c characters ("0, " each), so the forms that cannot fit are
        skipped unwritten."""
        a = np.asarray(a)
        k = max(a.shape) if a.ndim else 1
        while k > 2 and 3 * math.prod(min(n, k) for n in a.shape) > width:
            k = _shorter(k)
        text = self.line(a, k)
        while len(text) > width and k > 2:
            k = _shorter(k)
            text = self.line(a, k)
        if len(text) > width and a.ndim > 1:
            return "flat " + self.line_fitting(a.reshape(-1), width - 5)
        return text

    # -- several lines -----------------------------------------------------------------
    def block(self, a) -> str:
        """A scalar, a vector on one line, a matrix as aligned rows:
        [[ 1, 20],
         [30,  4]]"""
        a = np.asarray(a)
        if a.ndim != 2:
            return self.line(a)
        cells = [[self.num(x) for x in row] for row in a]
        if not cells or not cells[0]:
            return self.line(a)
        w = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
        rows = ["[" + ", ".join(c.rjust(w[j]) for j, c in enumerate(r)) + "]" for r in cells]
        return "[" + (",\n ".join(rows)) + "]"

    def block_width(self, a) -> int:
        return max(len(s) for s in self.block(a).split("\n"))


def _shorter(k: int) -> int:
    """The next number of entries per axis to try: halve while many, then one by one."""
    return max(2, k // 2 if k > 8 else k - 1)


# -- structure ---------------------------------------------------------------------------

class Extent(NamedTuple):
    """The least and greatest value of an array and its count of non-finite values."""
    lo: float
    hi: float
    bad: int


def extent(a) -> Extent:
    """The Extent of a non-empty array, in two passes when every value is finite: min and max
    are finite only then (NaN propagates, an inf is an extreme)."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if math.isfinite(lo) and math.isfinite(hi):
        return Extent(lo, hi, 0)
    return Extent(lo, hi, a.size - int(np.count_nonzero(np.isfinite(a))))


def structure(a, matrix: bool = False, fmt: Numbers | None = None,
              ext: Extent | None = None) -> str | None:
    """A few words about the pattern of `a` ("all zero", "diagonal, 3 on the diagonal",
    "4 of 25 nonzero"), or None when it has none worth naming. `ext`: its extent, when the
    caller has it already."""
    fmt = fmt or Numbers()
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return "empty"
    lo, hi, bad = ext or extent(a)
    note = f"{bad:,} non-finite" if bad else None
    if bad == 0 and lo == hi == 0:
        return "all zero"
    if a.size > 1 and bad == 0 and lo == hi:
        return f"every entry {fmt.num(lo)}"
    words = []
    if matrix and a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1:
        off = a - np.diag(np.diag(a))
        if not np.any(off[np.isfinite(off)]) and np.isfinite(off).all():
            d = np.diag(a)
            if np.all(d == d[0]):
                words.append(f"diagonal: {fmt.num(d[0])} {fmt.times} identity")
            else:
                words.append("diagonal")
    if not words:
        nz = int(np.count_nonzero(a))
        if nz <= a.size // 2:
            words.append(f"{nz:,} of {a.size:,} entries nonzero")
    if note:
        words.append(note)
    return ", ".join(words) if words else None


def is_diagonal(m) -> bool:
    m = np.asarray(m)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        return False
    off = m - np.diag(np.diag(m))
    return bool(np.isfinite(off).all() and not off.any())


def min_max(a, fmt: Numbers, ext: Extent | None = None) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return ""
    lo, hi, bad = ext or extent(a)
    if not bad:
        return f"min {fmt.num(lo)}, max {fmt.num(hi)}"
    fin = a[np.isfinite(a)]
    parts = []
    if fin.size:
        parts.append(f"min {fmt.num(fin.min())}, max {fmt.num(fin.max())}")
    nan = int(np.isnan(a).sum())
    if nan:
        parts.append(f"{nan:,} nan")
    if bad > nan:
        parts.append(f"{bad - nan:,} inf")
    return ", ".join(parts)


def shape_text(shape) -> str:
    shape = tuple(int(s) for s in shape)
    if not shape:
        return "scalar"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def summary(a, fmt: Numbers, width: int = 60, matrix: bool = False) -> list[str]:
    """Lines describing an array too large to show: shape, structure, min/max, the first
    and last values."""
    a = np.asarray(a)
    head = f"shape {shape_text(a.shape)}, {a.size:,} values"
    ext = extent(a) if a.size else None         # one pass for the words and the range
    s = structure(a, matrix=matrix, fmt=fmt, ext=ext)
    if s:
        head += f", {s}"
    if s and (s.startswith("every entry") or s == "all zero"):
        return [head]
    lines = [head]
    mm = min_max(a, fmt, ext)
    if mm:
        lines.append(mm)
    lines.append("values: " + fmt.line_fitting(a, max(20, width - 8)))
    return lines


def fits(a, fmt: Numbers, width: int, max_lines: int = 12, max_items: int = 64) -> bool:
    """Whether `a` can be shown whole in `width` columns (block form)."""
    a = np.asarray(a)
    if a.size > max_items:
        return False
    if a.ndim == 2:
        return a.shape[0] <= max_lines and fmt.block_width(a) <= width
    return len(fmt.line(a)) <= width


def formula(text) -> str:
    """sympy's str() form made readable: `4*b**2` -> `4·b^2` (control characters escaped)."""
    s = escape_text(str(text))
    return s.replace("**", "^").replace("*", "\u00b7")
