"""Record the references of `gradcalc fit`'s core: torch optimizers, curve_fit, the German fit.

Run with an interpreter that has torch 2.13 (`pip install torch==2.13.0`), from anywhere:

    python tests/reference/record_optim.py

Writes three files beside this script, which tests/test_optim.py replays without torch or scipy:
- torch_optim.json: for every optimizer and option combination in CASES, float64 and float32,
  the trajectory of torch.optim.{SGD,Adam,AdamW}(foreach=False) on two small MSE problems
  (PROBLEMS; data from numpy.random.default_rng(SEED), 103 rows, DataLoader(batch_size=10,
  shuffle=False): ten batches of 10 and a short last one of 3, 25 epochs = 275 steps), with
  the batch loss at every step and, for the small problem, torch's gradient and parameters at
  every step (the larger one's parameters every 5 epochs); torch's defaults; which options
  torch refuses.
- curve_fit_lm.json: scipy.optimize.curve_fit (method 'lm') on an exponential decay, a model
  linear in its parameters and a problem with as many points as parameters: popt, pcov,
  standard errors, correlation, sum of squared residuals; with the analytic `jac` and tight
  tolerances (the minimiser itself) and with curve_fit's defaults (finite differences).
- torch_german_fit.json: the German seed page's training (page 002) as it wrote it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy.optimize import curve_fit

HERE = Path(__file__).resolve().parent
SEED = 20261203
ROWS, BATCH, EPOCHS = 103, 10, 25
GERMAN_SEED = 0
CHECKPOINT = 55          # the linear problem's parameters are kept every 5 epochs (its size)

# (optimizer, hyper-parameters by torch's names); {} is torch's defaults
CASES = [
    ("sgd", {}),
    ("sgd", {"lr": 0.05}),
    ("sgd", {"lr": 0.05, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    ("sgd", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd", {"lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {}),
    ("adam", {"lr": 0.05}),
    ("adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("adam", {"lr": 0.05, "amsgrad": True}),
    ("adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.05, "betas": (0.5, 0.9)}),
    ("adamw", {}),
    ("adamw", {"lr": 0.05}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}),
    ("adamw", {"lr": 0.05, "betas": (0.7, 0.95), "eps": 1e-4, "weight_decay": 0.0}),
]

# hyper-parameters torch's constructors accept (True) or refuse (False)
VALIDATION = [
    ("sgd", {"lr": -0.1}), ("sgd", {"lr": 0.0}), ("sgd", {"momentum": -0.5}),
    ("sgd", {"weight_decay": -1.0}), ("sgd", {"nesterov": True}),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("sgd", {"nesterov": True, "momentum": 0.9}), ("sgd", {"dampening": 2.0}),
    ("adam", {"lr": -1e-3}), ("adam", {"eps": -1e-8}), ("adam", {"eps": 0.0}),
    ("adam", {"betas": (1.0, 0.9)}), ("adam", {"betas": (0.9, 1.0)}),
    ("adam", {"betas": (-0.1, 0.9)}), ("adam", {"betas": (0.0, 0.0)}),
    ("adam", {"weight_decay": -0.1}), ("adamw", {"weight_decay": -0.1}),
    ("adamw", {"betas": (0.999, 0.5)}), ("adamw", {"lr": 0.0, "amsgrad": True}),
]

TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
NAMES = {"sgd": ["lr", "momentum", "dampening", "weight_decay", "nesterov"],
         "adam": ["lr", "betas", "eps", "weight_decay", "amsgrad"]}
NAMES["adamw"] = NAMES["adam"]


def make_problems() -> dict:
    """Two MSE problems, data from one numpy seed, stored as float64 (float32 runs round it)."""
    rng = np.random.default_rng(SEED)
    x = rng.uniform(0.0, 1.5, ROWS)
    y = 2 * x * 1.2 + x**2 * -3.4 + 0.3 + 0.05 * rng.standard_normal(ROWS)
    X = rng.standard_normal((ROWS, 6))
    W_true = rng.standard_normal((6, 5))
    Y = X @ W_true + 0.5 + 0.1 * rng.standard_normal((ROWS, 5))
    W0 = 0.1 * rng.standard_normal((6, 5))
    return {
        "german": {"model": "mse_loss(2*x*w[0] + x**2*w[1] + b, y)",
                   "data": {"x": x, "y": y}, "start": {"w": np.zeros(2), "b": np.array(0.5)}},
        "linear": {"model": "mse_loss(X @ W + c, Y)",
                   "data": {"X": X, "Y": Y}, "start": {"W": W0, "c": np.zeros(5)}},
    }


def loss_of(problem: str, data: dict, params: dict) -> torch.Tensor:
    if problem == "german":
        x, w = data["x"], params["w"]
        pred = 2 * x * w[0] + x**2 * w[1] + params["b"]
        return torch.nn.functional.mse_loss(pred, data["y"])
    return torch.nn.functional.mse_loss(data["X"] @ params["W"] + params["c"], data["Y"])


def as_list(t) -> list | float:
    return torch.as_tensor(t).detach().to(torch.float64).tolist()


def run(problem: str, spec: dict, dtype: torch.dtype, name: str, hyper: dict) -> dict:
    tensors = {k: torch.tensor(v, dtype=dtype) for k, v in spec["data"].items()}
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True)
              for k, v in spec["start"].items()}
    keys = list(tensors)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*tensors.values()), batch_size=BATCH, shuffle=False)
    opt = TORCH[name](list(params.values()), foreach=False, **hyper)
    steps = []
    for _epoch in range(EPOCHS):
        for batch in loader:
            loss = loss_of(problem, dict(zip(keys, batch)), params)
            opt.zero_grad()
            loss.backward()
            step = {"loss": as_list(loss)}
            if problem == "german":
                step["grads"] = {k: as_list(p.grad) for k, p in params.items()}
            opt.step()
            if problem == "german" or len(steps) % CHECKPOINT == CHECKPOINT - 1:
                step["params"] = {k: as_list(p) for k, p in params.items()}
            steps.append(step)
    return {"problem": problem, "dtype": str(dtype).removeprefix("torch."),
            "optimizer": name, "hyper": {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in hyper.items()}, "steps": steps}


def refuses(name: str, hyper: dict) -> bool:
    try:
        TORCH[name]([torch.zeros(2, requires_grad=True)], **hyper)
    except ValueError:
        return True
    return False


def defaults(name: str) -> dict:
    got = TORCH[name]([torch.zeros(2, requires_grad=True)]).defaults
    return {k: list(got[k]) if isinstance(got[k], tuple) else got[k] for k in NAMES[name]}


def record_optim() -> None:
    problems = make_problems()
    runs = [run(problem, spec, dtype, name, hyper)
            for problem, spec in problems.items()
            for dtype in (torch.float64, torch.float32)
            for name, hyper in CASES]
    doc = {
        "torch": torch.__version__, "seed": SEED, "rows": ROWS, "batch_size": BATCH,
        "epochs": EPOCHS,
        "note": "numpy.random.default_rng(seed): x = uniform(0, 1.5, rows), y = 2*x*1.2 + "
                "x**2*-3.4 + 0.3 + 0.05*normal(rows); X = normal((rows, 6)), W_true = "
                "normal((6, 5)), Y = X @ W_true + 0.5 + 0.1*normal((rows, 5)), W start = "
                "0.1*normal((6, 5)), in that order; float32 runs round data and start to "
                "float32. Each step: the batch loss; for 'german' torch's gradient and the "
                "parameters after optimizer.step(); for 'linear' the parameters every "
                f"{CHECKPOINT} steps.",
        "problems": {p: {"model": s["model"],
                         "data": {k: v.tolist() for k, v in s["data"].items()},
                         "start": {k: v.tolist() for k, v in s["start"].items()}}
                     for p, s in problems.items()},
        "defaults": {name: defaults(name) for name in TORCH},
        "validation": [{"optimizer": n, "hyper": {k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in h.items()},
                        "refused": refuses(n, h)} for n, h in VALIDATION],
        "runs": runs,
    }
    (HERE / "torch_optim.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")


# --- Levenberg-Marquardt: curve_fit ---------------------------------------------------------

def decay(t, a, k, c):
    return a * np.exp(-k * t) + c


def decay_jac(t, a, k, c):
    e = np.exp(-k * t)
    return np.stack([e, -a * t * e, np.ones_like(t)], axis=1)


def quadratic(t, p0, p1, p2):
    return p0 + p1 * t + p2 * t**2


def quadratic_jac(t, p0, p1, p2):
    return np.stack([np.ones_like(t), t, t**2], axis=1)


def two_points(t, a, k):
    return a * np.exp(-k * t)


def two_points_jac(t, a, k):
    e = np.exp(-k * t)
    return np.stack([e, -a * t * e], axis=1)


def fit_record(f, jac, t, y, p0, **kwargs) -> dict:
    popt, pcov, info, _msg, _ier = curve_fit(f, t, y, p0=p0, jac=jac, full_output=True,
                                             **kwargs)
    with np.errstate(invalid="ignore", divide="ignore"):
        stderr = np.sqrt(np.diag(pcov))
        corr = pcov / np.outer(stderr, stderr)
    return {"kwargs": {k: v for k, v in kwargs.items()}, "jac": jac is not None,
            "popt": popt.tolist(), "pcov": encode(pcov), "stderr": encode(stderr),
            "correlation": encode(corr), "ssr": float(np.sum(info["fvec"] ** 2)),
            "nfev": int(info["nfev"])}


def encode(a: np.ndarray):
    return [encode(v) for v in a] if np.ndim(a) else (
        float(a) if math.isfinite(a) else "NaN" if math.isnan(a) else
        "Infinity" if a > 0 else "-Infinity")


def record_lm() -> None:
    rng = np.random.default_rng(SEED + 1)
    t1 = np.linspace(0.0, 4.0, 50)
    y1 = decay(t1, 2.5, 1.3, 0.5) + 0.05 * rng.standard_normal(t1.size)
    t2 = np.linspace(-1.0, 2.0, 30)
    y2 = quadratic(t2, 0.7, -1.1, 0.4) + 0.1 * rng.standard_normal(t2.size)
    t3, y3 = np.array([0.0, 1.0]), np.array([2.0, 0.8])
    tight = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 0.0}
    problems = [
        ("decay", "a*exp(-k*t) + c", decay, decay_jac, t1, y1, [1.0, 1.0, 0.0]),
        ("quadratic", "p0 + p1*t + p2*t**2", quadratic, quadratic_jac, t2, y2,
         [0.0, 0.0, 0.0]),
        ("two_points", "a*exp(-k*t)", two_points, two_points_jac, t3, y3, [1.0, 0.1]),
    ]
    doc = {"scipy": scipy.__version__, "seed": SEED + 1,
           "note": "numpy.random.default_rng(seed): decay noise 0.05*normal(50), then "
                   "quadratic noise 0.1*normal(30). Residuals are f(t, p) - y. 'exact' is "
                   "curve_fit with the analytic jac and ftol=xtol=1e-15, gtol=0 (the "
                   "minimiser); 'default' is curve_fit with finite differences and its "
                   "default tolerances.", "problems": []}
    for name, model, f, jac, t, y, p0 in problems:
        doc["problems"].append({
            "name": name, "model": model, "t": t.tolist(), "y": y.tolist(), "p0": p0,
            "exact": fit_record(f, jac, t, y, p0, **tight),
            "default": fit_record(f, None, t, y, p0)})
    (HERE / "curve_fit_lm.json").write_text(json.dumps(doc, indent=1) + "\n")


# --- the German seed page's training --------------------------------------------------------

def record_german() -> None:
    """Page 002's data and loop, as written there, with its unseeded numpy draws seeded."""
    np.random.seed(GERMAN_SEED)
    xs = np.random.rand(200).astype(np.float32)
    # The page computes ys with f(x, actual_w) per element on float32 scalars and Python
    # floats; numpy 1.x (the page's, 2020) promoted those scalar products to float64, so
    # y is f in float64 at the float32 x, rounded to float32 once.
    x64 = xs.astype(np.float64)
    ys = (2 * x64 * 1.2 + x64**2 * -3.4).astype(np.float32)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(xs), torch.from_numpy(ys)),
        batch_size=10)
    weight = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    optimizer = torch.optim.Adam([weight], lr=0.1, foreach=False)
    criterion = torch.nn.MSELoss()
    losses, epochs = [], []
    for epoch in range(20):
        for x, label in loader:
            loss = criterion(2 * x * weight[0] + x**2 * weight[1], label)
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs.append({"epoch": epoch + 1, "loss": float(np.mean(losses[-20:])),
                       "w": as_list(weight)})
    with torch.no_grad():
        x, y = torch.from_numpy(xs), torch.from_numpy(ys)
        final = criterion(2 * x * weight[0] + x**2 * weight[1], y).item()
    doc = {
        "torch": torch.__version__, "numpy_seed": GERMAN_SEED,
        "data": "np.random.seed(0); x = np.random.rand(200).astype(np.float32); "
                "y = float32(2*x*1.2 + x**2*-3.4) computed in float64 (the page's numpy 1.x "
                "promotion); the page's own draws were unseeded",
        "model": "mse_loss(2*x*w[0] + x**2*w[1], y)", "dtype": "float32",
        "optimizer": {"name": "adam", "lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8,
                      "weight_decay": 0.0, "amsgrad": False},
        "batch_size": 10, "epochs": 20, "start": {"w": [0.0, 0.0]},
        "x": as_list(torch.from_numpy(xs)), "y": as_list(torch.from_numpy(ys)),
        "batch_losses": losses, "history": epochs, "w": as_list(weight), "loss": final,
    }
    (HERE / "torch_german_fit.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    record_optim()
    record_lm()
    record_german()
