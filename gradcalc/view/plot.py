"""Pictures: curves drawn in the terminal (uniplot) and written as image files (matplotlib).

uniplot is a small, numpy-only library that draws with Unicode block characters (2x4 dots a
cell) or ASCII; matplotlib sits behind the optional `plot` extra and is imported only when a
file is asked for, with a clear message when it is missing. Nothing here computes a number.
"""
from __future__ import annotations

import os
import sys
import types

from ..errors import GradcalcError, escape_text

FORMATS = (".svg", ".png", ".pdf")


def curve_lines(xs, ys_list, *, labels=None, title="", width=60, height=12, log=False,
                ascii_only=False) -> list[str]:
    """The curves as lines of text for a terminal `width` wide (axes and labels included)."""
    text = _uniplot().plot_to_string(
        ys_list, xs=[xs] * len(ys_list), lines=True, width=max(10, width - 14), height=height,
        title=title or None, y_as_log=log, color=False, legend_labels=labels,
        character_set="ascii" if ascii_only else "block")
    return text.splitlines()


def _uniplot():
    """uniplot, imported without readchar unless something already has: uniplot imports it
    at its top for its interactive mode alone (never used here), and readchar's import reads
    its own version from the installed metadata (importlib.metadata and email: 15-20 ms, a
    tenth of `gradcalc fit`'s whole process). A stand-in whose names import the real
    readchar on first use serves uniplot's import and leaves sys.modules right after it, so
    an interactive uniplot, or anyone importing readchar later, still gets the real one."""
    if "uniplot.uniplot" in sys.modules or "readchar" in sys.modules:
        import uniplot
        return uniplot
    sys.modules["readchar"] = _LazyReadchar("readchar")
    try:
        import uniplot
    finally:
        if isinstance(sys.modules.get("readchar"), _LazyReadchar):
            del sys.modules["readchar"]
    return uniplot


class _LazyReadchar(types.ModuleType):
    """readchar as uniplot's `from readchar import readkey, key` sees it: each name a
    proxy that imports the real module when it is called or read."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Deferred(name)


class _Deferred:
    def __init__(self, name):
        self._name = name

    def _real(self):
        import readchar        # the real one: the stand-in left sys.modules after uniplot's import
        return getattr(readchar, self._name)

    def __call__(self, *args, **kwargs):
        return self._real()(*args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._real(), attr)


def _pyplot(option: str):
    try:
        import matplotlib
        matplotlib.use("Agg")               # files only: never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise GradcalcError("usage", f"{option} FILE needs matplotlib: pip install "
                                     "'gradcalc[plot]'") from None
    return plt


def _format(path: str, option: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise GradcalcError("usage", f"{option}: write a {', '.join(FORMATS)} file, got "
                                     f"'{escape_text(path)[:200]}'")
    return ext[1:]


def write_figure(path: str, option: str, draw):
    """Draw with `draw(ax)` and write the figure whole (temporary file, then rename)."""
    fmt = _format(path, option)
    plt = _pyplot(option)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        import io
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
    finally:
        plt.close(fig)
    from ..outputs import write_bytes
    write_bytes(path, buf.getvalue(), option)


def loss_curve_file(history, path: str, *, log: bool = False):
    """--plot FILE for `gradcalc fit`: the loss of every epoch."""
    def draw(ax):
        ax.plot([h.epoch for h in history], [h.loss for h in history], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        if log:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    write_figure(path, "--plot", draw)


def derivative_lines(name, x, y, dydx, *, width=80, ascii_only=False) -> list[str]:
    """--plot in the terminal: y and dy/dx over the grid, one chart each."""
    import numpy as np
    finite = np.isfinite(y) & np.isfinite(dydx) & np.isfinite(x)
    xs = x[finite]
    lines = curve_lines(xs, [y[finite]], title=f"y over {name}", width=width, height=10,
                        ascii_only=ascii_only)
    d = "d" if ascii_only else "\u2202"
    lines += [""] + curve_lines(xs, [dydx[finite]], title=f"{d}y/{d}{name} over {name}",
                                width=width, height=10, ascii_only=ascii_only)
    return lines


def derivative_file(name, x, y, dydx, path: str):
    """--plot FILE: y and dy/dx over the grid, as an image."""
    def draw(ax):
        ax.plot(x, y, label="y")
        ax.plot(x, dydx, label=f"dy/d{name}")
        ax.set_xlabel(name)
        ax.axhline(0, color="gray", lw=0.5)
        ax.legend()
        ax.grid(True, alpha=0.3)
    write_figure(path, "--plot", draw)
