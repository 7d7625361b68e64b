"""Pictures: curves drawn in the terminal (uniplot) and written as image files (matplotlib).

uniplot is a small, numpy-only library that draws with Unicode block characters (2x4 dots a
cell) or ASCII; matplotlib sits behind the optional `plot` extra and is imported only when a
file is asked for, with a clear message when it is missing. Nothing here computes a number.
"""
from __future__ import annotations

import os

from ..errors import GradcalcError, escape_text

FORMATS = (".svg", ".png", ".pdf")


def curve_lines(xs, ys_list, *, labels=None, title="", width=60, height=12, log=False,
                ascii_only=False) -> list[str]:
    """The curves as lines of text for a terminal `width` wide (axes and labels included)."""
    from uniplot import plot_to_string
    text = plot_to_string(ys_list, xs=[xs] * len(ys_list), lines=True, width=max(10, width - 14),
                          height=height, title=title or None, y_as_log=log, color=False,
                          legend_labels=labels, character_set="ascii" if ascii_only else "block")
    return text.splitlines()


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
