"""One leaf's Jacobian in the human view, laid out to answer "what did the gradient argument
do?": J as a matrix (rows: elements of the output, columns: elements of the leaf), v beside
the rows it weights, vᵀ·J under the columns, and the same sum written out with the numbers:
`a.grad = 0.1·[3, 0, 0] + 1·[0, 3, 0] + 0.0001·[0, 0, 3] = [0.3, 3, 0.0003]`.

It reads the human View (duck-typed: its result, console, glyphs, number format and
printing helpers) and draws with the style kit; it never computes a gradient of its own
beyond the display sum vᵀ·J, which it checks against the engine's grad.
"""
from __future__ import annotations

import math
import re

import numpy as np
from rich.table import Table
from rich.text import Text

from .numbers import fits, formula, is_diagonal, min_max, structure
from .plain import STYLE
from .style import RULED, needed_width, styled

MAX_J_ROWS = 12          # rows of a Jacobian shown before its middle is elided
MAX_SUM_TERMS = 4        # terms of v[0]·J[0] + v[1]·J[1] + ... written out


def _index(name: str, shape, flat: int) -> str:
    if not shape:
        return name
    idx = np.unravel_index(flat, shape)
    return f"{name}[{','.join(str(int(i)) for i in idx)}]"


def _pick(n: int, k: int) -> list:
    """Indices to show out of n when only k fit: the first k-1, None (an ellipsis), the last."""
    if n <= k:
        return list(range(n))
    return list(range(max(1, k - 1))) + [None, n - 1]


