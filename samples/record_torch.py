"""Record what PyTorch gives for every sample program in samples/*.grad.

Run it with the PyTorch environment, not with gradcalc's:

    python samples/record_torch.py          # print the numbers
    python samples/record_torch.py --write  # (re)write the `#=` lines
    python samples/record_torch.py --check  # verify the `#=` lines

Each sample has a torch function below, written by hand from the seed page's code: the sample
text is never evaluated. A function returns its results in order, output first, as
`{"NAME": tensor, "LEAF.grad": tensor, ...}`; `NAME` is the output's name in the program, or
`output` when the program ends with a bare expression. Everything runs in float64, gradcalc's
default dtype; `PAGE` holds the numbers printed on the seed pages (float32, rounded), which the
float64 results must also match to the printed precision.

Tests never import this file (it needs torch); tests/test_samples.py only reads the `#=` lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

torch.set_default_dtype(torch.float64)

HERE = Path(__file__).resolve().parent
MARKER = "# PyTorch's numbers (float64)"

SAMPLES: dict = {}


def sample(name):
    def register(fn):
        SAMPLES[name] = fn
        return fn

    return register


def leaf(value):
    return torch.tensor(value, dtype=torch.float64, requires_grad=True)


# --- 000_aa0c7b74b129b2d4.txt (Hindi) -------------------------------------------------------


def _abc(a, b, c):
    return 3 * a + 2 * b * b + torch.log(c)


@sample("hindi_vjp_weights")
def _():
    a, b, c = leaf([1.0, 2.0, 3.0]), leaf([3.0, 4.0, 5.0]), leaf([6.0, 7.0, 8.0])
    y = _abc(a, b, c)
    y.backward(torch.tensor([0.1, 1.0, 0.0001]), retain_graph=True)
    return {"y": y, "a.grad": a.grad, "b.grad": b.grad, "c.grad": c.grad}


@sample("hindi_scalar_backward")
def _():
    a, b, c = leaf(0.1), leaf(1.0), leaf(0.1)
    y = _abc(a, b, c)
    y.backward()
    return {"y": y, "a.grad": a.grad, "b.grad": b.grad, "c.grad": c.grad}


@sample("hindi_accumulate_two_calls")
def _():
    a, b, c = leaf(1.0), leaf(1.0), leaf(1.0)
    y = _abc(a, b, c)
    y.backward(retain_graph=True)
    y.backward()
    return {"y": y, "a.grad": a.grad, "b.grad": b.grad, "c.grad": c.grad}


def _two_x(weights):
    x = leaf([[1.0, 2.0, 3.0, 4.0]])
    z = 2 * x
    loss = z.sum(dim=1)  # noqa: F841  (built on the page, not used by z.backward)
    z.backward(torch.tensor(weights), retain_graph=True)
    return {"z": z, "x.grad": x.grad}


@sample("hindi_onehot_first")
def _():
    return _two_x([[1.0, 0.0, 0.0, 0.0]])


@sample("hindi_onehot_second")
def _():
    return _two_x([[0.0, 1.0, 0.0, 0.0]])


@sample("hindi_ones_weights")
def _():
    return _two_x([[1.0, 1.0, 1.0, 1.0]])


@sample("hindi_sum_loss")
def _():
    x = leaf([[1.0, 2.0, 3.0, 4.0]])
    z = 2 * x
    loss = z.sum(dim=1)
    loss.backward()  # shape (1,): torch implies the gradient [1.0] for a one-element output
    return {"loss": loss, "x.grad": x.grad}


# --- 001_060ae18602dd6547.txt (Chinese) -----------------------------------------------------


@sample("chinese_mean_ones")
def _():
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    out.backward()
    return {"out": out, "x.grad": x.grad}


LOGISTIC_W = [
    [1.541, -0.2934, -2.1788],
    [0.5684, -1.0845, -1.3986],
    [0.4033, 0.838, -0.7193],
    [-0.4033, -0.5966, 0.182],
    [-0.8567, 1.1006, -1.0712],
]
LOGISTIC_B = [0.1227, -0.5663, 0.3731]


@sample("chinese_logistic_layer")
def _():
    x = torch.ones(5)  # input tensor
    y = torch.zeros(3)  # expected output
    w = leaf(LOGISTIC_W)
    b = leaf(LOGISTIC_B)
    z = torch.matmul(x, w) + b
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    loss.backward()
    assert torch.equal(w.grad, b.grad.expand(5, 3)), "every row of w.grad equals b.grad"
    return {"loss": loss, "w.grad": w.grad, "b.grad": b.grad}


def _eye_calls(calls):
    inp = torch.eye(5, requires_grad=True)
    out = (inp + 1).pow(2)
    for _ in range(calls):
        out.backward(torch.ones_like(inp), retain_graph=True)
    return {"out": out, "inp.grad": inp.grad}


@sample("chinese_eye_first_call")
def _():
    return _eye_calls(1)


@sample("chinese_eye_second_call")
def _():
    return _eye_calls(2)


# --- 002_6133961a3c27af38.txt (German) ------------------------------------------------------


def f(x, w):
    return 2 * x * w[0] + x**2 * w[1]


@sample("german_f_at_one")
def _():
    x = torch.tensor([1.0])
    w = torch.tensor([1.0, 1.0]).requires_grad_()
    y = f(x, w)  # => tensor([3.], grad_fn=<AddBackward0>)
    y.backward()  # shape (1,): torch implies the gradient [1.0]
    return {"output": y, "w.grad": w.grad}


ACTUAL_W = (1.2, -3.4)
XS = torch.linspace(0.1, 1, 10)


@sample("german_fit_first_batch")
def _():
    ys = f(XS, torch.tensor(ACTUAL_W))
    weight = torch.nn.parameter.Parameter(torch.tensor([0.0, 0.0]))
    out = f(XS, weight)
    loss = torch.nn.MSELoss()(out, ys)
    loss.backward()
    return {"loss": loss, "w.grad": weight.grad}


class GeneralFunctionWithForwardDifference(torch.autograd.Function):
    """The page's custom backward by forward differences, dw = 0.001."""

    @staticmethod
    def forward(ctx, f, xs, weight):
        ys = f(xs, weight)
        ctx.save_for_backward(xs, ys, weight)
        ctx.f = f
        return ys

    @staticmethod
    def backward(ctx, grad_output):
        xs, ys, weight = ctx.saved_tensors
        f = ctx.f
        dw = 0.001
        diff = []
        weight = weight.detach().clone()
        for i in range(len(weight)):
            weight[i] += dw
            diff.append(torch.sum(grad_output * (f(xs, weight) - ys)))
            weight[i] -= dw
        diff = torch.tensor(diff) / dw
        return None, None, diff


