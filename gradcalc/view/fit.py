"""What `gradcalc fit` shows on stdout once it has trained: the report. (Its progress bar on
stderr is progress.py's, so that a fit that shows no bar and writes JSON loads no rich.)

The report gives the fitted parameters, the final loss, how the fit stopped, for `lm` each
parameter's standard error and the correlation matrix (as gnuplot's fit and curve_fit
report them), and the loss curve drawn in the terminal (when the caller asks for it). It
computes nothing.
"""
from __future__ import annotations

import math

import numpy as np
from rich.table import Table
from rich.text import Text

from .numbers import Numbers
from .plot import curve_lines
from .style import STYLE, glyphs, make_console, statements, styled, user

STOPPED = {"epochs": "ran every epoch", "tol": "the loss stopped changing (--tol)",
           "nonfinite": "the loss became non-finite", "interrupted": "interrupted (Ctrl-C)"}


def render_fit(result, text: str, console=None, precision=None, curve: bool = True):
    console = console or make_console()
    g = glyphs(console)
    fmt = Numbers(precision, ascii_only=g["d"] == "d")
    lines = statements(text)
    if len(lines) == 1 and "=" not in lines[0]:
        lines = [f"loss = {lines[0].strip()}"]          # name the value that is minimised
    for line in lines:
        console.print(user(line, STYLE["head"]))
    opt = ", ".join(f"{k}={_value(v)}" for k, v in result.optimizer.items() if k != "name")
    console.print(styled(f"{result.optimizer['name']} ({opt}), {result.epochs} "
                         f"{'iterations' if result.optimizer['name'] == 'lm' else 'epochs'}, "
                         f"{result.dtype}: {STOPPED.get(result.stopped, result.stopped)}",
                         STYLE["note"]))
    if result.reason:
        console.print(styled(f"  {result.reason}", STYLE["note"]))
    console.print()
    console.print(_params_table(result, fmt))
    what = "sum of squared residuals" if result.stderr is not None else "loss over all data"
    console.print(Text.assemble((f"{what}: ", STYLE["name"]), fmt.num(result.loss)))
    if result.nonfinite:
        nf = result.nonfinite
        console.print(styled(f"{g['warn']} epoch {nf['epoch']}, batch {nf['batch']}: "
                             f"{nf.get('message') or 'the loss is not finite'}", STYLE["bad"]))
    if result.correlation is not None and result.correlation.size > 1:
        console.print()
        console.print(_correlation_table(result, fmt))
    if curve:
        _curve(console, result, g)


def _value(v):
    if isinstance(v, (list, tuple)):
        return ",".join(f"{x:g}" for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _elements(result):
    """(label, value, stderr or None) for every parameter element, in --params order."""
    for name, value in result.params.items():
        value = np.asarray(value)
        err = None if result.stderr is None else np.asarray(result.stderr[name])
        for idx in np.ndindex(value.shape):
            label = name + (f"[{', '.join(map(str, idx))}]" if idx else "")
            yield label, float(value[idx]), None if err is None else float(err[idx])


def _params_table(result, fmt):
    lm = result.stderr is not None
    table = Table(box=None, pad_edge=False, show_edge=False, header_style=STYLE["head"])
    table.add_column("param", style=STYLE["name"])
    table.add_column("value", justify="right", style=STYLE["grad"])
    if lm:
        table.add_column("std. error", justify="right")
        table.add_column("rel.", justify="right")
    for label, value, err in _elements(result):
        row = [Text(label), Text(fmt.num(value))]
        if lm:
            rel = abs(err / value) if value and math.isfinite(err) else float("nan")
            row += [Text(fmt.num(err)), Text(f"{100 * rel:.2g}%" if math.isfinite(rel) else "-")]
        table.add_row(*row)
    return table


def _correlation_table(result, fmt):
    labels = [label for label, _, _ in _elements(result)]
    table = Table(title="correlation", box=None, pad_edge=False, show_edge=False,
                  title_justify="left", title_style=STYLE["head"])
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    corr = np.asarray(result.correlation)
    for i, label in enumerate(labels):
        table.add_row(label, *[f"{corr[i, j]:.3f}" if j <= i else "" for j in range(len(labels))])
    return table


def _curve(console, result, g):
    losses = [(h.epoch, h.loss) for h in result.history if math.isfinite(h.loss)]
    if len(losses) < 2:
        return
    xs, ys = zip(*losses)
    positive = min(ys) > 0
    log = positive and max(ys) / min(ys) >= 100
    title = "loss per " + ("iteration" if result.stderr is not None else "epoch") + \
        (" (log scale)" if log else "")
    console.print()
    for line in curve_lines(np.array(xs, dtype=float), [np.array(ys, dtype=float)],
                            title=title, width=min(console.width, 90), height=10, log=log,
                            ascii_only=g["d"] == "d"):
        console.print(Text(line))
