"""The engine: values, gradients and Jacobians of a compiled graph, through one entry point.

`differentiate(Request)` runs forward and backward (and the Jacobian when asked) and returns
an `Answer`; it takes the plain path (plain.py, the definition) or the economic one
(economy.py, the same numbers with less memory and time), as `ECONOMY` says. The memory
estimates (sizes.py) let a caller check its limits before anything is allocated, and
`describe_nonfinite` (diagnose.py) says where a NaN or infinity first appeared. The engine
never parses, prints, checks limits or knows about the CLI.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import economy, plain
from .diagnose import describe_nonfinite
from .plain import backward, forward, jacobian, sum_to
from .sizes import elements, jacobian_entries, jacobian_memory, largest

__all__ = ["Request", "Answer", "differentiate", "describe_nonfinite", "forward", "backward",
           "jacobian", "sum_to", "elements", "largest", "jacobian_entries", "jacobian_memory",
           "ECONOMY"]

# False: every request takes the plain path (tests compare the two, byte for byte)
ECONOMY = True


class Request(NamedTuple):
    """What to compute: the grads of `leaves` (node ids) for `cotangent` pulled back from
    node `output`, their Jacobians too when `jacobian`, and whether intermediate values may
    be dropped once no rule reads them (nothing after the engine reads them). Read-only, and
    made per call: a named tuple is made in 0.36 us, a frozen dataclass in 0.9."""

    graph: object
    output: int
    cotangent: np.ndarray
    leaves: tuple
    jacobian: bool = False
    drop_values: bool = False


@dataclass
class Answer:
    """What the engine computed. `values`: every node's value by id (a dropped one comes back
    on first read); `grads`: leaf id -> grad for each requested leaf the output reaches;
    `jacobians`: leaf id -> Jacobian (output.shape + leaf.shape) of every requested leaf, or
    None when not asked for; `no_path`: requested leaves the output does not reach."""

    values: list
    grads: dict
    jacobians: dict | None
    no_path: list


def differentiate(request: Request) -> Answer:
    """Forward, backward and (when asked) the Jacobians of one request; the economic path
    gives the plain path's numbers bit for bit (tests/test_perf_equivalence.py)."""
    graph, out, leaves = request.graph, request.output, request.leaves
    if ECONOMY:
        values, grads, jac = economy.run(request)
    else:
        values = plain.forward(graph, upto=out)
        grads = plain.backward(graph, values, request.cotangent, out)
        jac = plain.jacobian(graph, values, out, leaves) if request.jacobian else None
    return Answer(values=values, grads={i: grads[i] for i in leaves if i in grads},
                  jacobians=jac, no_path=[i for i in leaves if i not in grads])
