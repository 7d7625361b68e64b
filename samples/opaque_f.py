#!/usr/bin/env python3
"""The German seed page's `f_str` as an external program for `gradcalc --extern` (SPEC 11).

The page computes f(x, w) = 2*x*w[0] + x**2*w[1] one element at a time outside autograd
(through text and eval), so PyTorch cannot differentiate it and the page writes a backward
by finite differences. Here the same function is a separate process that gradcalc cannot see
into; it needs only the standard library (and no eval). The page's first training step
(samples/german_fit_first_batch.grad, with the page's random batch fixed as a linspace):

    gradcalc 'mse_loss(f(x, w), y)' --extern f='python3 samples/opaque_f.py' --wrt w \
        x='linspace(0.1, 1, 10)' w=0,0 y='2.4*linspace(0.1, 1, 10) - 3.4*linspace(0.1, 1, 10)**2'

gives loss 0.2092948 and w.grad [0.418, 0.270644] (PyTorch's exact numbers, to about 1e-10
from central differences); tests/test_extern.py checks it and trains the page's Model2
through it.

Protocol: one JSON line per call on stdin, {"args": [x, w]}; one answer line on stdout,
{"value": f(x, w)} with x's shape, or {"error": "message"}. It exits at the end of stdin.
"""
import json
import math
import sys

SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def number(v):
    """A JSON number, or NaN/Infinity written as strings (as gradcalc sends them)."""
    if isinstance(v, str) and v in SPECIAL:
        return SPECIAL[v]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def as_json(v):
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def f_str(x, w):
    """Element by element, as the page's list comprehension over x."""
    if isinstance(x, list):
        return [f_str(x_, w) for x_ in x]
    x_ = number(x)
    return as_json(2 * x_ * w[0] + x_ ** 2 * w[1])


def answer(line):
    try:
        x, w = json.loads(line)["args"]
        w = [number(v) for v in w]
        if len(w) != 2:
            raise ValueError(f"w must have 2 elements, got {len(w)}")
        return {"value": f_str(x, w)}
    except (ValueError, TypeError, KeyError) as exc:
        return {"error": str(exc)}


def main():
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(answer(line)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
