"""`gradcalc fit`'s per-step shortcuts (issue 15, figure 17a) against the plain way, bit for bit.

The training loop keeps one program per batch shape and writes each step's batch and
parameters into its leaves in place, with its Request kept (gradcalc/fit/loop.py,
STEP_IN_PLACE); the plain way takes every step's program from the program cache. Both must
give the same parameters, history and final loss to the bit, whatever the optimizer, dtype,
batching (a short last batch, shuffled copies), parameter shapes, a parameter the loss does
not reach, or a program that draws random numbers.
"""
from __future__ import annotations

import numpy as np
import pytest

from gradcalc.errors import Limits
from gradcalc.fit import loop

RNG = np.random.default_rng(15)
X = RNG.uniform(0, 1, 23)
M = RNG.standard_normal((23, 3))
DATA = {"x": X, "y": 2 * X * 1.2 - 3.4 * X**2, "X": M, "Y": M @ np.array([[1.0, -2], [0.5, 3],
                                                                          [-1, 0.25]])}
GERMAN = "f(x, w) = 2*x*w[0] + x**2*w[1]\nloss = mse_loss(f(x, w), y)"
CASES = [
    ("german adam", GERMAN, {"w": [0.0, 0.0]}, "adam", {"lr": 0.1}, {}),
    ("german adamw amsgrad shuffled", GERMAN, {"w": [0.5, -1.0]}, "adamw",
     {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}, {"shuffle": True, "seed": 3}),
    ("german sgd nesterov", GERMAN, {"w": [0.0, 0.0]}, "sgd",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True}, {}),
    ("matrix and vector params", "mse_loss(X @ W + c, Y)",
     {"W": np.zeros((3, 2)), "c": [0.1, -0.1]}, "adam", {"lr": 0.01}, {}),
    ("a parameter the loss does not reach", "mean((a*x - y)**2)", {"a": 0.0, "b": 1.0},
     "adam", {"lr": 0.1}, {}),
    ("a program that draws random numbers", "mean((a*x + 0.01*sum(rand(2)) - y)**2)",
     {"a": 0.0}, "sgd", {"lr": 0.1}, {}),
]


def _fit(text, starts, optimizer, hyper, extra, dtype):
    values = {**{k: np.asarray(v, dtype=dtype) for k, v in DATA.items() if k in text},
              **{k: np.asarray(v, dtype=dtype) for k, v in starts.items()}}
    return loop.fit(loop.FitRequest(text=text, values=values, params=list(starts),
                                    optimizer=optimizer, hyper=hyper, epochs=4, batch_size=5,
                                    dtype=dtype, limits=Limits(), **extra))


def _same(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert got.tobytes() == want.tobytes(), f"{what}: {got} != {want}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_steps_in_place_equal_steps_through_the_program_cache(case, dtype, monkeypatch):
    _, *how = case
    fast = _fit(*how, dtype)
    monkeypatch.setattr(loop, "STEP_IN_PLACE", False)
    plain = _fit(*how, dtype)
    assert fast.stopped == plain.stopped == "epochs" and fast.epochs == plain.epochs == 4
    for name in plain.params:
        _same(fast.params[name], plain.params[name], name)
    _same([h.loss for h in fast.history], [h.loss for h in plain.history], "history")
    _same(fast.loss, plain.loss, "final loss")
    # the steps moved the parameters the loss reaches (a test that cannot fail is a defect)
    moved = [k for k in plain.params if not np.array_equal(plain.params[k], how[1][k])]
    assert moved and "b" not in moved
