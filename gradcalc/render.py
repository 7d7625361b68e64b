"""The human view (minimal placeholder; the rich view replaces it)."""
from __future__ import annotations

import sys

import numpy as np


def render(result, precision=None, show_graph=False):
    p = precision or 6
    np.set_printoptions(precision=p)
    out = sys.stdout
    out.write(f"output {result.output_name or ''} {result.output.shape}: {result.output}\n")
    out.write(f"cotangent v: {result.cotangent}\n")
    for name, g in result.grads.items():
        out.write(f"{name}.grad = {g}\n")
    for kind, c in result.checks.items():
        out.write(f"check {kind}: {c}\n")
