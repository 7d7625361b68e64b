"""Record PyTorch's grad_fn name for the output of one expression per op (and per variant
whose node name differs), for tests/test_graph.py: --graph and --dot must name nodes as
PyTorch does.

Run with an interpreter that has torch 2.13 (`pip install torch==2.13.0`; never imported by
the tests):
    python tests/reference/record_grad_fn.py > tests/reference/torch_grad_fn.json
"""
import json

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
VARS = {"x": [0.5, 1.5, 2.0], "y": [1.0, 0.7, 0.9], "p": [0.2, 0.7, 0.4],
        "M": [[0.5, 1.5], [2.0, 0.3]], "v2": [0.4, 0.6], "t": [0.0, 1.0],
        "B": [[[0.5, 1.5], [2.0, 0.3]], [[1.0, 0.2], [0.1, 0.9]]]}


def leaves():
    return {k: torch.tensor(v, requires_grad=(k != "t")) for k, v in VARS.items()}


# gradcalc expression -> the same computation in torch
CASES = {
    "leaky_relu(x)": lambda x, **_: F.leaky_relu(x),
    "elu(x)": lambda x, **_: F.elu(x),
    "x + y": lambda x, y, **_: x + y,
    "x - y": lambda x, y, **_: x - y,
    "2 - x": lambda x, **_: 2 - x,
    "x - 2": lambda x, **_: x - 2,
    "x * y": lambda x, y, **_: x * y,
    "x * 2": lambda x, **_: x * 2,
    "x / y": lambda x, y, **_: x / y,
    "x / 2": lambda x, **_: x / 2,
    "2 / x": lambda x, **_: 2 / x,
    "x ** 2": lambda x, **_: x ** 2,
    "2 ** x": lambda x, **_: 2 ** x,
    "x ** y": lambda x, y, **_: x ** y,
    "-x": lambda x, **_: -x,
    "exp(x)": lambda x, **_: x.exp(),
    "log(x)": lambda x, **_: x.log(),
    "log2(x)": lambda x, **_: x.log2(),
    "log10(x)": lambda x, **_: x.log10(),
    "log1p(x)": lambda x, **_: x.log1p(),
    "expm1(x)": lambda x, **_: x.expm1(),
    "sqrt(x)": lambda x, **_: x.sqrt(),
    "abs(x)": lambda x, **_: x.abs(),
    "sign(x)": lambda x, **_: x.sign(),
    "sin(x)": lambda x, **_: x.sin(),
    "cos(x)": lambda x, **_: x.cos(),
    "tan(x)": lambda x, **_: x.tan(),
    "asin(p)": lambda p, **_: p.asin(),
    "acos(p)": lambda p, **_: p.acos(),
    "atan(x)": lambda x, **_: x.atan(),
    "sinh(x)": lambda x, **_: x.sinh(),
    "cosh(x)": lambda x, **_: x.cosh(),
    "tanh(x)": lambda x, **_: x.tanh(),
    "sigmoid(x)": lambda x, **_: x.sigmoid(),
    "relu(x)": lambda x, **_: x.relu(),
    "erf(x)": lambda x, **_: x.erf(),
    "softplus(x)": lambda x, **_: F.softplus(x),
    "atan2(x, y)": lambda x, y, **_: torch.atan2(x, y),
    "hypot(x, y)": lambda x, y, **_: torch.hypot(x, y),
    "maximum(x, y)": lambda x, y, **_: torch.maximum(x, y),
    "minimum(x, y)": lambda x, y, **_: torch.minimum(x, y),
    "clamp(x, min=1)": lambda x, **_: torch.clamp(x, min=1),
    "clamp(x, 0.6, 1.8)": lambda x, **_: torch.clamp(x, 0.6, 1.8),
    "clamp(x, y, 2)": lambda x, y, **_: torch.clamp(x, y, torch.tensor(2.0)),
    "sum(x)": lambda x, **_: x.sum(),
    "sum(M, dim=0)": lambda M, **_: M.sum(dim=0),
    "mean(x)": lambda x, **_: x.mean(),
    "mean(M, dim=1)": lambda M, **_: M.mean(dim=1),
    "prod(x)": lambda x, **_: x.prod(),
    "prod(M, dim=0)": lambda M, **_: M.prod(dim=0),
    "max(x)": lambda x, **_: x.max(),
    "max(M, dim=0)": lambda M, **_: M.max(dim=0).values,
    "min(x)": lambda x, **_: x.min(),
    "min(M, dim=1)": lambda M, **_: M.min(dim=1).values,
    "logsumexp(M, dim=1)": lambda M, **_: torch.logsumexp(M, dim=1),
    "norm(x)": lambda x, **_: torch.linalg.vector_norm(x),
    "norm(M, dim=1)": lambda M, **_: torch.linalg.vector_norm(M, dim=1),
    "softmax(x)": lambda x, **_: torch.softmax(x, -1),
    "log_softmax(x)": lambda x, **_: torch.log_softmax(x, -1),
    "M @ v2": lambda M, v2, **_: M @ v2,
    "v2 @ M": lambda M, v2, **_: v2 @ M,
    "M @ M": lambda M, **_: M @ M,
    "v2 @ v2": lambda v2, **_: v2 @ v2,
    "B @ M": lambda B, M, **_: B @ M,
    "M @ B": lambda B, M, **_: M @ B,
    "dot(v2, v2)": lambda v2, **_: torch.dot(v2, v2),
    "outer(x, y)": lambda x, y, **_: torch.outer(x, y),
    "trace(M)": lambda M, **_: torch.trace(M),
    "x[0]": lambda x, **_: x[0],
    "x[1:3]": lambda x, **_: x[1:3],
    "M[:, 0]": lambda M, **_: M[:, 0],
    "M.T": lambda M, **_: M.T,
    "reshape(M, 4)": lambda M, **_: M.reshape(4),
    "stack(x, y)": lambda x, y, **_: torch.stack([x, y]),
    "cat(x, y)": lambda x, y, **_: torch.cat([x, y]),
    "mse_loss(x, y)": lambda x, y, **_: F.mse_loss(x, y),
    "binary_cross_entropy(p, detach(y*0.5))": lambda p, y, **_: F.binary_cross_entropy(p, (y * 0.5).detach()),
    "binary_cross_entropy_with_logits(x, detach(p))": lambda x, p, **_: F.binary_cross_entropy_with_logits(x, p.detach()),
    "cross_entropy(x, detach(p))": lambda x, p, **_: F.cross_entropy(x, p.detach()),
    "cross_entropy(M, t)": lambda M, t, **_: F.cross_entropy(M, t.long()),
}


def main():
    cases = []
    for expr, f in CASES.items():
        out = f(**leaves())
        cases.append({"expr": expr, "grad_fn": type(out.grad_fn).__name__})
    print(json.dumps({"torch_version": torch.__version__, "vars": VARS, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
