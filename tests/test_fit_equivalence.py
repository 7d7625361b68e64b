"""`gradcalc fit`'s per-step shortcuts (issue 15, figure 17a) against the plain way, bit for bit.

The training loop keeps one program per batch shape and writes each step's batch and
parameters into its leaves in place, with its Request kept (gradcalc/fit/loop.py,
STEP_IN_PLACE); the plain way takes every step's program from the program cache. Both must
give the same parameters, history and final loss to the bit, whatever the optimizer, dtype,
batching (a short last batch, shuffled copies), parameter shapes, a parameter the loss does
not reach, or a program that draws random numbers. Adam's step rounds its constant kernel
arguments once and hands them to numpy as 0-d arrays; the plain way, a transcription of
torch's `_single_tensor_adam` with numpy scalars rounded every step, must give the same
trajectory to the bit over every recorded run (tests/reference/torch_optim.json).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcalc.errors import Limits
from gradcalc.fit import loop
from gradcalc.fit.optimizers import make_optimizer

OPTIM = json.loads((Path(__file__).resolve().parent / "reference" / "torch_optim.json")
                   .read_text())
ADAM_RUNS = [r for r in OPTIM["runs"] if r["optimizer"] in ("adam", "adamw")]

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


def _plain_adam_step(params, grads, state, hyper, decoupled):
    """torch's `_single_tensor_adam`, every kernel argument a numpy scalar made afresh."""
    lr, (beta1, beta2), eps = hyper["lr"], hyper["betas"], hyper["eps"]
    wd, amsgrad = hyper["weight_decay"], hyper["amsgrad"]
    for name, param in params.items():
        grad, f = grads[name], param.dtype.type
        if name not in state:
            state[name] = [0, np.zeros_like(param), np.zeros_like(param), np.zeros_like(param)]
        slot = state[name]
        slot[0] += 1
        if wd != 0:
            if decoupled:
                param *= f(1 - lr * wd)
            else:
                grad = grad + f(wd) * param
        w = f(1 - beta1)
        if abs(w) < 0.5:                                      # ATen's lerp, two branches
            slot[1] += w * (grad - slot[1])
        else:
            slot[1][...] = grad - (grad - slot[1]) * (f(1) - w)
        slot[2] *= f(beta2)
        slot[2] += f(1 - beta2) * grad * grad
        step = float(slot[0])
        step_size = lr / (1 - beta1 ** step)
        second = slot[2]
        if amsgrad:
            np.maximum(slot[3], slot[2], out=slot[3])
            second = slot[3]
        denom = np.sqrt(second) / f((1 - beta2 ** step) ** 0.5)
        denom += f(eps)
        param += f(-step_size) * slot[1] / denom


@pytest.mark.parametrize("run", ADAM_RUNS, ids=[f"{r['problem']}-{r['dtype']}-{r['optimizer']}-"
                                                f"{json.dumps(r['hyper'])}" for r in ADAM_RUNS])
def test_adams_step_equals_the_plain_transcription(run):
    start = OPTIM["problems"][run["problem"]]["start"]
    fast = {k: np.array(v, dtype=run["dtype"]) for k, v in start.items()}
    plain = {k: v.copy() for k, v in fast.items()}
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in run["hyper"].items()}
    optimizer = make_optimizer(run["optimizer"], **hyper)
    full = optimizer.hyper()
    state, rng = {}, np.random.default_rng(17)
    for number, step in enumerate(run["steps"], 1):
        # torch's grads where recorded, else any: the two ways must agree on every grad
        grads = {k: np.array(step["grads"][k] if "grads" in step else
                             rng.standard_normal(np.shape(v)), dtype=run["dtype"])
                 for k, v in plain.items()}
        optimizer.step(fast, grads)
        _plain_adam_step(plain, grads, state, full, optimizer.decoupled)
        for name in plain:
            _same(fast[name], plain[name], f"{name} at step {number}")
    assert any(not np.array_equal(plain[k], np.array(start[k], dtype=run["dtype"]))
               for k in plain)


# lm's one pass (gradcalc/fit/loop.py, LM_ONE_PASS): where the parameters are numbers and the
# program pointwise, each point's residuals and Jacobian come from one backward pass over the
# parameters spread to the residuals' shape; the plain route takes the residuals from the
# forward of the program as written and the Jacobian, at a point lm takes, from a pass of its
# own. Small sizes replay a whole tape, 70,001 and 140,001 points run block by block with a
# short last block; a non-pointwise program and a vector parameter take the plain route
# either way.
LM_DECAY = "A*exp(-k*x) + c - y"
LM_CASES = [      # (id, text, start values, whether the one pass applies)
    ("decay", LM_DECAY, {"A": 1.0, "k": 1.0, "c": 0.0}, True),
    ("sigmoid and a function of a parameter alone", "sigmoid(k*(x - m))*h + tanh(b)*x - y",
     {"k": -1.0, "m": 1.0, "h": 2.5, "b": 0.0}, True),
    ("a parameter the residuals do not reach", "a*x**2 + b*sin(x) - c/x - y",
     {"a": 0.5, "b": 0.5, "c": 0.0, "d": 2.0}, True),
    ("a reduction: not pointwise", "A*exp(-k*x) - mean(y)", {"A": 1.0, "k": 1.0}, False),
    ("a vector parameter", "w[0]*exp(-w[1]*x) + w[2] - y", {"w": [1.0, 1.0, 0.0]}, False),
]


def _lm(text, starts, n, dtype):
    x = np.linspace(0.5, 10, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + np.random.default_rng(5).normal(0, 0.05, n)
    values = {"x": x.astype(dtype), "y": y.astype(dtype),
              **{k: np.asarray(v, dtype=dtype) for k, v in starts.items()}}
    return loop.fit(loop.FitRequest(text=text, values=values, params=list(starts),
                                    optimizer="lm", epochs=30, dtype=dtype, limits=Limits()))


@pytest.mark.parametrize("n", [40, 5000, 70_001, 140_001])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", LM_CASES, ids=[c[0] for c in LM_CASES])
def test_lm_one_pass_equals_residuals_and_jacobian_apart(case, dtype, n, monkeypatch):
    _, text, starts, one_pass = case
    if n > 5000 and text != LM_DECAY and one_pass:
        pytest.skip("the large sizes: the decay and the programs the one pass refuses")
    forwards = []
    forward = loop.forward
    monkeypatch.setattr(loop, "forward", lambda graph: forwards.append(1) or forward(graph))
    fast = _lm(text, starts, n, dtype)
    assert bool(forwards) is not one_pass
    monkeypatch.setattr(loop, "LM_ONE_PASS", False)
    plain = _lm(text, starts, n, dtype)
    assert (fast.epochs, fast.stopped, fast.reason) == (plain.epochs, plain.stopped,
                                                        plain.reason)
    for name in plain.params:
        _same(fast.params[name], plain.params[name], name)
        _same(fast.stderr[name], plain.stderr[name], f"stderr of {name}")
    _same([h.loss for h in fast.history], [h.loss for h in plain.history], "history")
    _same(fast.loss, plain.loss, "final SSR")
    _same(fast.correlation, plain.correlation, "correlation")
    assert plain.epochs > 2 and not np.array_equal(plain.params[next(iter(starts))],
                                                   starts[next(iter(starts))])