def f_cut(x, w):
    """The page's f_str: same values as f, but with the graph cut (the page used a string eval)."""
    with torch.no_grad():
        return f(x, w).detach()


@sample("german_forward_difference")
def _():
    ys = f(XS, torch.tensor(ACTUAL_W))
    weight = torch.nn.parameter.Parameter(torch.tensor([0.0, 0.0]))
    out = GeneralFunctionWithForwardDifference.apply(f_cut, XS, weight)
    loss = torch.nn.MSELoss()(out, ys)
    loss.backward()
    return {"loss": loss, "w.grad": weight.grad}


# --- 003_93d8051c035689b4.txt (Russian) -----------------------------------------------------


@sample("russian_identity")
def _():
    z = torch.linspace(-1, 1, steps=5, requires_grad=True)
    y = z
    y.backward(z)
    return {"y": y, "z.grad": z.grad}


@sample("russian_square")
def _():
    z = torch.linspace(1, 5, steps=5, requires_grad=True)
    y = torch.pow(z, 2)
    y.backward(z)
    return {"y": y, "z.grad": z.grad}


@sample("russian_sum")
def _():
    z = torch.linspace(-1, 1, steps=5, requires_grad=True)
    y = torch.sum(z)
    y.backward()
    return {"y": y, "z.grad": z.grad}


@sample("russian_sum_square")
def _():
    z = torch.linspace(-1, 1, steps=5, requires_grad=True)
    y = torch.sum(torch.pow(z, 2))
    y.backward()
    return {"y": y, "z.grad": z.grad}


@sample("russian_sum_square_grad_one")
def _():
    z = torch.linspace(-1, 1, steps=5, requires_grad=True)
    y = torch.sum(torch.pow(z, 2))
    y.backward(torch.tensor(1.0))
    return {"y": y, "z.grad": z.grad}


