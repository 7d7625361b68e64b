"""Where a non-finite number first appeared (PyTorch's anomaly mode, for JSON's
`nonfinite` and the human view): the first node whose value became non-finite from finite
inputs, else the first backward rule that made a non-finite contribution from finite
cotangents. It watches the plain backward through its hook and never runs a backward loop
of its own; it only reads values, it never changes one.
"""
from __future__ import annotations

import re

import numpy as np

from .economy import all_finite
from .plain import backward

# a name or a number at a constant's position in the text
_TOKEN = re.compile(r"[A-Za-z_]\w*|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _kind_of(arr) -> str:
    """The first non-finite kind in an array, as JSON writes it."""
    a = np.asarray(arr)
    if np.isnan(a).any():
        return "NaN"
    return "Infinity" if np.isposinf(a).any() else "-Infinity"


def _where(source: str, pos):
    """(info fields, " at line L, column C" or " at column C") of a position in the text."""
    if pos is None or source is None:
        return {}, ""
    before = source[:pos]
    line = before.count("\n") + 1
    col = pos - (before.rfind("\n") + 1) + 1
    at = f" at line {line}, column {col}" if "\n" in source else f" at column {col}"
    return {"position": pos, "line": line, "column": col}, at


def describe_nonfinite(graph, values, output, cot, grads):
    """Name the first graph node whose value or gradient became non-finite (PyTorch's anomaly
    mode): the first node, in evaluation order, that the output depends on and whose value is
    non-finite although its inputs are finite (a leaf, a literal such as 1e999 or inf, a
    constant folded from log(-1), or an op); failing that, the first backward rule that turned
    finite cotangents into non-finite ones. None when everything is finite."""
    bad_value = not all_finite(values[output])
    bad_grad = not all(map(all_finite, grads.values()))
    if not (bad_value or bad_grad):
        return None
    source = graph.source
    if bad_value:
        folded = graph.folded

        def inputs(eq):          # a folded constant's inputs are the constants it came from
            return eq.inputs if eq.kind == "op" else folded.get(eq.id, ("", ()))[1]

        def value(i):
            v = values[i]
            return graph.nodes[i].value if v is None else v

        reach = {output}
        for eq in reversed(graph.nodes[: output + 1]):
            if eq.id in reach:
                reach.update(inputs(eq))
        culprit = None
        with np.errstate(all="ignore"):
            for eq in graph.nodes[: output + 1]:
                if eq.id not in reach or value(eq.id) is None:
                    continue
                if not np.isfinite(value(eq.id)).all() and all(
                        np.isfinite(value(i)).all() for i in inputs(eq)):
                    culprit = eq
                    break
        if culprit is None:
            return {"node": None, "in": "value", "message": "the output holds non-finite values"}
        eq = culprit
        kind = _kind_of(value(eq.id))
        where, at = _where(source, eq.pos)
        if eq.kind == "op" or eq.id in folded:
            name = eq.op.name if eq.kind == "op" else folded[eq.id][0]
            info = {"node": name, "op": name, "in": "value", **where}
            info["message"] = f"{name}() produced a non-finite value{at} ({kind})"
        elif eq.kind == "leaf":
            info = {"node": eq.name, "op": None, "in": "value", **where}
            info["message"] = f"the leaf {eq.name} holds a non-finite value ({kind})"
        else:
            m = _TOKEN.match(source or "", eq.pos) if eq.pos is not None else None
            shown = f"the number {m.group()}" if m and m.group()[0] in "0123456789." else (
                f"the constant {m.group()}" if m else "a constant")
            info = {"node": "const", "op": None, "in": "value", **where}
            info["message"] = f"{shown}{at} is non-finite ({kind})"
        info["value"] = kind
        return info
    if not np.isfinite(cot).all():
        return {"node": None, "in": "gradient", "value": _kind_of(cot),
                "message": f"the cotangent v (--grad) holds non-finite values ({_kind_of(cot)})"}
    eq, v = _first_bad_rule(graph, values, cot, output)
    if eq is None:
        return {"node": None, "in": "gradient",
                "message": "a gradient overflowed when the contributions to it were added up"}
    kind = _kind_of(v)
    where, at = _where(source, eq.pos)
    info = {"node": eq.torch, "op": eq.op.name, "in": "gradient", **where, "value": kind}
    # PyTorch's anomaly mode says "Function 'SqrtBackward0' returned nan values"
    info["message"] = f"{eq.torch}{at} returned {'inf' if kind == 'Infinity' else kind} " \
                      f"(the gradient of {eq.op.name}())"
    return info


def _first_bad_rule(graph, values, cot, output):
    """The plain backward, stopped at the first rule that turns finite cotangents into a
    non-finite contribution: (its node, what it contributed), or (None, None)."""
    found = []

    def watch(eq, v):
        if not np.isfinite(v).all():
            found.append((eq, v))
            return True
        return False

    backward(graph, values, cot, output, hook=watch)
    return found[0] if found else (None, None)
