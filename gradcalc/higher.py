"""SPEC 9 in the pipeline: J·u, Hessian, HVP and Taylor added to a Result.

It reads the directions (`--tangent`, `--hvp`) as values of their leaves' shapes, picks the
leaves (those that require grad), and asks engine.higher for the numbers. It owns the rules
of SPEC 9 that are not arithmetic: a leaf without a direction gets 0, Taylor's default
direction is 1 for a single scalar leaf, and J·u alone needs no cotangent. It never
differentiates anything itself and never prints.
"""
from __future__ import annotations

import numpy as np

from .engine import forward, higher
from .engine.steps import chain_rule
from .errors import GradcalcError
from .result import Result


def directions(graph, given: dict | None, option: str, read, leaves) -> dict:
    """{leaf: array of its shape} for `--tangent`/`--hvp` (a number broadcasts)."""
    out = {}
    for name, value in (given or {}).items():
        if name not in graph.leaves:
            raise GradcalcError("usage", f"--{option}: no leaf is named '{name}' (leaves: "
                                         f"{', '.join(graph.leaf_order) or 'none'})")
        if name not in leaves:
            raise GradcalcError("usage", f"--{option}: '{name}' does not require grad "
                                         "(it is left out by --wrt)")
        shape = graph.nodes[graph.leaves[name]].shape
        u = read(value, f"--{option} {name}")
        if u.shape == ():
            u = np.broadcast_to(u, shape).copy()
        if u.shape != shape:
            raise GradcalcError("shape", f"--{option} {name} has shape {u.shape} but the leaf "
                                         f"has shape {shape}; pass one number or an array of "
                                         f"shape {shape}")
        out[name] = u
    return out


def taylor_direction(graph, tangent: dict, leaves) -> dict:
    if tangent:
        return tangent
    scalars = [n for n in leaves if graph.nodes[graph.leaves[n]].shape == ()]
    if len(leaves) == 1 and scalars:
        return {scalars[0]: np.ones((), graph.dtype)}
    raise GradcalcError("usage", "--taylor needs a direction: give --tangent NAME=VALUE (the "
                                 "default, 1, is only for a single scalar leaf)")


def attach(result: Result, s, read, limits):
    """Fill result.jvp / hessian / hvp / taylor as `s` asks."""
    graph, output = result.graph, result.output_id
    leaves = list(result.wrt)
    tangent = directions(graph, s.tangent, "tangent", read, leaves)
    if s.tangent is not None:
        result.jvp = higher.jvp(graph, output, tangent, limits)
        result.directions["tangent"] = tangent
    if s.taylor:
        along = taylor_direction(graph, tangent, leaves)
        result.taylor = higher.taylor(graph, output, along, s.taylor, limits)
        result.directions["taylor"] = along
    if s.hvp is not None:
        u = directions(graph, s.hvp, "hvp", read, leaves)
        result.hvp = higher.hvp(graph, output, result.cotangent, u, leaves, limits)
        result.directions["hvp"] = u
    if s.hessian:
        result.hessian = higher.hessian(graph, output, result.cotangent, leaves, limits)
    if s.steps and result.cotangent is not None:
        result.steps = chain_rule(graph, output, result.cotangent, result.values,
                                  limits)


def checked(result: Result):
    """The second-order answers of `result` as the checks read them (checks.Higher), or
    None when none was asked for."""
    if all(x is None for x in (result.jvp, result.taylor, result.hessian, result.hvp)):
        return None
    from .checks import Higher
    d = result.directions
    return Higher(jvp=result.jvp, tangent=d.get("tangent"), taylor=result.taylor,
                  along=d.get("taylor"), hessian=result.hessian, hvp=result.hvp,
                  hvp_dir=d.get("hvp"))


def forward_only(text, graph, output, out_name, s, read, limits) -> Result:
    """J·u and Taylor of an output with no cotangent: no grads, no Jacobian; the checks
    (api.run attaches them) look at J·u and Taylor alone."""
    values = forward(graph, upto=output)
    wanted = [n for n in graph.leaf_order if graph.nodes[graph.leaves[n]].requires_grad]
    result = Result(
        expression=text, output_name=out_name, output=values[output], cotangent=None,
        cotangent_implied=False, grads={}, no_path=[],
        leaves={n: graph.nodes[i].value for n, i in graph.leaves.items()},
        jacobian=None, jacobian_note="not computed: no --grad, only J·u was asked for",
        checks={}, repeat=s.repeat, dtype=s.dtype, wrt=wanted, graph=graph, values=values,
        output_id=output)
    result.nonfinite = None
    attach(result, s, read, limits)
    return result