# Numbers printed on the seed pages (float32, rounded): the float64 results must agree.
PAGE = {
    "hindi_vjp_weights": {
        "a.grad": [3.0e-01, 3.0, 3.0e-04],
        "b.grad": [1.2, 1.6e01, 2.0e-03],
        "c.grad": [1.6667e-02, 1.4286e-01, 1.25e-05],
    },
    "hindi_scalar_backward": {"a.grad": 3.0, "b.grad": 4.0, "c.grad": 10.0},
    "hindi_accumulate_two_calls": {"a.grad": 6.0, "b.grad": 8.0, "c.grad": 2.0},
    "hindi_onehot_first": {"x.grad": [[2, 0, 0, 0]]},
    "hindi_onehot_second": {"x.grad": [[0, 2, 0, 0]]},
    "hindi_ones_weights": {"x.grad": [[2, 2, 2, 2]]},
    "hindi_sum_loss": {"x.grad": [[2, 2, 2, 2]]},
    "chinese_mean_ones": {"out": 27.0, "x.grad": [[4.5, 4.5], [4.5, 4.5]]},
    "chinese_eye_first_call": {"inp.grad": (torch.eye(5) * 2 + 2).tolist()},
    "chinese_eye_second_call": {"inp.grad": (torch.eye(5) * 4 + 4).tolist()},
    "german_f_at_one": {"output": [3.0], "w.grad": [2.0, 1.0]},
    "russian_identity": {"z.grad": [-1.0, -0.5, 0.0, 0.5, 1.0]},
    "russian_square": {"y": [1.0, 4.0, 9.0, 16.0, 25.0], "z.grad": [2.0, 8.0, 18.0, 32.0, 50.0]},
    "russian_sum": {"z.grad": [1.0, 1.0, 1.0, 1.0, 1.0]},
    "russian_sum_square": {"z.grad": [-2.0, -1.0, 0.0, 1.0, 2.0]},
    "russian_sum_square_grad_one": {"z.grad": [-2.0, -1.0, 0.0, 1.0, 2.0]},
}


# --- `gradcalc fit` samples (samples/fit/*.grad): the trained parameters and final loss ----------
FIT_SAMPLES: dict = {}


def fit_sample(name):
    def register(fn):
        FIT_SAMPLES[name] = fn
        return fn

    return register


@fit_sample("german_training")
def _():
    import csv
    with open(HERE / "german_points.csv") as fh:
        rows = list(csv.DictReader(fh))
    x = torch.tensor([float(r["x"]) for r in rows], dtype=torch.float32)
    y = torch.tensor([float(r["y"]) for r in rows], dtype=torch.float32)
    w = torch.zeros(2, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)
    for _ in range(20):
        for xb, yb in loader:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(2 * xb * w[0] + xb ** 2 * w[1], yb)
            loss.backward()
            opt.step()
    with torch.no_grad():
        final = torch.nn.functional.mse_loss(2 * x * w[0] + x ** 2 * w[1], y)
    return {"w": w, "loss": final}


@fit_sample("chinese_logistic_training")
def _():
    x, y = torch.ones(5), torch.zeros(3)
    w, b = leaf(LOGISTIC_W), leaf(LOGISTIC_B)
    opt = torch.optim.SGD([w, b], lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
    return {"w": w, "b": b, "loss": final}


def record(name):
    results = (SAMPLES.get(name) or FIT_SAMPLES[name])()
    return {key: t.detach().tolist() for key, t in results.items()}


def block(name, results):
    lines = [f"{MARKER}, torch {torch.__version__}, recorded by samples/record_torch.py:"]
    lines += [f"#= {key} = {json.dumps(value)}" for key, value in results.items()]
    return lines


def write(path, results):
    kept = [
        line
        for line in path.read_text().splitlines()
        if not line.startswith("#=") and not line.startswith(MARKER)
    ]
    while kept and not kept[-1].strip():
        kept.pop()
    path.write_text("\n".join(kept + block(path.stem, results)) + "\n")


def recorded(path):
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#="):
            key, _, value = line[2:].partition("=")
            out[key.strip()] = json.loads(value)
    return out


def close(a, b, rtol, atol):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)


def main(argv):
    mode = argv[1] if len(argv) > 1 else "--print"
    files = {p.stem: p for p in sorted(HERE.glob("*.grad"))}
    fits = {p.stem: p for p in sorted((HERE / "fit").glob("*.grad"))}
    problems = []
    if set(fits) != set(FIT_SAMPLES):
        problems.append(f"fit samples and torch functions differ: {sorted(fits)} vs "
                        f"{sorted(FIT_SAMPLES)}")
    files.update(fits)
    if set(files) - set(fits) != set(SAMPLES):
        problems.append(
            f"samples without a torch function: {sorted(set(files) - set(SAMPLES))}; "
            f"torch functions without a sample: {sorted(set(SAMPLES) - set(files))}"
        )
    for name in [*SAMPLES, *FIT_SAMPLES]:
        results = record(name)
        for key, value in PAGE.get(name, {}).items():
            if not close(results[key], value, rtol=1e-3, atol=1e-4):
                problems.append(f"{name}: {key} = {results[key]} but the page prints {value}")
        if name not in files:
            continue
        if mode == "--write":
            write(files[name], results)
        elif mode == "--check":
            have = recorded(files[name])
            if list(have) != list(results) or not all(
                close(have[k], results[k], rtol=1e-12, atol=0) for k in results
            ):
                problems.append(f"{name}: the #= lines differ from torch: {have} vs {results}")
        else:
            print(f"{name}.grad")
            print("\n".join(block(name, results)))
            print()
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
