"""The human view of SPEC 9: J·u, the Hessian, H·u and the Taylor derivatives, a few lines each.

J·u is shown as the rate of change of the output along u; the Hessian as a table whose rows
and columns are named by leaf element, with its structure (diagonal, symmetric) said; the
Taylor derivatives as a short table of orders. It lays out what the Result holds and never
computes a derivative.
"""
from __future__ import annotations

import math

import numpy as np
from rich.table import Table
from rich.text import Text

from .numbers import is_diagonal
from .plain import STYLE
from .style import styled

MAX_HESSIAN_SIDE = 12      # leaf elements of a Hessian drawn as a table; larger: summarised


def element_names(r, leaves) -> list:
    names = []
    for n in leaves:
        shape = np.shape(r.leaves[n])
        if not shape:
            names.append(n)
            continue
        names.extend(f"{n}[{','.join(map(str, i))}]" for i in np.ndindex(*shape))
    return names


def dense(r, leaves) -> np.ndarray:
    """The Hessian blocks as one (n, n) matrix over every leaf element."""
    rows = []
    for a in leaves:
        na = max(1, math.prod(np.shape(r.leaves[a])))
        rows.append(np.concatenate([np.asarray(r.hessian[a][b]).reshape(na, -1)
                                    for b in leaves], axis=1))
    return np.concatenate(rows, axis=0)


def render_higher(view):
    r, s, y = view.r, view.s, view.y
    if r.jvp is not None:
        view.print(styled(f"J{s['dot']}u = {s['d']}{y}/{s['d']}t of {y}(x + t{s['dot']}u) "
                          "at t = 0", style=STYLE["head"]))
        view.note(styled(f"how fast {y} moves when the leaves move along the tangent u "
                         "(forward mode, torch.func.jvp)", style=STYLE["note"]))
        view.print(Text(view._indent(view.array_lines(np.asarray(r.jvp), view.width - 4))))
        view.print()
    if r.hvp is not None:
        view.print(styled(f"H{s['dot']}u, the Hessian of {_scalar(view)} times u, without "
                          "forming H", style=STYLE["head"]))
        for n, v in r.hvp.items():
            view.print(Text(f"  {n}: ") + Text(view.array_lines(np.asarray(v), view.width - 8)))
        view.print()
    if r.hessian is not None:
        hessian(view)
    if r.steps is not None:
        view.note(styled("chain rule, in the order backward applies it (output to leaves):",
                         style=STYLE["head"]), indent=0)
        if r.graph is not None:
            from ..engine.steps import definitions
            view.note(styled("where " + ", ".join(definitions(r.graph, r.output_id)),
                             style=STYLE["note"]))
        for step in r.steps:
            room = max(20, view.width - 5 - len(step["formula"]))
            value = view.fmt.line_fitting(np.asarray(step["value"]), room)
            line = Text("  ") + Text(step["formula"]) + Text(" = ", style=STYLE["note"])
            view.hang(line + Text(value), 4)
        view.print()
    if r.taylor is not None:
        table = Table(box=None, pad_edge=False, show_header=True, header_style=STYLE["head"])
        table.add_column("k", justify="right")
        table.add_column(f"{s['d']}^k {y}/{s['d']}t^k along u")
        for k, v in enumerate(r.taylor, 1):
            table.add_row(str(k), view.array_lines(np.asarray(v), view.width - 12))
        view.print(styled(f"Taylor: derivatives of t -> {y}(x + t{s['dot']}u) at t = 0",
                          style=STYLE["head"]))
        view.table(table)
        view.print()


def brief_higher(view):
    """--brief: one line per answer of SPEC 9 — J·u, each leaf's H·u, each Hessian block
    (its diagonal when the block is kept as one), each Taylor order."""
    r, s = view.r, view.s
    lines = []
    if r.jvp is not None:
        lines.append((f"J{s['dot']}u", r.jvp))
    for n, v in (r.hvp or {}).items():
        lines.append((f"(H{s['dot']}u)[{n}]", v))
    for a, row in (r.hessian or {}).items():
        for b, block in row.items():
            d = getattr(block, "diag", None)
            lines.append((f"H[{a},{b}]" if d is None else f"diag H[{a},{b}]",
                          block if d is None else d))
    for k, v in enumerate(r.taylor or (), 1):
        lines.append((f"Taylor {k}", v))
    for label, value in lines:
        text = view.fmt.line_fitting(np.asarray(value), max(20, view.width - 4 - len(label)))
        view.print(styled(f"{label} = ", style=STYLE["name"]) + Text(text))


def _scalar(view) -> str:
    return view.y if view.r.cotangent_implied else f"v{view.s['T']}{view.s['dot']}{view.y}"


def diagonals(r, leaves) -> dict | None:
    """{(a, b): diagonal} when every block is kept as its diagonal (an elementwise
    program's), else None."""
    got = {(a, b): getattr(r.hessian[a][b], "diag", None) for a in leaves for b in leaves}
    return None if any(d is None for d in got.values()) else got


def hessian(view):
    r = view.r
    leaves = list(r.hessian)
    n = sum(max(1, math.prod(np.shape(r.leaves[a]))) for a in leaves)
    diag = diagonals(r, leaves)
    if diag is not None and n > MAX_HESSIAN_SIDE:
        by_diagonal(view, leaves, diag, n)
        return
    H = dense(r, leaves)
    n = H.shape[0]
    words = []
    if is_diagonal(H):
        words.append("diagonal")
    if np.array_equal(H, H.T, equal_nan=True):
        words.append("symmetric")
    head = f"Hessian of {_scalar(view)}, {n}{view.s['times']}{n}"
    view.print(styled(head + (f" ({', '.join(words)})" if words else ""), style=STYLE["head"]))
    if n > MAX_HESSIAN_SIDE:
        view.print(Text(view._indent(view.array_lines(H, view.width - 4, matrix=True))))
        view.print()
        return
    names = element_names(r, leaves)
    table = Table(box=None, pad_edge=False, show_header=True, header_style=STYLE["name"])
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, H):
        table.add_row(styled(name, style=STYLE["name"]), *[view.fmt.num(x) for x in row])
    view.table(table)
    view.print()


def by_diagonal(view, leaves, diag, n):
    """A large elementwise Hessian: each block's diagonal (every other entry is 0), never
    the n×n matrix."""
    words = ["diagonal blocks" if len(leaves) > 1 else "diagonal"]
    if all(np.array_equal(diag[(a, b)], diag[(b, a)], equal_nan=True) for a, b in diag):
        words.append("symmetric")
    view.print(styled(f"Hessian of {_scalar(view)}, {n:,}{view.s['times']}{n:,} "
                      f"({', '.join(words)})", style=STYLE["head"]))
    view.note(styled("an elementwise program: each block is 0 off its diagonal, so only "
                     "the diagonals are shown (--json writes the blocks densely)",
                     style=STYLE["note"]))
    for (a, b), d in diag.items():
        view.print(Text(f"  diag H[{a},{b}]: ") +
                   Text(view.array_lines(np.asarray(d), view.width - 16)))
    view.print()
