"""Where a non-finite number came from: PyTorch's anomaly mode, after the fact.

Names the first graph node whose value became non-finite although its inputs were finite,
or else the first backward rule that turned finite cotangents into non-finite ones, with
its position in the text. It is run only when a result holds a NaN or an infinity, and
never changes a number.
"""
from __future__ import annotations

import numpy as np

from .autograd import sum_to


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
    import re
    bad_value = not np.isfinite(values[output]).all()
    bad_grad = any(not np.isfinite(g).all() for g in grads.values())
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
            m = re.compile(r"[A-Za-z_]\w*|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?").match(
                source or "", eq.pos or 0) if eq.pos is not None else None
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
    """Backward again, watching for the first rule that turns finite cotangents into
    non-finite ones: (its node, what it returned), or (None, None)."""
    nodes = graph.nodes
    ct = {output: cot}
    with np.errstate(all="ignore"):
        for eq in reversed(nodes[: output + 1]):
            if eq.kind != "op" or eq.id not in ct:
                continue
            g = ct.pop(eq.id)
            args = [values[i] for i in eq.inputs]
            for j, i in enumerate(eq.inputs):
                rule = eq.op.vjp(j)
                if not nodes[i].requires_grad or rule is None:
                    continue
                v = rule(g, values[eq.id], *args, **eq.params)
                if v is None:
                    continue
                v = sum_to(v, 0, (), nodes[i].shape)
                if not np.isfinite(v).all():
                    return eq, v
                ct[i] = v if i not in ct else ct[i] + v
    return None, None

