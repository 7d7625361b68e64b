"""The autograd graph for people: `--graph` (a rich Tree from the output back to the leaves)
and `--dot FILE` (the same graph as Graphviz DOT).

Both are loops over the compiled graph's equations, named as PyTorch names the nodes of its
graph (`grad_fn`): `MulBackward0`, `LogBackward0`, ... and `AccumulateGrad` for a leaf that
requires grad. Nodes that need no gradient (constants, leaves outside --wrt, a `detach`) are
shown, dimmed, but not expanded: PyTorch's graph does not contain them. A node's title is
`eq.torch`, the name the op table gave it at compile time; nothing here knows an op by name
but `detach`'s cut. Nothing here recurses (a deep expression must not hit Python's recursion
limit). The tree's functions import rich and the style kit when called, not this module:
`--json --dot` stays free of rich's start-up (tests/test_graph.py holds it).
"""
from __future__ import annotations

import numpy as np

from ..errors import escape_text
from .numbers import Numbers, shape_text

MAX_TREE_NODES = 200      # lines of the --graph tree before the rest is counted, not shown
SMALL_VALUE = 6           # values with at most this many elements are shown in the graph


def reachable(graph, output):
    """The equations the output depends on, in graph order."""
    seen = {output}
    for eq in reversed(graph.nodes[: output + 1]):
        if eq.id in seen:
            seen.update(eq.inputs)
    return [eq for eq in graph.nodes[: output + 1] if eq.id in seen]


def expands(eq) -> bool:
    """Whether the node is a function of PyTorch's graph, whose inputs are shown."""
    return eq.kind == "op" and eq.requires_grad


def _names(result, out_name: str | None = None) -> dict:
    """node id -> the name it is bound to (newest binding), leaves by their own name; an
    unnamed output gets `out_name` (the human view calls it y)."""
    graph = result.graph
    names = {i: n for n, i in graph.names.items()}
    if out_name and result.output_id not in names:
        names[result.output_id] = out_name
    for eq in graph.nodes:
        if eq.kind == "leaf" and eq.name:
            names[eq.id] = eq.name
    return names


def _value_text(result, eq, fmt: Numbers) -> str:
    values = result.values
    v = eq.value if eq.kind != "op" else (values[eq.id] if values is not None and
                                          eq.id < len(values) else None)
    if v is None:
        return ""
    v = np.asarray(v)
    if v.size > SMALL_VALUE:
        return ""
    return fmt.line(v)


def describe(result, eq, fmt: Numbers, names: dict) -> dict:
    """What a node shows: its title, role and details, shared by the tree and DOT."""
    name = names.get(eq.id)
    shape = shape_text(eq.shape)
    value = _value_text(result, eq, fmt)
    if eq.kind == "leaf":
        if eq.requires_grad:
            grad = result.grads.get(eq.name)
            small = grad is not None and np.size(grad) <= SMALL_VALUE
            return {"name": name, "title": "AccumulateGrad", "role": "leaf", "shape": shape,
                    "value": value, "grad": fmt.line(np.asarray(grad)) if small else ""}
        return {"name": name, "title": "constant leaf", "role": "nograd", "shape": shape,
                "value": value, "why": "not in --wrt: no grad"}
    if eq.kind == "const":
        return {"name": None, "title": "constant", "role": "const",
                "shape": "" if not eq.shape else shape, "value": value}
    op = eq.op.name
    if eq.requires_grad:
        return {"name": name, "title": eq.torch, "role": "op",
                "shape": shape, "value": value, "op": op}
    why = ("graph cut: no gradient flows back" if op == "detach"
           else "needs no grad (its inputs require none)")
    return {"name": name, "title": op, "role": "nograd", "shape": shape, "value": value,
            "why": why, "op": op}


# -- the tree (--graph) ------------------------------------------------------------------