def jacobian_block(view, name: str, J, full: bool = True):
    """J of leaf `name` as a table with v and vᵀ·J, then the sum written out (`full`), or
    its title and range only."""
    r, s, fmt, c = view.r, view.s, view.fmt, view.c
    out_shape = tuple(np.shape(r.output))
    leaf_shape = tuple(np.shape(r.leaves[name]))
    m, n = math.prod(out_shape), math.prod(leaf_shape)
    M = np.asarray(J, dtype=np.float64).reshape(m, n)
    alone = r.cotangent is None           # --jacobian without --grad: no v, no vᵀ·J
    v = np.zeros(m) if alone else np.asarray(r.cotangent, dtype=np.float64).reshape(m)
    with np.errstate(all="ignore"):
        vtj = (v @ M).reshape(leaf_shape) if m else np.zeros(leaf_shape)
    grad = vtj if alone else np.asarray(r.grads[name], dtype=np.float64)

    title = styled("J = ", style=STYLE["head"]) + styled(view.d(name), style=STYLE["head"])
    title += styled(f"  {m}{s['times']}{n}", style=STYLE["note"])
    what = structure(M, matrix=True, fmt=fmt)
    if what:
        title += styled(f", {what}", style=STYLE["note"])
    f = view.derivs.get(name)
    if f is not None:
        title += styled(f"; sympy: {view.d(name)} = ", style=STYLE["note"])
        title += styled(formula(f)[:200], style=STYLE["formula"])
    view.hang(title, 2)
    if not full:
        view.note(styled(f"{min_max(M, fmt)}; the whole matrix: --json (jacobian.{name})",
                        style=STYLE["note"]))
        view.print()
        return

    if alone:
        _alone(view, name, M, out_shape, leaf_shape)
        return
    if m == 0 or n == 0:
        what = f"{view.y} has no elements" if m == 0 else f"{name} has no elements"
        view.note(styled(f"J is empty ({what}), so {name}.grad has nothing to add up: "
                         f"{fmt.line(grad)}", style=STYLE["note"]))
        view.print()
        return
    rows = _pick(m, MAX_J_ROWS)
    k = n
    while True:
        cols = _pick(n, k)
        table = _table(view, name, M, v, vtj, grad, rows, cols, out_shape, leaf_shape)
        if k <= 2 or needed_width(c, table) <= view.width:
            break
        k = k - 1 if k <= 12 else min(k // 2, 12)
    if m == 1 and len(cols) < n:
        # one row (a scalar output) too wide for columns: show it in the leaf's shape
        view.note(styled(f"one row, since {view.y} is a scalar; in the shape of {name}:",
                       style=STYLE["note"]))
        view.note(Text(view.array_lines(M[0].reshape(leaf_shape), view.width - 6)), indent=4)
    else:
        view.table(table)
        if len(rows) < m or len(cols) < n:
            shown = (f"{len([j for j in cols if j is not None])} of {n} columns" if len(rows) == m
                     else f"a corner of the {m}{s['times']}{n} matrix")
            view.note(styled(f"shown: {shown} ({min_max(M, fmt)}); all of it: --json "
                           f"(jacobian.{name})", style=STYLE["note"]))
    diagonal = is_diagonal(M) and out_shape == leaf_shape and m > 1
    if diagonal and m > 4:
        _elementwise(view, name, M, v, vtj, grad, leaf_shape)
    else:
        for line in _sum_line(view, name, M, v, vtj, grad, leaf_shape):
            view.print(line)
    if diagonal:
        view.note(styled(f"J is diagonal: each {view.y}[i] depends on {name}[i] only, so "
                       f"{name}.grad[i] = v[i]{s['dot']}J[i,i]", style=STYLE["note"]))
    if not np.allclose(vtj * r.repeat, grad, rtol=1e-4, atol=1e-6, equal_nan=True):
        view.note(styled(f"note: {name}.grad from backward differs from the sum above "
                        "(non-finite or rounded terms)", style=STYLE["warn"]))
    view.print()


def _alone(view, name, M, out_shape, leaf_shape):
    """J without a cotangent: its rows and columns, nothing weighted or added up."""
    s, fmt = view.s, view.fmt
    m, n = M.shape
    rows, k = _pick(m, MAX_J_ROWS), n
    while True:
        cols = _pick(n, k)
        t = Table(box=RULED, show_edge=False, pad_edge=False, padding=(0, 1))
        t.add_column("", no_wrap=True)
        for j in cols:
            t.add_column(s["hdots"] if j is None else _index(name, leaf_shape, j),
                         justify="right", no_wrap=True)
        for i in rows:
            if i is None:
                t.add_row(s["vdots"], *[s["vdots"] for _ in cols])
                continue
            t.add_row(styled(_index(view.y, out_shape, i), style=STYLE["note"]),
                      *[s["hdots"] if j is None else fmt.num(M[i, j]) for j in cols])
        if k <= 2 or needed_width(view.c, t) <= view.width:
            break
        k = k - 1 if k <= 12 else min(k // 2, 12)
    view.table(t)
    if len(rows) < m or len(cols) < n:
        view.note(styled(f"shown: a corner ({min_max(M, fmt)}); all of it: --json "
                         f"(jacobian.{name})", style=STYLE["note"]))
    view.print()


def _table(view, name, M, v, vtj, grad, rows, cols, out_shape, leaf_shape):
    s, fmt = view.s, view.fmt
    t = Table(box=RULED, show_edge=False, pad_edge=False, padding=(0, 1))
    t.add_column("", no_wrap=True)
    t.add_column("v", justify="right", no_wrap=True, style=STYLE["v"], header_style=STYLE["v"])
    for j in cols:
        t.add_column(s["hdots"] if j is None else _index(name, leaf_shape, j),
                     justify="right", no_wrap=True)
    for i in rows:
        if i is None:
            t.add_row(s["vdots"], s["vdots"], *[s["vdots"] for _ in cols])
            continue
        cells = [s["hdots"] if j is None else fmt.num(M[i, j]) for j in cols]
        t.add_row(styled(_index(view.y, out_shape, i), style=STYLE["note"]), fmt.num(v[i]), *cells)
    t.add_section()
    flat_vtj, flat_grad = vtj.reshape(-1), grad.reshape(-1)
    label = view.vtj()
    t.add_row(styled(label, style=STYLE["grad"]), "",
              *[styled(s["hdots"] if j is None else fmt.num(flat_vtj[j]), style=STYLE["grad"])
                for j in cols])
    if view.r.repeat > 1:
        t.add_row(styled(f"{view.r.repeat}{s['times']}{view.vtj()}", style=STYLE["grad"]), "",
                  *[styled(s["hdots"] if j is None else fmt.num(flat_grad[j]), style=STYLE["grad"])
                    for j in cols])
    return t


def _sum_line(view, name, M, v, vtj, grad, leaf_shape) -> list:
    s, fmt = view.s, view.fmt
    m = M.shape[0]
    picks = _pick(m, MAX_SUM_TERMS)
    terms = []
    for i in picks:
        if i is None:
            terms.append(s["hdots"])
            continue
        row = M[i].reshape(leaf_shape) if leaf_shape else M[i, 0]
        text = fmt.line(row)
        if len(text) > 36:      # too long to write out: name the row instead
            text = "J" if m == 1 else \
                f"(row {_index(view.y, tuple(np.shape(view.r.output)), i)} of J)"
        terms.append(f"{fmt.num(v[i])}{s['dot']}{text}")
    wide = max(24, view.width - 12)
    lhs = f"{name}.grad "
    rep = view.r.repeat
    # the steps of the sum: the weighted rows, [the one-call total], the grad
    first = " + ".join(terms)
    if rep > 1:
        first = f"{rep} {s['times']} ({first})"
    steps = [first]
    if rep > 1:
        steps.append(f"{rep} {s['times']} {fmt.line_fitting(vtj, wide)}")
    steps.append(fmt.line_fitting(grad, wide))
    note = f"   ({s['sum']} over all {m:,} rows of J)" if len(picks) < m else ""
    one = lhs + "= " + " = ".join(steps) + note
    if len(one) <= view.width:
        out = [Text(one)]
    else:
        # one step per line with each "=" under the first, the terms broken at " + "
        out, line = [], lhs + "= " + (f"{rep} {s['times']} (" if rep > 1 else "")
        pad = " " * len(line)
        for k, term in enumerate(terms):
            piece = (" + " if k else "") + term + (")" if rep > 1 and k == len(terms) - 1 else "")
            if k and len(line) + len(piece) > view.width:
                out.append(Text(line))
                line = pad[:-2] + "+ " + piece[3:]
            else:
                line += piece
        out.append(Text(line))
        out += [Text(" " * len(lhs) + "= " + st) for st in steps[1:]]
        if note and out[-1].cell_len + len(note) <= view.width:
            out[-1] += Text(note)
        elif note:
            out.append(Text(" " * (len(lhs) + 2) + note.strip()))
    weight = re.compile(r"(?:(?<=[ (])|^)[-+0-9.e]+(?=" + re.escape(s["dot"]) + ")")
    for t in out:           # the grad stands out; the weights have v's colour
        t.highlight_words([lhs + "=", steps[-1]], style=STYLE["grad"])
        t.highlight_regex(weight, style=STYLE["v"])
    return out


def _elementwise(view, name, M, v, vtj, grad, leaf_shape):
    """A diagonal J with many rows: vᵀ·J is v times the diagonal, element by element, so
    show v, diag(J) and their product side by side in the leaf's shape."""
    s, r = view.s, view.r
    budget = max(16, (view.width - 8) // (4 if r.repeat > 1 else 3))
    heads = ["v", "diagonal of J", f"v {s['odot']} diagonal = {view.vtj()}"]
    arrays = [v.reshape(leaf_shape), np.diag(M).reshape(leaf_shape), vtj]
    styles = [STYLE["v"], "", STYLE["grad"]]
    if r.repeat > 1:
        heads.append(f"{name}.grad ({r.repeat} calls)")
        arrays.append(grad)
        styles.append(STYLE["grad"])
    view.note(styled(f"{name}.grad = v{s['T']}{s['dot']}J = v {s['odot']} diagonal of J "
                     "(element by element)" + (f", accumulated over {r.repeat} calls"
                                                if r.repeat > 1 else ""), style=STYLE["grad"]),
              indent=0)
    if all(fits(a, view.fmt, budget) for a in arrays):
        t = Table(box=RULED, show_edge=False, pad_edge=False, padding=(0, 1))
        for h, st in zip(heads, styles):
            t.add_column(h, style=st, header_style=st, no_wrap=True)
        t.add_row(*[view.fmt.block(a) for a in arrays])
        view.table(t)
        return
    for h, a, st in zip(heads, arrays, styles):       # too large: one summary per line
        view.note(styled(h + ":", style=st))
        view.note(Text(view.array_lines(a, view.width - 6)), indent=4)
