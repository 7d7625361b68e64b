"""What `gradcalc fit` shows on stdout once it has trained: the report. (Its progress bar on
stderr is progress.py's.)

The report gives the fitted parameters, the final loss, how the fit stopped, for `lm` each
parameter's standard error and the correlation matrix (as gnuplot's fit and curve_fit
report them), and the loss curve drawn in the terminal (when the caller asks for it). It
computes nothing. It is a few lines and a small table, written on a plain Page (plain.py)
with no rich: a script's report, piped or redirected, loads none of it.
"""
from __future__ import annotations

import math

import numpy as np

from .numbers import Numbers
from .plain import Page, statements
from .plot import curve_lines

STOPPED = {"epochs": "ran every epoch", "tol": "the loss stopped changing (--tol)",
           "nonfinite": "the loss became non-finite", "interrupted": "interrupted (Ctrl-C)"}


def render_fit(result, text: str, page: Page | None = None, precision=None, curve: bool = True):
    page = page or Page()
    g = page.glyphs
    fmt = Numbers(precision, ascii_only=g["d"] == "d")
    lines = statements(text)
    if len(lines) == 1 and "=" not in lines[0]:
        lines = [f"loss = {lines[0].strip()}"]          # name the value that is minimised
    for line in lines:      # code: its continuation lines hang, as the calculator's do
        page.para(page.user(line), "head", hang="    ")
    opt = ", ".join(f"{k}={_value(v)}" for k, v in result.optimizer.items() if k != "name")
    page.para(f"{result.optimizer['name']} ({opt}), {result.epochs} "
              f"{'iterations' if result.optimizer['name'] == 'lm' else 'epochs'}, "
              f"{result.dtype}: {STOPPED.get(result.stopped, result.stopped)}", "note")
    if result.reason:
        page.para(result.reason, "note", indent="  ")
    page.line()
    _params_table(page, result, fmt)
    what = "sum of squared residuals" if result.stderr is not None else "loss over all data"
    page.line((f"{what}: ", "name"), fmt.num(result.loss))
    if result.nonfinite:
        nf = result.nonfinite
        page.para(f"{g['warn']} epoch {nf['epoch']}, batch {nf['batch']}: "
                  f"{nf.get('message') or 'the loss is not finite'}", "bad")
    if result.correlation is not None and result.correlation.size > 1:
        page.line()
        _correlation_table(page, result)
    if curve:
        _curve(page, result, g)


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


def _params_table(page, result, fmt):
    lm = result.stderr is not None
    header = ["param", "value"] + (["std. error", "rel."] if lm else [])
    rows = []
    for label, value, err in _elements(result):
        row = [label, fmt.num(value)]
        if lm:
            rel = abs(err / value) if value and math.isfinite(err) else float("nan")
            row += [fmt.num(err), f"{100 * rel:.2g}%" if math.isfinite(rel) else "-"]
        rows.append(row)
    page.table(header, rows, right={1, 2, 3}, styles=("name", "grad"))


def _correlation_table(page, result):
    labels = [label for label, _, _ in _elements(result)]
    corr = np.asarray(result.correlation)
    rows = [[label, *[f"{corr[i, j]:.3f}" if j <= i else "" for j in range(len(labels))]]
            for i, label in enumerate(labels)]
    page.table(["", *labels], rows, right=set(range(1, len(labels) + 1)),
               title="correlation")


def _curve(page, result, g):
    losses = [(h.epoch, h.loss) for h in result.history if math.isfinite(h.loss)]
    if len(losses) < 2:
        return
    xs, ys = zip(*losses)
    positive = min(ys) > 0
    log = positive and max(ys) / min(ys) >= 100
    title = "loss per " + ("iteration" if result.stderr is not None else "epoch") + \
        (" (log scale)" if log else "")
    page.line()
    for line in curve_lines(np.array(xs, dtype=float), [np.array(ys, dtype=float)],
                            title=title, width=min(page.width, 90), height=10, log=log,
                            ascii_only=g["d"] == "d"):
        page.line(line)