def _label(d: dict):
    from rich.text import Text      # see the module docstring: DOT alone loads no rich
    from .plain import STYLE
    t = Text()
    if d.get("name"):
        t.append(escape_text(d["name"]), style=STYLE["name"])
        t.append(" = " if d["role"] in ("op", "nograd") and d.get("op") else "  ")
    dim = d["role"] in ("const", "nograd")
    t.append(d["title"], style=STYLE["note"] if dim else
             ("bold green" if d["role"] == "leaf" else "bold"))
    if d["role"] == "op" and not _obvious(d["title"], d["op"]):
        t.append(f" ({d['op']})", style=STYLE["note"])
    if d["shape"]:
        t.append(f"  {d['shape']}", style=STYLE["note"])
    if d.get("value"):
        t.append(f"  {d['value']}", style=STYLE["note"] if dim else "")
    if d.get("why"):
        t.append(f"  ({d['why']})", style=STYLE["note"])
    return t


def _obvious(torch_name: str, op: str) -> bool:
    """MulBackward0 says mul; MmBackward0 does not say matmul."""
    return torch_name.lower().startswith(op.replace("_", "").lower())


def tree(result, fmt: Numbers | None = None, width: int = 80, out_name: str | None = None):
    """The autograd graph as a rich Tree, output at the root, leaves at the tips. A node
    used twice is expanded once; later uses say so."""
    from rich.console import Group
    from rich.text import Text
    from rich.tree import Tree
    fmt = fmt or Numbers()
    graph, out = result.graph, result.output_id
    nodes = graph.nodes
    names = _names(result, out_name)
    max_depth = max(3, (width - 30) // 4)
    root = Tree(_label(describe(result, nodes[out], fmt, names)))
    stack = [(out, root, 0)]
    expanded, shown, cut = set(), {out}, False
    count = 1
    while stack:
        i, branch, depth = stack.pop()
        eq = nodes[i]
        if not expands(eq):
            continue
        if i in expanded:
            branch.label.append("  (same node as above)", style="dim")
            continue
        expanded.add(i)
        if depth >= max_depth or count >= MAX_TREE_NODES:
            branch.add(Text("...", style="dim"))
            cut = True
            continue
        children = []
        for j in eq.inputs:
            count += 1
            shown.add(j)
            children.append((j, branch.add(_label(describe(result, nodes[j], fmt, names)))))
        for j, child in reversed(children):
            stack.append((j, child, depth + 1))
    if cut:
        hidden = len(reachable(graph, out)) - len(shown)
        root = Group(root, Text(f"... {hidden:,} more nodes not shown (all of them: "
                                "--dot FILE)", style="dim"))
    return root


# -- DOT (--dot FILE) ---------------------------------------------------------------------

def dot_quote(text: str) -> str:
    """A DOT double-quoted string: backslash and quote escaped, newlines as \\n."""
    s = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(result, fmt: Numbers | None = None) -> str:
    """The graph of `tree` as Graphviz DOT: data flows from the leaves (top) to the output
    (bottom), as torchviz draws PyTorch's graph."""
    fmt = fmt or Numbers(4)
    graph, out = result.graph, result.output_id
    names = _names(result)
    lines = ["digraph gradcalc {",
             '  graph [rankdir=TB, fontname="Helvetica"];',
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", '
             "fontsize=11];"]
    include, edges = {out}, []
    for eq in reversed(graph.nodes[: out + 1]):
        if eq.id in include and expands(eq):
            for j in eq.inputs:
                include.add(j)
                edges.append((j, eq.id))
    style = {"leaf": 'fillcolor="lightblue"', "op": 'fillcolor="white"',
             "const": 'style="dashed", shape=ellipse, fontcolor="gray40"',
             "nograd": 'style="dashed", fontcolor="gray40"'}
    for eq in graph.nodes[: out + 1]:
        if eq.id not in include:
            continue
        d = describe(result, eq, fmt, names)
        parts = []
        if d.get("name"):
            parts.append(d["name"])
        parts.append(d["title"])
        parts.append("  ".join(p for p in (d["shape"], d.get("value")) if p))
        if d.get("grad"):
            parts.append(f"grad {d['grad']}")
        if d.get("why"):
            parts.append(d["why"])
        attrs = style[d["role"]]
        if eq.id == out:
            attrs = 'fillcolor="darkolivegreen1", penwidth=2'
        lines.append(f"  n{eq.id} [label={dot_quote(chr(10).join(parts))}, {attrs}];")
    for a, b in edges[::-1]:
        lines.append(f"  n{a} -> n{b};")
    lines.append("}")
    return "\n".join(lines) + "\n"
