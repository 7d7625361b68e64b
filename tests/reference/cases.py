"""The PyTorch reference cases: each one a gradcalc request and a hand-written torch builder.

Every case pairs gradcalc text (an expression or a program) with a plain Python function that
computes the same thing with torch tensors; `record_torch.py` runs the builders in real PyTorch
and writes `torch_reference.json`, which `tests/test_reference.py` replays through gradcalc.
The gradcalc text is never evaluated here: each builder is written by hand to mean the same.
This module imports torch lazily, so the case list can be read without torch installed.

A case (see `Case`):
  id       unique string, used as the pytest id and the JSON Lines request id
  expr / program   the gradcalc text (exactly one of them)
  fn       torch builder: called with every leaf as a keyword tensor, returns the output
           tensor, or (for `of`) a dict of named tensors that holds the `of` name
  vars     name -> number or nested list (sent to gradcalc and used as torch leaves)
  grad     the cotangent (number or nested list); omit for a scalar output
  wrt      leaves that require grad (default: every leaf)
  dtype    "float64" (default) or "float32"
  repeat   backward calls without zeroing (default 1)
  of       backward from this named intermediate of a program
  program_leaves   leaves bound inside the program text (e.g. `x = ones(2, 2)`): not sent as
           vars, but torch needs their values as leaves
  vars_text        name -> string VALUE sent to gradcalc instead of the numeric value
           (a comma list or a constant expression); torch uses the numeric value in `vars`
  request_omit     request fields carried by the program's own `#:` line, so not sent
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

try:  # torch is needed only to run the builders (record_torch.py), not to list the cases
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the test suite never imports this module
    torch = None
    F = None


@dataclass
class Case:
    id: str
    fn: Callable[..., Any]
    expr: str | None = None
    program: str | None = None
    vars: dict = field(default_factory=dict)
    grad: Any = None
    wrt: list | None = None
    dtype: str = "float64"
    repeat: int | None = None
    of: str | None = None
    program_leaves: dict = field(default_factory=dict)
    vars_text: dict = field(default_factory=dict)
    request_omit: tuple = ()


CASES: list[Case] = []


def E(id, expr, fn, **kw):
    """An expression case."""
    CASES.append(Case(id=id, fn=fn, expr=expr, **kw))


def P(id, program, fn, **kw):
    """A program case (statements separated by newlines or ';')."""
    CASES.append(Case(id=id, fn=fn, program=program, **kw))


# ---------------------------------------------------------------- torch helpers
# Small wrappers so builders read like the gradcalc text they translate.

def t_max(x, dim=None, keepdim=False):
    # full reduction: torch.max(x) (gradient split evenly over ties);
    # with dim: torch.max(x, dim).values (gradient to the first maximal index)
    return torch.max(x) if dim is None else torch.max(x, dim=dim, keepdim=keepdim).values


def t_min(x, dim=None, keepdim=False):
    return torch.min(x) if dim is None else torch.min(x, dim=dim, keepdim=keepdim).values


def t_norm(x, p=2, dim=None, keepdim=False):
    return torch.linalg.vector_norm(x, ord=p, dim=dim, keepdim=keepdim)


def t_lse(x, dim=None, keepdim=False):
    if dim is None:
        dim = tuple(range(x.dim()))
    return torch.logsumexp(x, dim=dim, keepdim=keepdim)


def t_reduce(name, x, dim=None, keepdim=False):
    f = getattr(torch, name)
    return f(x) if dim is None else f(x, dim=dim, keepdim=keepdim)


def torch_op(name):
    return lambda a, b: getattr(torch, name)(a, b)


def C(value):
    """A constant tensor in the case's dtype (the recorder sets the default dtype)."""
    return torch.tensor(value, dtype=torch.get_default_dtype())


def rev(x):
    """numpy's .T: reverse every axis."""
    return x.permute(*reversed(range(x.dim())))


# ---------------------------------------------------------------- data
# Deterministic small arrays: values with two decimals, fixed per (shape, seed).

def arr(shape, seed, lo=-2.0, hi=2.0):
    import numpy as np

    rng = np.random.RandomState(seed)
    a = np.round(rng.uniform(lo, hi, size=shape), 2)
    return a.tolist()


V3 = [0.5, -1.25, 2.0]
V3B = [1.5, 0.75, -0.5]
G3 = [0.1, 1.0, -2.0]
M23 = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
M23B = [[1.0, 2.0, -0.5], [-1.5, 0.5, 3.0]]
G23 = [[1.0, -0.5, 0.25], [2.0, 0.1, -1.0]]


# ================================================================ 1. elementwise functions
# name -> (torch function, values inside its domain)
UNARY = {
    "exp": (lambda x: torch.exp(x), [-2.0, -0.5, 0.0, 1.5]),
    "log": (lambda x: torch.log(x), [0.1, 0.5, 1.0, 3.0]),
    "log2": (lambda x: torch.log2(x), [0.1, 0.5, 1.0, 3.0]),
    "log10": (lambda x: torch.log10(x), [0.1, 0.5, 1.0, 3.0]),
    "log1p": (lambda x: torch.log1p(x), [-0.5, 0.0, 0.5, 3.0]),
    "expm1": (lambda x: torch.expm1(x), [-2.0, 0.0, 0.3, 1.5]),
    "sqrt": (lambda x: torch.sqrt(x), [0.25, 1.0, 2.0, 9.0]),
    "abs": (lambda x: torch.abs(x), [-2.0, -0.5, 0.5, 3.0]),
    "sign": (lambda x: torch.sign(x), [-2.0, -0.5, 0.5, 3.0]),
    "sin": (lambda x: torch.sin(x), [-1.2, 0.0, 0.4, 1.1]),
    "cos": (lambda x: torch.cos(x), [-1.2, 0.0, 0.4, 1.1]),
    "tan": (lambda x: torch.tan(x), [-1.2, 0.0, 0.4, 1.1]),
    "asin": (lambda x: torch.asin(x), [-0.9, -0.2, 0.3, 0.75]),
    "acos": (lambda x: torch.acos(x), [-0.9, -0.2, 0.3, 0.75]),
    "atan": (lambda x: torch.atan(x), [-3.0, -0.2, 0.5, 4.0]),
    "sinh": (lambda x: torch.sinh(x), [-2.0, -0.3, 0.4, 1.7]),
    "cosh": (lambda x: torch.cosh(x), [-2.0, -0.3, 0.4, 1.7]),
    "tanh": (lambda x: torch.tanh(x), [-2.0, -0.3, 0.4, 1.7]),
    "sigmoid": (lambda x: torch.sigmoid(x), [-4.0, -0.5, 0.0, 3.0]),
    "relu": (lambda x: torch.relu(x), [-2.0, -0.5, 0.5, 3.0]),
    "leaky_relu": (lambda x: F.leaky_relu(x), [-2.0, -0.5, 0.5, 3.0]),
    "elu": (lambda x: F.elu(x), [-2.0, -0.5, 0.5, 3.0]),
    "softplus": (lambda x: F.softplus(x), [-3.0, -0.5, 0.5, 4.0]),
    "erf": (lambda x: torch.erf(x), [-1.5, -0.2, 0.3, 2.0]),
}

for _name, (_f, _vec) in UNARY.items():
    # vector output with a cotangent: grad = v * f'(x), Jacobian diagonal
    E(f"elem/{_name}/vec", f"{_name}(x)", _f, vars={"x": _vec}, grad=[0.1, 1.0, -2.0, 0.5])

# composed with arithmetic, so the chain rule runs through them
E("elem/chain/log-sqrt-exp", "sum(log(sqrt(x) + 1) * exp(-x) * w)",
  lambda x, w: torch.sum(torch.log(torch.sqrt(x) + 1) * torch.exp(-x) * w),
  vars={"x": [0.25, 1.0, 2.0, 9.0], "w": [1.0, -2.0, 0.5, 3.0]})
E("elem/chain/trig", "sum(sin(cos(x)) * tan(x / 2) + atan(x) * asin(x / 4))",
  lambda x: torch.sum(torch.sin(torch.cos(x)) * torch.tan(x / 2) + torch.atan(x) * torch.asin(x / 4)),
  vars={"x": [-1.2, 0.3, 0.4, 1.1]})
E("elem/chain/activations", "sum(sigmoid(x) * tanh(x) + relu(x) * softplus(x) - erf(x) * sinh(x) / cosh(x))",
  lambda x: torch.sum(torch.sigmoid(x) * torch.tanh(x) + torch.relu(x) * F.softplus(x)
                      - torch.erf(x) * torch.sinh(x) / torch.cosh(x)),
  vars={"x": [-2.0, -0.3, 0.4, 1.7]})
E("elem/chain/logs", "sum(log2(x) * log10(x + 1) + log1p(x) * expm1(-x) + abs(x - 1) * sign(x - 1))",
  lambda x: torch.sum(torch.log2(x) * torch.log10(x + 1) + torch.log1p(x) * torch.expm1(-x)
                      + torch.abs(x - 1) * torch.sign(x - 1)),
  vars={"x": [0.1, 0.5, 2.0, 3.0]})
E("elem/softplus/beta", "softplus(x, beta=2)", lambda x: F.softplus(x, beta=2),
  vars={"x": [-3.0, -0.5, 0.5, 4.0]}, grad=[1.0, 1.0, 1.0, 1.0])
E("elem/softplus/beta-threshold", "softplus(x, beta=0.5, threshold=3)",
  lambda x: F.softplus(x, beta=0.5, threshold=3), vars={"x": [-3.0, 5.9, 6.0, 6.1]},
  grad=[1.0, 2.0, 3.0, 4.0])

# ================================================================ 2. binary operators
E("op/add", "a + b", lambda a, b: a + b, vars={"a": V3, "b": V3B}, grad=G3)
E("op/sub", "a - b", lambda a, b: a - b, vars={"a": V3, "b": V3B}, grad=G3)
E("op/mul", "a * b", lambda a, b: a * b, vars={"a": V3, "b": V3B}, grad=G3)
E("op/div", "a / b", lambda a, b: a / b, vars={"a": V3, "b": V3B}, grad=G3)
E("op/neg", "-a", lambda a: -a, vars={"a": V3}, grad=G3)
E("op/pos", "+a", lambda a: a.clone(), vars={"a": V3}, grad=G3)
E("op/sub-left-assoc", "a - b - c", lambda a, b, c: (a - b) - c,
  vars={"a": V3, "b": V3B, "c": [2.0, 3.0, 4.0]}, grad=G3)
E("op/precedence", "a + b * c - a / c", lambda a, b, c: a + b * c - a / c,
  vars={"a": V3, "b": V3B, "c": [2.0, 3.0, 4.0]}, grad=G3)
E("op/parens", "(a + b) * (c - a)", lambda a, b, c: (a + b) * (c - a),
  vars={"a": V3, "b": V3B, "c": [2.0, 3.0, 4.0]}, grad=G3)
E("op/same-leaf-fanout", "x * x * x + x", lambda x: x * x * x + x, vars={"x": V3}, grad=G3)
E("op/scalar-leaves", "3*a + 2*b*b + log(c)", lambda a, b, c: 3 * a + 2 * b * b + torch.log(c),
  vars={"a": 0.1, "b": 1.0, "c": 0.1})
E("op/seed-backward-gradients", "3*a + 2*b*b + log(c)",
  lambda a, b, c: 3 * a + 2 * b * b + torch.log(c),
  vars={"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0], "c": [6.0, 7.0, 8.0]}, grad=[0.1, 1.0, 0.0001])
E("op/seed-backward-gradients-f32", "3*a + 2*b*b + log(c)",
  lambda a, b, c: 3 * a + 2 * b * b + torch.log(c),
  vars={"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0], "c": [6.0, 7.0, 8.0]}, grad=[0.1, 1.0, 0.0001],
  dtype="float32")
E("op/2x-onehot-row", "2*x", lambda x: 2 * x, vars={"x": [[1.0, 2.0, 3.0, 4.0]]},
  grad=[[0.0, 1.0, 0.0, 0.0]])
E("op/2x-sum", "sum(2*x)", lambda x: torch.sum(2 * x), vars={"x": [[1.0, 2.0, 3.0, 4.0]]})

# power: scalar exponents, tensor exponents, scalar bases
E("pow/square", "x**2", lambda x: x ** 2, vars={"x": V3}, grad=G3)
E("pow/caret", "x^3", lambda x: x ** 3, vars={"x": V3}, grad=G3)
E("pow/half", "x**0.5", lambda x: x ** 0.5, vars={"x": [0.25, 1.0, 4.0]}, grad=G3)
E("pow/neg-exponent", "x**-1", lambda x: x ** -1, vars={"x": V3}, grad=G3)
E("pow/neg-base-int-exp", "x**3", lambda x: x ** 3, vars={"x": [-2.0, -0.5, 1.5]}, grad=G3)
E("pow/unary-minus-binds-looser", "-x**2", lambda x: -(x ** 2), vars={"x": V3}, grad=G3)
E("pow/const-right-assoc", "2**3**2 * x", lambda x: 512.0 * x, vars={"x": V3}, grad=G3)
E("pow/const-signed-exponent", "2**-1 * x + -2**2 * x", lambda x: 0.5 * x + (-4.0) * x,
  vars={"x": V3}, grad=G3)
E("pow/tensor-exponent", "x**y", lambda x, y: x ** y,
  vars={"x": [0.5, 1.5, 3.0], "y": [2.0, -1.0, 0.5]}, grad=G3)
E("pow/tensor-exponent-fn", "pow(x, y)", lambda x, y: torch.pow(x, y),
  vars={"x": [0.5, 1.5, 3.0], "y": [2.0, -1.0, 0.5]}, grad=G3)
E("pow/scalar-base", "2**x", lambda x: 2 ** x, vars={"x": V3}, grad=G3)
E("pow/scalar-base-caret", "sum(3^x)", lambda x: torch.sum(3 ** x), vars={"x": V3})
E("pow/e-base", "e**x", lambda x: math.e ** x, vars={"x": V3}, grad=G3)
E("pow/tensor-base-scalar-leaf-exp", "x**p", lambda x, p: x ** p,
  vars={"x": [0.5, 1.5, 3.0], "p": 2.5}, grad=G3)
E("pow/scalar-leaf-base", "b**y", lambda b, y: b ** y, vars={"b": 1.7, "y": [0.0, 1.0, -2.0]},
  grad=G3)
E("pow/neg-base-tensor-exp", "x**y", lambda x, y: x ** y,
  vars={"x": [-2.0, -0.5, 2.0], "y": [3.0, 2.0, 2.0]}, grad=G3)

# other binary functions
E("bin/atan2", "atan2(y, x)", lambda y, x: torch.atan2(y, x),
  vars={"y": [1.0, -1.0, 0.5, -2.0], "x": [1.0, 1.0, -2.0, -0.5]}, grad=[0.1, 1.0, -2.0, 0.5])
E("bin/hypot", "hypot(x, y)", lambda x, y: torch.hypot(x, y),
  vars={"x": [3.0, -1.0, 0.5], "y": [4.0, 1.0, -2.0]}, grad=G3)
E("bin/maximum", "maximum(x, y)", lambda x, y: torch.maximum(x, y),
  vars={"x": [1.0, -2.0, 3.0, 0.5], "y": [2.0, -3.0, 1.0, 0.25]}, grad=[0.1, 1.0, -2.0, 0.5])
E("bin/minimum", "minimum(x, y)", lambda x, y: torch.minimum(x, y),
  vars={"x": [1.0, -2.0, 3.0, 0.5], "y": [2.0, -3.0, 1.0, 0.25]}, grad=[0.1, 1.0, -2.0, 0.5])
E("bin/maximum-scalar-const", "maximum(x, 0.5)", lambda x: torch.maximum(x, C(0.5)),
  vars={"x": [1.0, -2.0, 0.25]}, grad=G3)

# comparisons (0/1 floats, no gradient) and where (the cotangent to the selected branch)
_CMP_X, _CMP_Y = [1.0, -2.0, 0.5, 0.5, -0.0], [2.0, -3.0, 0.5, 0.25, 0.0]
for _name, _sym, _tf in (("lt", "<", torch_op("lt")), ("le", "<=", torch_op("le")),
                         ("gt", ">", torch_op("gt")), ("ge", ">=", torch_op("ge")),
                         ("eq", "==", torch_op("eq")), ("ne", "!=", torch_op("ne"))):
    E(f"cmp/{_name}", f"where(x {_sym} y, x * y, x - y) + (x {_sym} y) * x",
      (lambda tf: lambda x, y: torch.where(tf(x, y), x * y, x - y) + tf(x, y).to(x.dtype) * x)(_tf),
      vars={"x": _CMP_X, "y": _CMP_Y}, grad=[0.1, 1.0, -2.0, 0.5, 3.0])
    E(f"cmp/{_name}-by-name", f"sum({_name}(x, 0.5) * x)",
      (lambda tf: lambda x: torch.sum(tf(x, C(0.5)).to(x.dtype) * x))(_tf),
      vars={"x": _CMP_X})
E("where/pick", "where(c, x, y)", lambda c, x, y: torch.where(c != 0, x, y),
  vars={"c": [1.0, 0.0, 2.0, 0.0], "x": [1.0, -2.0, 3.0, 0.5], "y": [2.0, -3.0, 1.0, 0.25]},
  grad=[0.1, 1.0, -2.0, 0.5], wrt=["x", "y"])
E("where/broadcast", "where(x > 0, x * x, M)", lambda x, M: torch.where(x > 0, x * x, M),
  vars={"x": [1.0, -2.0, 0.0], "M": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]},
  grad=[[0.1, 1.0, -2.0], [0.5, 3.0, 1.5]])
E("where/piecewise", "sum(where(x < 1, x ** 2, log(x)))",
  lambda x: torch.sum(torch.where(x < 1, x ** 2, torch.log(x))),
  vars={"x": [0.5, 1.0, 2.0, -0.5]})

# clamp
E("clamp/pos", "clamp(x, -1, 1)", lambda x: torch.clamp(x, -1, 1),
  vars={"x": [-2.0, -0.5, 0.25, 3.0]}, grad=[0.1, 1.0, -2.0, 0.5])
E("clamp/min-kw", "clamp(x, min=0)", lambda x: torch.clamp(x, min=0),
  vars={"x": [-2.0, -0.5, 0.25, 3.0]}, grad=[0.1, 1.0, -2.0, 0.5])
E("clamp/max-kw", "clamp(x, max=0.5)", lambda x: torch.clamp(x, max=0.5),
  vars={"x": [-2.0, -0.5, 0.25, 3.0]}, grad=[0.1, 1.0, -2.0, 0.5])
E("clamp/both-kw", "sum(clamp(x, min=-1, max=2))", lambda x: torch.sum(torch.clamp(x, min=-1, max=2)),
  vars={"x": [[-2.0, -0.5], [0.25, 3.0]]})
E("clamp/tensor-bounds", "clamp(x, lo, hi)", lambda x, lo, hi: torch.clamp(x, lo, hi),
  vars={"x": [-2.0, 0.5, 3.0, 1.0], "lo": [-1.0, 0.0, 0.0, -1.0], "hi": [1.0, 1.0, 2.0, 2.0]},
  grad=[0.1, 1.0, -2.0, 0.5])
E("clamp/tensor-min-only", "clamp(x, min=lo)", lambda x, lo: torch.clamp(x, min=lo),
  vars={"x": [-2.0, 0.5, 3.0], "lo": [-1.0, 1.0, 0.0]}, grad=G3)
E("clamp/tensor-max-only", "clamp(x, max=hi)", lambda x, hi: torch.clamp(x, max=hi),
  vars={"x": [-2.0, 0.5, 3.0], "hi": [-1.0, 1.0, 0.0]}, grad=G3)
E("clamp/scalar-leaf-bounds-broadcast", "clamp(M, lo, hi)", lambda M, lo, hi: torch.clamp(M, lo, hi),
  vars={"M": M23, "lo": -0.5, "hi": 1.0}, grad=G23)
E("clamp/tensor-min-number-max", "clamp(x, lo, 2)",
  lambda x, lo: torch.clamp(x, min=lo, max=C(2.0)),
  vars={"x": [-2.0, 0.5, 3.0], "lo": [-1.0, 1.0, 0.0]}, grad=G3)

# ================================================================ 3. reductions
R23 = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
T223 = [[[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], [[-0.3, 0.8, 1.1], [2.2, -1.6, 0.4]]]
for _red in ("sum", "mean", "prod"):
    _fn = (lambda r: lambda x, **k: t_reduce(r, x, **k))(_red)
    E(f"red/{_red}/full-vec", f"{_red}(x)", (lambda f: lambda x: f(x))(_fn), vars={"x": [0.5, -1.25, 2.0, 3.0]})
    E(f"red/{_red}/dim0", f"{_red}(M, dim=0)", (lambda f: lambda M: f(M, dim=0))(_fn),
      vars={"M": R23}, grad=[1.0, -2.0, 0.5])
    E(f"red/{_red}/dim-neg1", f"{_red}(M, dim=-1)", (lambda f: lambda M: f(M, dim=-1))(_fn),
      vars={"M": R23}, grad=[0.3, -1.0])
    E(f"red/{_red}/dim-neg2-3d", f"{_red}(T, dim=-2)", (lambda f: lambda T: f(T, dim=-2))(_fn),
      vars={"T": T223}, grad=[[1.0, 0.5, -1.0], [2.0, -0.5, 0.25]])
    E(f"red/{_red}/keepdim", f"{_red}(M, dim=1, keepdim=True)",
      (lambda f: lambda M: f(M, dim=1, keepdim=True))(_fn), vars={"M": R23}, grad=[[0.3], [-1.0]])
    if _red == "sum":
        E(f"red/{_red}/0d-input", f"{_red}(a) * 3", (lambda f: lambda a: f(a) * 3)(_fn), vars={"a": 1.5})

M33_G = [[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [2.0, 1.5, -0.5]]
E("red/prod/one-zero", "prod(x)", lambda x: torch.prod(x), vars={"x": [2.0, 0.0, 3.0, -1.5]})
E("red/prod/two-zeros", "prod(x)", lambda x: torch.prod(x), vars={"x": [2.0, 0.0, 3.0, 0.0]})
E("red/prod/zeros-dim", "prod(M, dim=1)", lambda M: torch.prod(M, dim=1),
  vars={"M": [[2.0, 0.0, 3.0], [0.0, 0.0, 1.0], [1.5, 2.0, -1.0]]}, grad=[1.0, 2.0, 3.0])

# cumprod: cumprod_backward without zeros, its masked path over zeros (0 after the first, a
# NaN cotangent after the second dropped), and under GradMode its omitted products
E("red/cumprod/vec", "cumprod(x, 0)", lambda x: torch.cumprod(x, 0),
  vars={"x": [0.5, -1.25, 2.0, 3.0]}, grad=[1.0, -2.0, 0.5, 0.25])
E("red/cumprod/dim1", "cumprod(M, dim=1)", lambda M: torch.cumprod(M, dim=1), vars={"M": R23},
  grad=G23)
E("red/cumprod/dim-neg2-3d", "cumprod(T, dim=-2)", lambda T: torch.cumprod(T, dim=-2),
  vars={"T": T223}, grad=T223)
E("red/cumprod/0d", "cumprod(a, 0) * 3", lambda a: torch.cumprod(a, 0) * 3, vars={"a": 1.5})
E("red/cumprod/one-zero", "cumprod(x, 0)", lambda x: torch.cumprod(x, 0),
  vars={"x": [2.0, 0.0, 3.0, -1.5]}, grad=[1.0, -2.0, 0.5, 0.25])
E("red/cumprod/two-zeros", "cumprod(x, 0)", lambda x: torch.cumprod(x, 0),
  vars={"x": [2.0, 0.0, 3.0, 0.0, -1.5]}, grad=[1.0, -2.0, 0.5, 0.25, 3.0])
E("red/cumprod/zeros-dim0", "cumprod(M, dim=0)", lambda M: torch.cumprod(M, dim=0),
  vars={"M": [[2.0, 0.0, 3.0], [0.0, 0.0, 1.0], [1.5, 2.0, -1.0]]}, grad=M33_G)
E("red/cumprod/zero-nan-after", "sum(sqrt(cumprod(x, 0)))",
  lambda x: torch.sum(torch.sqrt(torch.cumprod(x, 0))), vars={"x": [0.5, 0.0, 2.0, 0.0, 4.0]})

# max / min (no ties here; ties are in the kinks section)
for _red, _tf in (("max", t_max), ("min", t_min)):
    E(f"red/{_red}/full-mat", f"{_red}(M)", (lambda f: lambda M: f(M))(_tf), vars={"M": R23})
    E(f"red/{_red}/dim1", f"{_red}(M, dim=1)", (lambda f: lambda M: f(M, dim=1))(_tf),
      vars={"M": R23}, grad=[0.3, -1.0])
    E(f"red/{_red}/dim-neg1-keepdim", f"{_red}(T, dim=-1, keepdim=True)",
      (lambda f: lambda T: f(T, dim=-1, keepdim=True))(_tf), vars={"T": T223},
      grad=[[[1.0], [0.5]], [[-1.0], [2.0]]])

# logsumexp
E("red/logsumexp/full-vec", "logsumexp(x)", lambda x: t_lse(x), vars={"x": [0.5, -1.25, 2.0, 3.0]})
E("red/logsumexp/dim1", "logsumexp(M, dim=1)", lambda M: t_lse(M, dim=1), vars={"M": R23},
  grad=[0.3, -1.0])
E("red/logsumexp/dim0-keepdim", "logsumexp(M, dim=0, keepdim=True)",
  lambda M: t_lse(M, dim=0, keepdim=True), vars={"M": R23}, grad=[[1.0, -2.0, 0.5]])
E("red/logsumexp/large", "logsumexp(x)", lambda x: t_lse(x), vars={"x": [1000.0, 1000.0, 990.0]})
E("red/logsumexp/f32", "logsumexp(M, dim=1)", lambda M: t_lse(M, dim=1), vars={"M": R23},
  grad=[0.3, -1.0], dtype="float32")

# softmax / log_softmax
E("red/softmax/vec", "softmax(x)", lambda x: torch.softmax(x, dim=-1), vars={"x": [0.5, -1.25, 2.0]},
  grad=G3)
E("red/softmax/mat-default-last", "softmax(M)", lambda M: torch.softmax(M, dim=-1), vars={"M": R23},
  grad=G23)
E("red/softmax/mat-dim0", "softmax(M, dim=0)", lambda M: torch.softmax(M, dim=0), vars={"M": R23},
  grad=G23)
E("red/softmax/3d-dim1", "softmax(T, dim=1)", lambda T: torch.softmax(T, dim=1), vars={"T": T223},
  grad=arr((2, 2, 3), 11))
E("red/softmax/large", "softmax(x)", lambda x: torch.softmax(x, dim=-1),
  vars={"x": [1000.0, 999.0, -1000.0]}, grad=G3)
E("red/log_softmax/vec", "log_softmax(x)", lambda x: torch.log_softmax(x, dim=-1),
  vars={"x": [0.5, -1.25, 2.0]}, grad=G3)
E("red/log_softmax/dim-neg2", "log_softmax(T, dim=-2)", lambda T: torch.log_softmax(T, dim=-2),
  vars={"T": T223}, grad=arr((2, 2, 3), 12))
E("red/log_softmax/large-f32", "log_softmax(x)", lambda x: torch.log_softmax(x, dim=-1),
  vars={"x": [100.0, 99.0, -100.0]}, grad=G3, dtype="float32")

# norm
E("norm/p2-vec", "norm(x)", lambda x: t_norm(x), vars={"x": [3.0, -4.0, 12.0]})
E("norm/p1-vec", "norm(x, p=1)", lambda x: t_norm(x, 1), vars={"x": [3.0, -4.0, 12.0]})
E("norm/pinf-vec", "norm(x, p=inf)", lambda x: t_norm(x, math.inf), vars={"x": [3.0, -14.0, 12.0]})
E("norm/p3-vec", "norm(x, p=3)", lambda x: t_norm(x, 3), vars={"x": [3.0, -4.0, 12.0]})
E("norm/p-positional", "norm(x, 1)", lambda x: t_norm(x, 1), vars={"x": [3.0, -4.0, 12.0]})
E("norm/p2-dim1", "norm(M, dim=1)", lambda M: t_norm(M, dim=1), vars={"M": R23}, grad=[0.3, -1.0])
E("norm/p2-dim0-keepdim", "norm(M, dim=0, keepdim=True)", lambda M: t_norm(M, dim=0, keepdim=True),
  vars={"M": R23}, grad=[[1.0, -2.0, 0.5]])
E("norm/p1-dim1", "norm(M, p=1, dim=1)", lambda M: t_norm(M, 1, dim=1), vars={"M": R23},
  grad=[0.3, -1.0])
E("norm/pinf-dim-neg1", "norm(M, p=inf, dim=-1)", lambda M: t_norm(M, math.inf, dim=-1),
  vars={"M": R23}, grad=[0.3, -1.0])
E("norm/p3-dim0", "norm(M, p=3, dim=0)", lambda M: t_norm(M, 3, dim=0), vars={"M": R23},
  grad=[1.0, -2.0, 0.5])

# softmax of a 0-d array is the constant 1 (log_softmax the constant 0): its grad is 0,
# since the sum over the one element is that element (softmax_backward_data: y (g - g y))
E("red/softmax/scalar", "softmax(a) + a", lambda a: torch.softmax(a, dim=-1) + a, vars={"a": 0.5})
E("red/log_softmax/scalar", "log_softmax(a) * 3", lambda a: torch.log_softmax(a, dim=-1) * 3,
  vars={"a": 0.5})

# ================================================================ 4. linear algebra
A23 = arr((2, 3), 21)
B34 = arr((3, 4), 22)
A22 = [[1.0, 2.0], [3.0, -1.0]]
BAT = arr((2, 2, 3), 23)
BAT2 = arr((2, 3, 2), 24)
E("la/dot", "dot(a, b)", lambda a, b: torch.dot(a, b), vars={"a": V3, "b": V3B})
E("la/matmul-1d-1d", "a @ b", lambda a, b: a @ b, vars={"a": V3, "b": V3B})
E("la/matmul-2d-1d", "A @ v", lambda A, v: A @ v, vars={"A": A23, "v": V3}, grad=[1.0, -0.5])
E("la/matmul-1d-2d", "v @ B", lambda v, B: v @ B, vars={"v": V3, "B": B34}, grad=[1.0, -0.5, 2.0, 0.1])
E("la/matmul-2d-2d", "A @ B", lambda A, B: A @ B, vars={"A": A23, "B": B34}, grad=arr((2, 4), 25))
E("la/matmul-fn-2d-2d", "matmul(A, B)", lambda A, B: torch.matmul(A, B), vars={"A": A23, "B": B34},
  grad=arr((2, 4), 26))
E("la/matmul-3d-3d", "X @ Y", lambda X, Y: X @ Y, vars={"X": BAT, "Y": BAT2}, grad=arr((2, 2, 2), 27))
E("la/matmul-3d-2d", "X @ B", lambda X, B: X @ B, vars={"X": BAT, "B": B34}, grad=arr((2, 2, 4), 28))
E("la/matmul-2d-3d", "A @ Y", lambda A, Y: A @ Y, vars={"A": A23, "Y": BAT2}, grad=arr((2, 2, 2), 29))
E("la/matmul-3d-1d", "X @ v", lambda X, v: X @ v, vars={"X": BAT, "v": V3}, grad=arr((2, 2), 30))
E("la/matmul-1d-3d", "u @ Y", lambda u, Y: u @ Y, vars={"u": V3, "Y": BAT2}, grad=arr((2, 2), 31))
E("la/matmul-4d-3d-broadcast", "X @ Y", lambda X, Y: X @ Y,
  vars={"X": arr((2, 1, 2, 3), 32), "Y": arr((3, 3, 2), 33)}, grad=arr((2, 3, 2, 2), 34))
E("la/matmul-f32", "A @ B", lambda A, B: A @ B, vars={"A": A23, "B": B34}, grad=arr((2, 4), 37),
  dtype="float32")
E("la/matmul-chain", "sum(A @ B @ v)", lambda A, B, v: torch.sum(A @ B @ v),
  vars={"A": A23, "B": B34, "v": [1.0, 2.0, -1.0, 0.5]})
E("la/outer", "outer(a, b)", lambda a, b: torch.outer(a, b), vars={"a": V3, "b": [1.0, -2.0]},
  grad=[[1.0, 0.5], [-1.0, 2.0], [0.3, 0.0]])
E("la/trace", "trace(M)", lambda M: torch.trace(M), vars={"M": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]})
E("la/trace-nonsquare", "trace(M)", lambda M: torch.trace(M), vars={"M": A23})
E("la/trace-of-product", "trace(A @ B)", lambda A, B: torch.trace(A @ B),
  vars={"A": A23, "B": arr((3, 2), 38)})
E("la/quadratic-form", "x @ A @ x", lambda x, A: x @ A @ x, vars={"x": [1.0, -2.0], "A": A22})

# ================================================================ 5. losses
LI = [0.2, 0.7, 0.9, 0.4]
LT = [0.0, 1.0, 1.0, 0.5]
E("loss/mse", "mse_loss(x, y)", lambda x, y: F.mse_loss(x, y), vars={"x": V3, "y": V3B})
E("loss/mse-input-only", "mse_loss(x, y)", lambda x, y: F.mse_loss(x, y), vars={"x": V3, "y": V3B},
  wrt=["x"])
E("loss/bce", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
  vars={"p": LI, "t": LT})
E("loss/bce-mat-f32", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
  vars={"p": [[0.2, 0.7], [0.9, 0.4]], "t": [[0.0, 1.0], [1.0, 0.5]]}, dtype="float32")
E("loss/bce-sigmoid", "binary_cross_entropy(sigmoid(z), t)",
  lambda z, t: F.binary_cross_entropy(torch.sigmoid(z), t),
  vars={"z": [-1.0, 0.5, 2.0, 0.0], "t": LT}, wrt=["z"])
E("loss/bce-logits", "binary_cross_entropy_with_logits(z, t)",
  lambda z, t: F.binary_cross_entropy_with_logits(z, t), vars={"z": [-1.0, 0.5, 2.0, 0.0], "t": LT})
E("loss/bce-logits-large", "binary_cross_entropy_with_logits(z, t)",
  lambda z, t: F.binary_cross_entropy_with_logits(z, t),
  vars={"z": [-100.0, 100.0, 40.0, -40.0], "t": [0.0, 0.0, 1.0, 1.0]})
CE_LOGITS = [[1.0, 2.0, 0.5], [-0.5, 0.3, 2.2], [0.0, 0.0, 0.0], [3.0, -1.0, 0.2]]
CE_T = [1.0, 2.0, 0.0, 0.0]
E("loss/ce-indices", "cross_entropy(z, t)", lambda z, t: F.cross_entropy(z, t.long()),
  vars={"z": CE_LOGITS, "t": CE_T}, wrt=["z"])
E("loss/ce-indices-f32", "cross_entropy(z, t)", lambda z, t: F.cross_entropy(z, t.long()),
  vars={"z": CE_LOGITS, "t": CE_T}, wrt=["z"], dtype="float32")
E("loss/ce-indices-unbatched", "cross_entropy(z, t)", lambda z, t: F.cross_entropy(z, t.long()),
  vars={"z": [1.0, 2.0, 0.5, -1.0], "t": 2.0}, wrt=["z"])
E("loss/ce-indices-spatial", "cross_entropy(z, t)", lambda z, t: F.cross_entropy(z, t.long()),
  vars={"z": arr((2, 3, 2), 41), "t": [[0.0, 2.0], [1.0, 1.0]]}, wrt=["z"])
E("loss/ce-indices-const-target", "cross_entropy(z, [2, 0])",
  lambda z: F.cross_entropy(z, torch.tensor([2, 0])), vars={"z": [[1.0, 2.0, 0.5], [-0.5, 0.3, 2.2]]})
E("loss/ce-probs", "cross_entropy(z, q)", lambda z, q: F.cross_entropy(z, q),
  vars={"z": [[1.0, 2.0, 0.5], [-0.5, 0.3, 2.2]], "q": [[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]]})
E("loss/ce-probs-unbatched", "cross_entropy(z, q)", lambda z, q: F.cross_entropy(z, q),
  vars={"z": [1.0, 2.0, 0.5], "q": [0.25, 0.25, 0.5]})
E("loss/ce-probs-spatial", "cross_entropy(z, q)", lambda z, q: F.cross_entropy(z, q),
  vars={"z": arr((2, 3, 2), 42), "q": [[[0.2, 1.0], [0.3, 0.0], [0.5, 0.0]], [[0.0, 0.4], [1.0, 0.4], [0.0, 0.2]]]},
  wrt=["z"])
E("loss/ce-large-logits", "cross_entropy(z, t)", lambda z, t: F.cross_entropy(z, t.long()),
  vars={"z": [[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 999.0]], "t": [2.0, 1.0]}, wrt=["z"])

# ================================================================ 6. indexing, slicing, shapes
X5 = [0.5, -1.25, 2.0, 3.0, -0.75]
M34 = arr((3, 4), 51)
E("idx/int", "w[0]", lambda w: w[0], vars={"w": V3})
E("idx/neg-int", "w[-1] * w[0]", lambda w: w[-1] * w[0], vars={"w": V3})
E("idx/slice", "x[1:3]", lambda x: x[1:3], vars={"x": X5}, grad=[1.0, -2.0])
E("idx/slice-step", "x[::2]", lambda x: x[::2], vars={"x": X5}, grad=G3)
E("idx/slice-neg-start", "x[-2:]", lambda x: x[-2:], vars={"x": X5}, grad=[1.0, -2.0])
E("idx/slice-past-end", "x[3:10]", lambda x: x[3:10], vars={"x": X5}, grad=[1.0, -2.0])
E("idx/mat-row", "M[1]", lambda M: M[1], vars={"M": M34}, grad=[1.0, -2.0, 0.5, 3.0])
E("idx/square-row", "S[1]", lambda S: S[1], vars={"S": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]},
  grad=G3)
E("idx/3d-partial", "T[-1, 1]", lambda T: T[-1, 1], vars={"T": T223}, grad=G3)
E("idx/mat-col", "M[:, 0]", lambda M: M[:, 0], vars={"M": M34}, grad=G3)
E("idx/mat-elem", "M[0, 1]", lambda M: M[0, 1], vars={"M": M34})
E("idx/mat-chained", "M[2][1] * M[0][3]", lambda M: M[2][1] * M[0][3], vars={"M": M34})
E("idx/mat-block", "M[1:, :2]", lambda M: M[1:, :2], vars={"M": M34}, grad=[[1.0, -2.0], [0.5, 3.0]])
E("idx/mat-strided", "M[::2, 1::2]", lambda M: M[::2, 1::2], vars={"M": M34},
  grad=[[1.0, -2.0], [0.5, 3.0]])
E("idx/3d", "T[0, :, 1]", lambda T: T[0, :, 1], vars={"T": T223}, grad=[1.0, -2.0])
E("idx/of-expression", "(a + b)[0]", lambda a, b: (a + b)[0], vars={"a": V3, "b": V3B})
E("idx/stack-of-elements", "stack(x[2], x[0])", lambda x: torch.stack([x[2], x[0]]), vars={"x": V3},
  grad=[1.0, -2.0])
E("shape/T-2d", "M.T", lambda M: M.T, vars={"M": M23}, grad=[[1.0, 2.0], [-0.5, 0.1], [0.25, -1.0]])
E("shape/T-1d-identity", "x.T * y", lambda x, y: x * y, vars={"x": V3, "y": V3B}, grad=G3)
E("shape/T-matmul", "sum((A @ B).T @ A)", lambda A, B: torch.sum((A @ B).T @ A),
  vars={"A": A23, "B": arr((3, 2), 52)})
E("shape/T-3d-reverses-axes", "T.T", lambda T: rev(T), vars={"T": T223},
  grad=arr((3, 2, 2), 53))
E("shape/reshape", "reshape(x, 2, 3)", lambda x: torch.reshape(x, (2, 3)),
  vars={"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}, grad=G23)
E("shape/reshape-infer", "reshape(x, 2, -1)", lambda x: torch.reshape(x, (2, -1)),
  vars={"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}, grad=G23)
E("shape/reshape-flatten", "reshape(M, -1)", lambda M: torch.reshape(M, (-1,)), vars={"M": M23},
  grad=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
E("shape/reshape-broadcast", "reshape(x, 3, 1) * y", lambda x, y: torch.reshape(x, (3, 1)) * y,
  vars={"x": V3, "y": [1.0, -1.0]}, grad=[[1.0, 0.5], [-1.0, 2.0], [0.3, 0.0]])
E("shape/stack", "stack(a, b)", lambda a, b: torch.stack([a, b]), vars={"a": V3, "b": V3B},
  grad=G23)
E("shape/stack-dim1", "stack(a, b, dim=1)", lambda a, b: torch.stack([a, b], dim=1),
  vars={"a": V3, "b": V3B}, grad=[[1.0, 0.5], [-1.0, 2.0], [0.3, 0.0]])
E("shape/stack-dim-neg1-three", "stack(a, b, c, dim=-1)", lambda a, b, c: torch.stack([a, b, c], dim=-1),
  vars={"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}, grad=[[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]])
E("shape/stack-same-leaf", "stack(a, a * 2)", lambda a: torch.stack([a, a * 2]), vars={"a": V3},
  grad=G23)
E("shape/stack-scalars", "stack(a, b, a * b)", lambda a, b: torch.stack([a, b, a * b]),
  vars={"a": 2.0, "b": -3.0}, grad=G3)
E("shape/cat", "cat(a, b)", lambda a, b: torch.cat([a, b]), vars={"a": V3, "b": [1.0, -1.0]},
  grad=[0.1, 1.0, -2.0, 0.5, 3.0])
E("shape/cat-dim1", "cat(A, B, dim=1)", lambda A, B: torch.cat([A, B], dim=1),
  vars={"A": M23, "B": [[1.0], [2.0]]}, grad=[[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, 0.5, 0.25]])
E("shape/cat-dim-neg1", "cat(A, B, dim=-1)", lambda A, B: torch.cat([A, B], dim=-1),
  vars={"A": M23, "B": M23B}, grad=arr((2, 6), 56))
E("shape/cat-same-leaf", "cat(a, a, a)", lambda a: torch.cat([a, a, a]), vars={"a": [1.0, 2.0]},
  grad=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])

# ================================================================ 7. constants, constructors, detach
E("const/pi-e", "pi * x + e", lambda x: math.pi * x + math.e, vars={"x": V3}, grad=G3)
E("const/number-forms", ".5 * x + 1e-4 * x + 1E-4 * x + 2.5", lambda x: 0.5 * x + 1e-4 * x + 1e-4 * x + 2.5,
  vars={"x": V3}, grad=G3)
E("const/literal-vec", "[1, 2, 3] * x", lambda x: C([1.0, 2.0, 3.0]) * x, vars={"x": V3}, grad=G3)
E("const/literal-mat", "[[1, 2], [3, 4]] @ x", lambda x: C([[1.0, 2.0], [3.0, 4.0]]) @ x,
  vars={"x": [0.5, -1.5]}, grad=[1.0, -2.0])
E("const/literal-const-exprs", "[2*pi, -1, 1e-4, e**2] * x",
  lambda x: C([2 * math.pi, -1.0, 1e-4, math.e ** 2]) * x, vars={"x": [1.0, 2.0, 3.0, 4.0]},
  grad=[1.0, 1.0, 1.0, 1.0])
E("const/ones", "ones(3) * x", lambda x: torch.ones(3) * x, vars={"x": V3}, grad=G3)
E("const/zeros-broadcast", "x + zeros(2, 3)", lambda x: x + torch.zeros(2, 3), vars={"x": V3}, grad=G23)
E("const/full", "full(2, 3, value=7) * x", lambda x: torch.full((2, 3), 7.0) * x, vars={"x": V3},
  grad=G23)
E("const/eye", "eye(3) @ x", lambda x: torch.eye(3) @ x, vars={"x": V3}, grad=G3)
E("const/eye-rect", "eye(2, 3) @ x", lambda x: torch.eye(2, 3) @ x, vars={"x": V3}, grad=[1.0, -2.0])
E("const/linspace", "linspace(0, 1, 3) * x", lambda x: torch.linspace(0, 1, 3) * x, vars={"x": V3},
  grad=G3)
E("const/arange-end", "arange(3) * x", lambda x: torch.arange(3.0) * x, vars={"x": V3}, grad=G3)
E("const/arange-start-end", "arange(1, 4) * x", lambda x: torch.arange(1.0, 4.0) * x, vars={"x": V3},
  grad=G3)
E("const/arange-step", "arange(0, 1.5, 0.5) * x", lambda x: torch.arange(0.0, 1.5, 0.5) * x,
  vars={"x": V3}, grad=G3)
E("const/nested-constructors", "sum(reshape(arange(6), 2, 3) * M + eye(2)[0, 1])",
  lambda M: torch.sum(torch.reshape(torch.arange(6.0), (2, 3)) * M + torch.eye(2)[0, 1]),
  vars={"M": M23})
# rand/randn draw from different generators in numpy and torch, so these cases make the
# result independent of the draw: sign(rand + 1) is exactly 1 for any rand in [0, 1) (and
# sign(|randn| + 1) for any randn), while the constructor's shape still broadcasts x to (2, 3)
E("const/rand-shape", "x * sign(rand(2, 3) + 1)", lambda x: x * torch.sign(torch.rand(2, 3) + 1),
  vars={"x": V3}, grad=G23)
E("const/randn-shape", "x * sign(abs(randn(2, 3)) + 1)",
  lambda x: x * torch.sign(torch.abs(torch.randn(2, 3)) + 1), vars={"x": V3}, grad=G23)
E("detach/product", "detach(x) * x", lambda x: x.detach() * x, vars={"x": V3}, grad=G3)
E("detach/partial", "sum(x * detach(x + y) + y)", lambda x, y: torch.sum(x * (x + y).detach() + y),
  vars={"x": V3, "y": V3B})
E("detach/no-path", "sum(detach(x) * 2 + y)", lambda x, y: torch.sum(x.detach() * 2 + y),
  vars={"x": V3, "y": V3B})
E("detach/whole-output", "detach(x) * 2", lambda x: x.detach() * 2, vars={"x": V3}, grad=G3)
E("detach/normalise", "x / detach(norm(x))", lambda x: x / t_norm(x).detach(), vars={"x": V3},
  grad=G3)

# ================================================================ 8. broadcasting
E("bc/scalar-leaf-matrix", "a * M", lambda a, M: a * M, vars={"a": 1.5, "M": M23}, grad=G23)
E("bc/row-matrix", "v + M", lambda v, M: v + M, vars={"v": V3, "M": M23}, grad=G23)
E("bc/row-matrix-div", "v / M", lambda v, M: v / M, vars={"v": V3, "M": M23}, grad=G23)
E("bc/col-row", "c * r", lambda c, r: c * r, vars={"c": [[2.0], [-1.0]], "r": [[0.5, 1.0, -3.0]]},
  grad=G23)
E("bc/col-vec", "c ** v", lambda c, v: c ** v, vars={"c": [[2.0], [0.5]], "v": V3}, grad=G23)
E("bc/len1-vec", "a * x", lambda a, x: a * x, vars={"a": [2.0], "x": V3}, grad=G3)
E("bc/3d-with-row", "T * v", lambda T, v: T * v, vars={"T": T223, "v": V3}, grad=arr((2, 2, 3), 61))
E("bc/3d-with-col", "T - c", lambda T, c: T - c, vars={"T": T223, "c": [[1.0], [2.0]]},
  grad=arr((2, 2, 3), 62))
E("bc/maximum", "maximum(M, v)", lambda M, v: torch.maximum(M, v), vars={"M": M23, "v": [0.0, 0.25, 1.0]},
  grad=G23)
E("bc/f32", "c * r + v", lambda c, r, v: c * r + v,
  vars={"c": [[2.0], [-1.0]], "r": [[0.5, 1.0, -3.0]], "v": V3}, grad=G23, dtype="float32")
E("bc/grad-number", "c * r", lambda c, r: c * r, vars={"c": [[2.0], [-1.0]], "r": [[0.5, 1.0, -3.0]]},
  grad=1.0)
E("bc/grad-number-vec", "x * 3", lambda x: x * 3, vars={"x": V3}, grad=0.5)

# ================================================================ 9. kinks and edges (PyTorch's conventions)
E("kink/abs-at-0", "abs(x)", lambda x: torch.abs(x), vars={"x": [-1.0, 0.0, 2.0]}, grad=[1.0, 1.0, 1.0])
E("kink/relu-at-0", "relu(x)", lambda x: torch.relu(x), vars={"x": [-1.0, 0.0, 2.0]}, grad=[1.0, 1.0, 1.0])
E("kink/leaky_relu-at-0", "leaky_relu(x)", lambda x: F.leaky_relu(x),
  vars={"x": [-1.0, 0.0, 2.0]}, grad=[1.0, 1.0, 1.0])
E("kink/leaky_relu-slope-at-0", "leaky_relu(x, negative_slope=0.2)",
  lambda x: F.leaky_relu(x, negative_slope=0.2), vars={"x": [-3.0, 0.0, 0.5]}, grad=[1.0, 2.0, 1.0])
E("kink/elu-at-0", "elu(x)", lambda x: F.elu(x), vars={"x": [-1.0, 0.0, 2.0]}, grad=[1.0, 1.0, 1.0])
E("kink/elu-alpha-at-0", "elu(x, alpha=0.5)", lambda x: F.elu(x, alpha=0.5),
  vars={"x": [-2.0, 0.0, 0.5]}, grad=[1.0, 2.0, 1.0])
E("elem/elu/far-left", "sum(elu(x, alpha=2) * leaky_relu(x))",
  lambda x: torch.sum(F.elu(x, alpha=2.0) * F.leaky_relu(x)), vars={"x": [-40.0, -1.5, 0.25, 3.0]})
E("kink/sign-at-0", "sign(x) * x", lambda x: torch.sign(x) * x, vars={"x": [-1.0, 0.0, 2.0]},
  grad=[1.0, 1.0, 1.0])
E("kink/sqrt-at-0", "sqrt(x)", lambda x: torch.sqrt(x), vars={"x": [0.0, 1.0, 4.0]}, grad=[1.0, 1.0, 1.0])
E("kink/sqrt-at-0-zero-cotangent", "sqrt(x)", lambda x: torch.sqrt(x), vars={"x": [0.0, 1.0]},
  grad=[0.0, 1.0])
E("kink/log-at-0", "log(x)", lambda x: torch.log(x), vars={"x": [0.0, 1.0, 2.0]}, grad=[1.0, 1.0, 1.0])
E("kink/log2-log10-at-0", "log2(x) + log10(x)", lambda x: torch.log2(x) + torch.log10(x),
  vars={"x": [0.0, 1.0]}, grad=[1.0, 1.0])
E("kink/max-full-tie2", "max(x)", lambda x: t_max(x), vars={"x": [1.0, 3.0, 3.0, 2.0]})
E("kink/max-full-tie3-mat", "max(M)", lambda M: t_max(M), vars={"M": [[2.0, 5.0, 1.0], [5.0, 5.0, -1.0]]})
E("kink/min-full-tie2", "min(x)", lambda x: t_min(x), vars={"x": [1.0, -3.0, 2.0, -3.0]})
E("kink/max-full-all-equal", "max(x)", lambda x: t_max(x), vars={"x": [2.0, 2.0, 2.0, 2.0]})
E("kink/max-dim-tie-first", "max(M, dim=1)", lambda M: t_max(M, dim=1),
  vars={"M": [[1.0, 3.0, 3.0], [2.0, 2.0, 1.0], [4.0, 4.0, 4.0]]}, grad=[1.0, 2.0, 3.0])
E("kink/max-dim0-tie-first", "max(M, dim=0)", lambda M: t_max(M, dim=0),
  vars={"M": [[1.0, 3.0, 3.0], [1.0, 3.0, 1.0]]}, grad=[1.0, 2.0, 3.0])
E("kink/min-dim-tie-first", "min(M, dim=-1)", lambda M: t_min(M, dim=-1),
  vars={"M": [[1.0, 0.0, 0.0], [-2.0, 5.0, -2.0]]}, grad=[1.0, 2.0])
E("kink/max-dim-tie-keepdim", "max(M, dim=1, keepdim=True)", lambda M: t_max(M, dim=1, keepdim=True),
  vars={"M": [[1.0, 3.0, 3.0], [2.0, 2.0, 1.0]]}, grad=[[1.0], [2.0]])
E("kink/max-vec-dim0-tie", "max(x, dim=0)", lambda x: t_max(x, dim=0), vars={"x": [1.0, 3.0, 3.0]})
E("kink/maximum-tie", "maximum(x, y)", lambda x, y: torch.maximum(x, y),
  vars={"x": [1.0, 2.0, 3.0], "y": [1.0, 0.0, 3.0]}, grad=[1.0, 1.0, 4.0])
E("kink/minimum-tie", "minimum(x, y)", lambda x, y: torch.minimum(x, y),
  vars={"x": [1.0, 2.0, 3.0], "y": [1.0, 0.0, 3.0]}, grad=[1.0, 1.0, 4.0])
E("kink/maximum-tie-broadcast", "maximum(M, a)", lambda M, a: torch.maximum(M, a),
  vars={"M": [[1.0, 2.0], [2.0, 3.0]], "a": 2.0}, grad=[[1.0, 1.0], [1.0, 1.0]])
E("kink/maximum-same-leaf", "sum(maximum(x, x))", lambda x: torch.sum(torch.maximum(x, x)),
  vars={"x": V3})
E("kink/clamp-at-bounds", "clamp(x, -1, 1)", lambda x: torch.clamp(x, -1, 1),
  vars={"x": [-1.0, 1.0, -1.5, 1.5, 0.0]}, grad=[1.0, 1.0, 1.0, 1.0, 1.0])
E("kink/clamp-min-at-bound", "clamp(x, min=0)", lambda x: torch.clamp(x, min=0),
  vars={"x": [0.0, -1.0, 1.0]}, grad=[1.0, 1.0, 1.0])
E("kink/clamp-tensor-at-bounds", "clamp(x, lo, hi)", lambda x, lo, hi: torch.clamp(x, lo, hi),
  vars={"x": [-1.0, 1.0, 0.5, -2.0, 3.0], "lo": [-1.0, 0.0, 0.5, -1.0, 0.0],
        "hi": [1.0, 1.0, 2.0, 1.0, 3.0]}, grad=[1.0, 2.0, 3.0, 4.0, 5.0])
E("kink/clamp-tensor-min-gt-max", "clamp(x, lo, hi)", lambda x, lo, hi: torch.clamp(x, lo, hi),
  vars={"x": [0.0, 5.0, -5.0, 1.5], "lo": [2.0, 2.0, 2.0, 2.0], "hi": [1.0, 1.0, 1.0, 1.0]},
  grad=[1.0, 2.0, 3.0, 4.0])
E("kink/clamp-number-min-gt-max", "clamp(x, 2, 1)", lambda x: torch.clamp(x, 2, 1),
  vars={"x": [0.0, 1.0, 1.5, 2.0, 5.0]}, grad=[1.0, 2.0, 3.0, 4.0, 5.0])
E("kink/clamp-tensor-min-at-bound", "clamp(x, min=lo)", lambda x, lo: torch.clamp(x, min=lo),
  vars={"x": [0.0, 1.0, -1.0], "lo": [0.0, 0.0, 0.0]}, grad=[1.0, 2.0, 3.0])
E("kink/pow-0-0-tensor", "x**y", lambda x, y: x ** y,
  vars={"x": [0.0, 0.0, 0.0, 2.0, 0.0], "y": [0.0, 1.0, 2.0, 0.0, 0.5]}, grad=[1.0, 1.0, 1.0, 1.0, 1.0])
E("kink/pow-0-neg-exponent", "x**y", lambda x, y: x ** y,
  vars={"x": [0.0, 0.0], "y": [-1.0, -0.5]}, grad=[1.0, 1.0])
E("kink/pow-0-scalar-exponent-0", "x**0", lambda x: x ** 0, vars={"x": [0.0, 2.0, -1.0]},
  grad=[1.0, 1.0, 1.0])
E("kink/pow-0-scalar-exponents", "x**2 + x**1 + x**1.5 + x**3", lambda x: x ** 2 + x ** 1 + x ** 1.5 + x ** 3,
  vars={"x": [0.0]}, grad=[1.0])
E("kink/pow-0-neg-scalar-exponent", "x**-1", lambda x: x ** -1, vars={"x": [0.0, 2.0]}, grad=[1.0, 1.0])
E("kink/scalar-base-0", "0**x", lambda x: 0 ** x, vars={"x": [0.0, 1.0, 2.0]}, grad=[1.0, 1.0, 1.0])
E("kink/scalar-base-0-neg", "0**x", lambda x: 0 ** x, vars={"x": [-1.0]}, grad=[1.0])
E("kink/pow-0-0-scalar-leaves", "a**b", lambda a, b: a ** b, vars={"a": 0.0, "b": 0.0})
E("kink/norm-zero-p2", "norm(x)", lambda x: t_norm(x), vars={"x": [0.0, 0.0, 0.0]})
E("kink/norm-zero-p1", "norm(x, p=1)", lambda x: t_norm(x, 1), vars={"x": [0.0, 0.0, 0.0]})
E("kink/norm-zero-pinf", "norm(x, p=inf)", lambda x: t_norm(x, math.inf), vars={"x": [0.0, 0.0, 0.0]})
E("kink/norm-zero-p3", "norm(x, p=3)", lambda x: t_norm(x, 3), vars={"x": [0.0, 0.0, 0.0]})
E("kink/norm-zero-row-dim", "norm(M, dim=1)", lambda M: t_norm(M, dim=1),
  vars={"M": [[0.0, 0.0], [3.0, 4.0]]}, grad=[1.0, 1.0])
E("kink/norm-p1-with-zero-entry", "norm(x, p=1)", lambda x: t_norm(x, 1), vars={"x": [0.0, -2.0, 3.0]})
E("kink/norm-pinf-ties", "norm(x, p=inf)", lambda x: t_norm(x, math.inf), vars={"x": [3.0, -3.0, 1.0]})
E("kink/norm-pinf-ties-dim", "norm(M, p=inf, dim=1)", lambda M: t_norm(M, math.inf, dim=1),
  vars={"M": [[3.0, -3.0, 3.0], [1.0, 2.0, -2.0]]}, grad=[1.0, 1.0])
E("kink/norm-zero-f32", "norm(x)", lambda x: t_norm(x), vars={"x": [0.0, 0.0]}, dtype="float32")
E("kink/softplus-threshold", "softplus(x)", lambda x: F.softplus(x),
  vars={"x": [19.5, 20.0, 20.0001, 20.5, 25.0]}, grad=[1.0, 1.0, 1.0, 1.0, 1.0])
E("kink/softplus-threshold-f32", "softplus(x)", lambda x: F.softplus(x),
  vars={"x": [19.0, 20.0, 21.0, -30.0]}, grad=[1.0, 1.0, 1.0, 1.0], dtype="float32")
E("kink/softplus-threshold-5", "softplus(x, threshold=5)", lambda x: F.softplus(x, threshold=5),
  vars={"x": [-3.0, 4.9, 5.0, 5.1]}, grad=[1.0, 1.0, 1.0, 1.0])
E("kink/softplus-beta-threshold", "softplus(x, beta=2)", lambda x: F.softplus(x, beta=2),
  vars={"x": [9.9, 10.0, 10.1]}, grad=[1.0, 1.0, 1.0])
BCE_EDGE_P = [0.0, 0.0, 1.0, 1.0, 0.5]
BCE_EDGE_T = [0.0, 1.0, 0.0, 1.0, 1.0]
E("kink/bce-at-0-and-1", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
  vars={"p": BCE_EDGE_P, "t": BCE_EDGE_T}, wrt=["p"])
E("kink/bce-at-0-and-1-with-target", "binary_cross_entropy(p, t)",
  lambda p, t: F.binary_cross_entropy(p, t), vars={"p": BCE_EDGE_P, "t": BCE_EDGE_T})
E("kink/bce-at-0-and-1-f32", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
  vars={"p": BCE_EDGE_P, "t": BCE_EDGE_T}, wrt=["p"], dtype="float32")
E("kink/bce-near-0", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
  vars={"p": [1e-50, 1e-40, 1.0 - 1e-16], "t": [1.0, 0.5, 0.0]}, wrt=["p"])
E("kink/bce-soft-target-at-0", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
  vars={"p": [0.0, 1.0], "t": [0.3, 0.7]}, wrt=["p"])
E("kink/bce-logits-at-0", "binary_cross_entropy_with_logits(z, t)",
  lambda z, t: F.binary_cross_entropy_with_logits(z, t), vars={"z": [0.0, 0.0], "t": [0.0, 1.0]})
E("kink/atan2-origin", "atan2(y, x)", lambda y, x: torch.atan2(y, x), vars={"y": [0.0, 0.0], "x": [0.0, 1.0]},
  grad=[1.0, 1.0])
E("kink/hypot-origin", "hypot(x, y)", lambda x, y: torch.hypot(x, y), vars={"x": [0.0, 3.0], "y": [0.0, 4.0]},
  grad=[1.0, 1.0])
E("kink/asin-at-1", "asin(x)", lambda x: torch.asin(x), vars={"x": [1.0, -1.0, 0.0]}, grad=[1.0, 1.0, 1.0])
E("kink/acos-at-1", "acos(x)", lambda x: torch.acos(x), vars={"x": [1.0, -1.0, 0.0]}, grad=[1.0, 1.0, 1.0])
E("kink/log1p-at-minus-1", "log1p(x)", lambda x: torch.log1p(x), vars={"x": [-1.0, 0.0]}, grad=[1.0, 1.0])
E("kink/sum-of-abs-diff-tie", "sum(abs(x - y))", lambda x, y: torch.sum(torch.abs(x - y)),
  vars={"x": [1.0, 2.0, 3.0], "y": [1.0, 0.0, 5.0]})

# ================================================================ 10. non-finite inputs and results
E("nonfinite/log-negative", "log(x)", lambda x: torch.log(x), vars={"x": [-1.0, 0.0, 1.0]},
  grad=[1.0, 1.0, 1.0])
E("nonfinite/recip-zero", "1/x", lambda x: 1 / x, vars={"x": [0.0, 2.0, -0.5]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/div-zero-by-zero", "x/y", lambda x, y: x / y,
  vars={"x": [0.0, 1.0, -1.0], "y": [0.0, 0.0, 0.0]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/sqrt-negative", "sqrt(x)", lambda x: torch.sqrt(x), vars={"x": [-1.0, 0.0, 4.0]},
  grad=[1.0, 1.0, 1.0])
E("nonfinite/const-one-over-zero", "x + 1/0", lambda x: x + math.inf, vars={"x": V3}, grad=G3)
E("nonfinite/inf-const", "x * inf", lambda x: x * math.inf, vars={"x": [1.0, 0.0, -2.0]},
  grad=[1.0, 1.0, 1.0])
E("nonfinite/nan-const", "x + nan", lambda x: x + math.nan, vars={"x": V3}, grad=G3)
E("nonfinite/1e999", "x * 1e999", lambda x: x * math.inf, vars={"x": [1.0, -2.0]}, grad=[1.0, 1.0])
E("nonfinite/exp-overflow", "exp(x)", lambda x: torch.exp(x), vars={"x": [1000.0, 1.0]}, grad=[1.0, 1.0])
E("nonfinite/zero-times-log-zero", "sum(x * log(x))", lambda x: torch.sum(x * torch.log(x)),
  vars={"x": [0.0, 1.0, 2.0]})
E("nonfinite/logsumexp-all-neg-inf", "logsumexp(log(x))", lambda x: t_lse(torch.log(x)),
  vars={"x": [0.0, 0.0]})
E("nonfinite/logsumexp-one-neg-inf", "logsumexp(log(x))", lambda x: t_lse(torch.log(x)),
  vars={"x": [0.0, 2.0]})
E("nonfinite/softmax-with-inf", "softmax(x * inf)", lambda x: torch.softmax(x * math.inf, dim=-1),
  vars={"x": [-1.0, 0.5, 1.0]}, grad=G3)
E("nonfinite/max-with-nan", "max(log(x))", lambda x: t_max(torch.log(x)), vars={"x": [-1.0, 2.0, 3.0]})

# Masks meet non-finite cotangents. Where PyTorch's rule selects with where/masked_fill
# (relu's threshold_backward, sign, clamp, maximum/minimum, max/min) a NaN or infinite
# cotangent stays out of the masked-off elements, which get exactly 0; where it multiplies
# (pow's exponent rule: grad * where(...)) the NaN spreads. log(-1) = NaN and 1/0 = inf
# make the non-finite cotangents inside the expression.
NAN_UP = [-1.0, -1.0, -1.0]
E("nonfinite/relu-nan-cotangent", "relu(x) * log(y)", lambda x, y: torch.relu(x) * torch.log(y),
  vars={"x": [-1.0, 0.0, 2.0], "y": NAN_UP}, wrt=["x"], grad=[1.0, 1.0, 1.0])
E("nonfinite/relu-inf-cotangent", "relu(x) / y", lambda x, y: torch.relu(x) / y,
  vars={"x": [0.0, -1.0, 2.0], "y": [0.0, 0.0, 0.0]}, wrt=["x"], grad=[1.0, 1.0, 1.0])
E("nonfinite/relu-of-nan", "relu(log(x))", lambda x: torch.relu(torch.log(x)),
  vars={"x": [-1.0, 0.5, 2.0]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/sign-nan-cotangent", "sign(x) * log(y)", lambda x, y: torch.sign(x) * torch.log(y),
  vars={"x": [-2.0, 0.0, 2.0], "y": [-1.0, 2.0, -1.0]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/clamp-nan-cotangent", "clamp(x, -0.5, 0.5) * log(y)",
  lambda x, y: torch.clamp(x, -0.5, 0.5) * torch.log(y),
  vars={"x": [-1.0, 0.0, 2.0], "y": NAN_UP}, wrt=["x"], grad=[1.0, 1.0, 1.0])
E("nonfinite/clamp-tensor-nan-cotangent", "clamp(x, lo, hi) * log(y)",
  lambda x, lo, hi, y: torch.clamp(x, lo, hi) * torch.log(y),
  vars={"x": [-1.0, 0.5, 2.0], "lo": [0.0, 0.0, 0.0], "hi": [1.0, 1.0, 1.0], "y": NAN_UP},
  wrt=["x", "lo", "hi"], grad=[1.0, 1.0, 1.0])
E("nonfinite/clamp-of-nan", "clamp(log(x), lo, 1)", lambda x, lo: torch.clamp(torch.log(x), lo, C(1.0)),
  vars={"x": [-1.0, 2.0, 0.5], "lo": [0.0, 0.0, 0.0]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/maximum-nan-cotangent", "maximum(x, y) * log(z)",
  lambda x, y, z: torch.maximum(x, y) * torch.log(z),
  vars={"x": [1.0, 2.0, 3.0], "y": [2.0, 2.0, 1.0], "z": NAN_UP}, wrt=["x", "y"],
  grad=[1.0, 1.0, 1.0])
E("nonfinite/minimum-inf-cotangent", "minimum(x, y) / z",
  lambda x, y, z: torch.minimum(x, y) / z,
  vars={"x": [1.0, 2.0, 3.0], "y": [2.0, 2.0, 1.0], "z": [0.0, 0.0, 0.0]}, wrt=["x", "y"],
  grad=[1.0, 1.0, 1.0])
E("nonfinite/maximum-of-nan", "maximum(log(x), y)", lambda x, y: torch.maximum(torch.log(x), y),
  vars={"x": [-1.0, 2.0, -1.0], "y": [0.5, 3.0, 0.5]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/minimum-of-nan", "minimum(y, log(x))", lambda x, y: torch.minimum(y, torch.log(x)),
  vars={"x": [-1.0, 2.0, 0.25], "y": [0.5, 3.0, 0.5]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/max-full-nan-cotangent", "max(x) * log(y)", lambda x, y: t_max(x) * torch.log(y),
  vars={"x": [1.0, 3.0, 3.0], "y": -1.0}, wrt=["x"])
E("nonfinite/min-dim-nan-cotangent", "min(M, dim=0) * log(v)",
  lambda M, v: t_min(M, dim=0) * torch.log(v),
  vars={"M": [[1.0, 3.0], [3.0, 1.0]], "v": [-1.0, 1.0]}, wrt=["M"], grad=[1.0, 1.0])
E("nonfinite/max-dim-of-nan", "max(log(M), dim=0)", lambda M: t_max(torch.log(M), dim=0),
  vars={"M": [[1.0, -1.0], [3.0, 2.0]]}, grad=[1.0, 1.0])
E("nonfinite/pow-nan-cotangent", "(x ** y) * log(z)",
  lambda x, y, z: (x ** y) * torch.log(z),
  vars={"x": [0.0, 0.0, 2.0], "y": [0.5, 0.0, 0.0], "z": NAN_UP}, wrt=["x", "y"],
  grad=[1.0, 1.0, 1.0])
# PyTorch's sgn(NaN) is 0: sign(NaN) = 0, and the rules that multiply by sgn (abs, norm
# with p = 1 or inf) give 0, not NaN, at a NaN element
E("nonfinite/sign-of-nan", "sign(log(x))", lambda x: torch.sign(torch.log(x)),
  vars={"x": [-1.0, 2.0, 0.5, 1.0]}, grad=[1.0, 1.0, 1.0, 1.0])
E("nonfinite/abs-of-nan", "abs(log(x))", lambda x: torch.abs(torch.log(x)),
  vars={"x": [-1.0, 2.0, 0.5]}, grad=[1.0, 1.0, 1.0])
E("nonfinite/norm1-of-nan", "norm(log(x), p=1)", lambda x: t_norm(torch.log(x), p=1),
  vars={"x": [-1.0, 2.0, 0.5]})
E("nonfinite/norminf-of-nan", "norm(log(x), p=inf)", lambda x: t_norm(torch.log(x), p=math.inf),
  vars={"x": [-1.0, 2.0, 0.5]})
# nll_loss picks the target's log-probability; it never multiplies the others by 0, so a
# -inf logit elsewhere leaves the loss finite (and a -inf picked one makes it +inf)
E("nonfinite/ce-index-other-logit-neg-inf", "cross_entropy(log10(x), [0])",
  lambda x: F.cross_entropy(torch.log10(x), torch.tensor([0])), vars={"x": [[1.0, 0.0, 0.0]]})
E("nonfinite/ce-index-picked-logit-neg-inf", "cross_entropy(log10(x), [1, 0])",
  lambda x: F.cross_entropy(torch.log10(x), torch.tensor([1, 0])),
  vars={"x": [[1.0, 0.0, 0.5], [2.0, 1.0, 0.0]]})
E("nonfinite/ce-index-1d-neg-inf", "cross_entropy(log10(x), 0)",
  lambda x: F.cross_entropy(torch.log10(x), torch.tensor(0)), vars={"x": [1.0, 0.0, 0.5]})
E("nonfinite/bce-logits-target-neg-inf", "binary_cross_entropy_with_logits(x, log(t))",
  lambda x, t: F.binary_cross_entropy_with_logits(x, torch.log(t)),
  vars={"x": [1.0, -1.0], "t": [0.0, 0.5]})
E("nonfinite/bce-target-neg-inf-grad", "binary_cross_entropy(x, t)",
  lambda x, t: F.binary_cross_entropy(x, t), vars={"x": [0.0, 1.0, 0.5], "t": [0.0, 1.0, 1.0]})
# prod_backward: with no zero in the input it is grad * result / input (so an infinite
# element gives NaN, not the product of the others); a full product with two or more zeros
# has grad exactly 0 even for an infinite cotangent; with dim, any zero switches every
# slice to the exclusive products
E("nonfinite/prod-two-zeros-inf-cotangent", "sqrt(prod(x))", lambda x: torch.sqrt(torch.prod(x)),
  vars={"x": [-0.5, 0.0, 0.0]})
E("nonfinite/prod-of-inf", "prod(1/x)", lambda x: torch.prod(1 / x), vars={"x": [0.0, 2.0, -4.0]})
E("nonfinite/prod-dim-nan", "prod(log(M), dim=1)", lambda M: torch.prod(torch.log(M), dim=1),
  vars={"M": [[0.5, 0.0, -1.0], [0.5, 0.5, -1.0]]}, grad=[1.0, 1.0])
E("nonfinite/prod-dim-inf-no-zero", "prod(1/M, dim=0)", lambda M: torch.prod(1 / M, dim=0),
  vars={"M": [[0.0, 2.0], [4.0, 0.5]]}, grad=[1.0, 1.0])
# trace_backward fills the diagonal of zeros: off the diagonal the grad is exactly 0 even
# for an infinite cotangent (here 1/0)
E("nonfinite/trace-inf-cotangent", "trace(M) / x", lambda M, x: torch.trace(M) / x,
  vars={"M": M23, "x": 0.0}, wrt=["M"])
# cross_entropy is log_softmax then nll_loss (class indices) or -(log_softmax * target).sum()
# / N (probabilities) in torch; with an infinite cotangent (1/0) the composition gives NaN
# where -inf meets +inf, which a fused "softmax - target" rule would not
CE_X = [[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]]
E("nonfinite/ce-index-inf-cotangent", "cross_entropy(x, [0, 2]) / a",
  lambda x, a: F.cross_entropy(x, torch.tensor([0, 2])) / a, vars={"x": CE_X, "a": 0.0},
  wrt=["x"])
E("nonfinite/ce-index-1d-inf-cotangent", "cross_entropy(x, 1) / a",
  lambda x, a: F.cross_entropy(x, torch.tensor(1)) / a, vars={"x": [1.0, 2.0, 0.5], "a": 0.0},
  wrt=["x"])
E("nonfinite/ce-probs-inf-cotangent", "cross_entropy(x, t) / a",
  lambda x, t, a: F.cross_entropy(x, t) / a,
  vars={"x": CE_X, "t": [[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]], "a": 0.0}, wrt=["x", "t"])
# binary_cross_entropy_backward divides by max((1 - x) x, EPSILON) with EPSILON a float
# 1e-12 (9.99999996e-13 as a double): at x = 0, t = 1 the grad is -1/(4 EPSILON)
E("kink/bce-input-zero-target-one", "binary_cross_entropy(x, t)",
  lambda x, t: F.binary_cross_entropy(x, t),
  vars={"x": [0.0, 1.0, 0.5, 0.0], "t": [0.0, 1.0, 1.0, 1.0]}, wrt=["x"])
E("nonfinite/pow-scalar-base-zero-nan-cotangent", "(0 ** y) * log(z)",
  lambda y, z: (0 ** y) * torch.log(z),
  vars={"y": [0.5, 0.0, 2.0], "z": NAN_UP}, wrt=["y"], grad=[1.0, 1.0, 1.0])

# ================================================================ 11. wrt subsets, unused leaves
E("wrt/one-of-three", "a*b + c", lambda a, b, c: a * b + c,
  vars={"a": V3, "b": V3B, "c": [2.0, 3.0, 4.0]}, grad=G3, wrt=["a"])
E("wrt/two-of-three", "a*b + c", lambda a, b, c: a * b + c,
  vars={"a": V3, "b": V3B, "c": [2.0, 3.0, 4.0]}, grad=G3, wrt=["a", "c"])
E("wrt/scalar-output", "sum(a * b**2)", lambda a, b: torch.sum(a * b ** 2), vars={"a": V3, "b": V3B},
  wrt=["b"])
E("wrt/unused-leaf", "x * 2", lambda x, y: x * 2, vars={"x": V3, "y": V3B}, grad=G3)
E("wrt/unused-leaf-explicit", "sum(x * 2)", lambda x, y: torch.sum(x * 2), vars={"x": V3, "y": V3B},
  wrt=["y", "x"])
E("wrt/scalar-leaf-only", "a * M", lambda a, M: a * M, vars={"a": 1.5, "M": M23}, grad=G23, wrt=["a"])

# ================================================================ 12. accumulation (repeat)
E("repeat/scalar-2", "sum(x**2)", lambda x: torch.sum(x ** 2), vars={"x": V3}, repeat=2)
E("repeat/vector-3", "x * y", lambda x, y: x * y, vars={"x": V3, "y": V3B}, grad=G3, repeat=3)
E("repeat/seed-ones", "3*a + 2*b*b + log(c)", lambda a, b, c: 3 * a + 2 * b * b + torch.log(c),
  vars={"a": 1.0, "b": 1.0, "c": 1.0}, repeat=2)
E("repeat/f32", "sum(sin(x) * y)", lambda x, y: torch.sum(torch.sin(x) * y), vars={"x": V3, "y": V3B},
  repeat=2, dtype="float32")
E("repeat/kink", "max(x)", lambda x: t_max(x), vars={"x": [1.0, 3.0, 3.0]}, repeat=2)
E("repeat/wrt", "a * b", lambda a, b: a * b, vars={"a": V3, "b": V3B}, grad=G3, repeat=2, wrt=["b"])

# ================================================================ 13. VALUE forms in requests
E("value/comma-list", "a * b", lambda a, b: a * b, vars={"a": [1.0, 2.0, 3.0], "b": V3B}, grad=G3,
  vars_text={"a": "1,2,3"})
E("value/const-expr", "3*a + 2*b*b + log(c)", lambda a, b, c: 3 * a + 2 * b * b + torch.log(c),
  vars={"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0], "c": [6.0, 7.0, 8.0]}, grad=[0.1, 1.0, 0.0001],
  vars_text={"c": "linspace(6,8,3)"})
E("value/ones-var", "sum(x * x)", lambda x: torch.sum(x * x), vars={"x": [[1.0, 1.0], [1.0, 1.0]]},
  vars_text={"x": "ones(2,2)"})
E("value/eye-var", "sum((I + 1)**2)", lambda I: torch.sum((I + 1) ** 2),
  vars={"I": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}, vars_text={"I": "eye(3)"})

# ================================================================ 14. programs
P("prog/seed-mean", "x = ones(2, 2)\ny = x + 2\nz = y * y * 3\nout = mean(z)",
  lambda x: {"out": torch.mean((x + 2) * (x + 2) * 3)},
  program_leaves={"x": [[1.0, 1.0], [1.0, 1.0]]})
P("prog/seed-eye-pow-repeat", "inp = eye(5)\nout = (inp + 1)**2",
  lambda inp: {"out": (inp + 1) ** 2}, program_leaves={"inp": [[1.0 if i == j else 0.0 for j in range(5)] for i in range(5)]},
  grad=[[1.0] * 5] * 5, repeat=2)
P("prog/seed-eye-rect-T", "inp = eye(4, 5)\nout = ((inp + 1)**2).T",
  lambda inp: {"out": ((inp + 1) ** 2).T},
  program_leaves={"inp": [[1.0 if i == j else 0.0 for j in range(5)] for i in range(4)]},
  grad=[[1.0] * 4] * 5)
P("prog/seed-logistic", "z = x @ w + b\nloss = binary_cross_entropy_with_logits(z, y)",
  lambda x, y, w, b: {"loss": F.binary_cross_entropy_with_logits(x @ w + b, y)},
  vars={"x": [1.0] * 5, "y": [0.0] * 3, "w": arr((5, 3), 71), "b": arr((3,), 72)}, wrt=["w", "b"])
P("prog/seed-logistic-leaves-in-program",
  "x = ones(5)\ny = zeros(3)\nz = x @ w + b\nloss = binary_cross_entropy_with_logits(z, y)",
  lambda x, y, w, b: {"loss": F.binary_cross_entropy_with_logits(x @ w + b, y)},
  vars={"w": arr((5, 3), 73), "b": arr((3,), 74)}, program_leaves={"x": [1.0] * 5, "y": [0.0] * 3},
  wrt=["w", "b"])
P("prog/seed-fn-def", "f(x, w) = 2*x*w[0] + x**2*w[1]\ny = f(x, w)",
  lambda x, w: {"y": 2 * x * w[0] + x ** 2 * w[1]}, vars={"x": 1.0, "w": [1.0, 1.0]})
P("prog/fn-def-vector", "f(x, w) = 2*x*w[0] + x**2*w[1]\ny = f(a, b)",
  lambda a, b: {"y": 2 * a * b[0] + a ** 2 * b[1]}, vars={"a": V3, "b": [0.5, -1.5]}, grad=G3)
P("prog/fn-def-fit-loss", "f(x, w) = 2*x*w[0] + x**2*w[1]\npred = f(xs, w)\nloss = mse_loss(pred, ys)",
  lambda xs, ys, w: {"loss": F.mse_loss(2 * xs * w[0] + xs ** 2 * w[1], ys)},
  vars={"xs": [0.0, 0.5, 1.0, 1.5, 2.0], "ys": [0.1, 1.2, 3.1, 5.2, 7.9], "w": [0.8, 1.1]}, wrt=["w"])
P("prog/fn-shadowing", "w = b * 10\nf(x, w) = 2*x*w[0] + x**2*w[1]\nx = a * 3\nout = sum(f(a, b) + x + w[0])",
  lambda a, b: {"out": torch.sum(2 * a * b[0] + a ** 2 * b[1] + a * 3 + (b * 10)[0])},
  vars={"a": V3, "b": [0.5, -1.5]})
P("prog/fn-nested", "g(t) = t**2\nh(t) = g(t) + g(2*t)\nout = sum(h(x))",
  lambda x: {"out": torch.sum(x ** 2 + (2 * x) ** 2)}, vars={"x": V3})
P("prog/fn-outer-name", "f(t) = t * k + 1\nout = sum(f(x) * f(y))",
  lambda x, y, k: {"out": torch.sum((x * k + 1) * (y * k + 1))}, vars={"x": V3, "y": V3B, "k": 1.5})
P("prog/fn-matrix", "layer(W, b, h) = tanh(W @ h + b)\nout = sum(layer(W2, b2, layer(W1, b1, x)))",
  lambda x, W1, b1, W2, b2: {"out": torch.sum(torch.tanh(W2 @ torch.tanh(W1 @ x + b1) + b2))},
  vars={"x": V3, "W1": arr((4, 3), 75), "b1": arr((4,), 76), "W2": arr((2, 4), 77), "b2": arr((2,), 78)})
P("prog/rebinding", "y = x * 2\ny = y + 1\ny = y ** 2\nout = sum(y)",
  lambda x: {"out": torch.sum((x * 2 + 1) ** 2)}, vars={"x": V3})
P("prog/semicolons-bare-last", "y = x * 2; z = y ** 2; sum(z)",
  lambda x: {None: torch.sum((x * 2) ** 2)}, vars={"x": V3})
P("prog/comments", "# doubling\ny = x * 2  # an intermediate\n\n# the output\nout = sum(y * y)  # done",
  lambda x: {"out": torch.sum((x * 2) * (x * 2))}, vars={"x": V3})
P("prog/bare-last-vector", "y = a * b\ny + a", lambda a, b: {None: a * b + a}, vars={"a": V3, "b": V3B},
  grad=G3)
P("prog/leaf-literal", "w = [1.0, 2.0, 3.0]\nout = sum(w * x)",
  lambda w, x: {"out": torch.sum(w * x)}, vars={"x": V3}, program_leaves={"w": [1.0, 2.0, 3.0]})
P("prog/leaf-overridden-by-var", "w = [1.0, 2.0]\nout = sum(w**2)",
  lambda w: {"out": torch.sum(w ** 2)}, vars={"w": [3.0, -4.0]})
P("prog/leaf-wrt-subset", "k = 2.5\nout = sum(k * x ** 2)", lambda k, x: {"out": torch.sum(k * x ** 2)},
  vars={"x": V3}, program_leaves={"k": 2.5}, wrt=["k"])
P("prog/identity-y-equals-z", "y = z", lambda z: {"y": z.clone()},
  vars={"z": [-1.0, -0.5, 0.0, 0.5, 1.0]}, grad=[-1.0, -0.5, 0.0, 0.5, 1.0])
P("prog/y-equals-z-squared", "y = z**2", lambda z: {"y": z ** 2},
  vars={"z": [1.0, 2.0, 3.0, 4.0, 5.0]}, grad=[1.0, 2.0, 3.0, 4.0, 5.0])
P("prog/mlp-ce", "h = relu(x @ W1 + b1)\nlogits = h @ W2 + b2\nloss = cross_entropy(logits, t)",
  lambda x, W1, b1, W2, b2, t: {"loss": F.cross_entropy(torch.relu(x @ W1 + b1) @ W2 + b2, t.long())},
  vars={"x": arr((4, 3), 81), "W1": arr((3, 5), 82), "b1": arr((5,), 83), "W2": arr((5, 3), 84),
        "b2": arr((3,), 85), "t": [0.0, 2.0, 1.0, 2.0]}, wrt=["x", "W1", "b1", "W2", "b2"])
P("prog/attention", "s = softmax(Q @ K.T / 2)\nout = s @ V",
  lambda Q, K, V: {"out": torch.softmax(Q @ K.T / 2, dim=-1) @ V},
  vars={"Q": arr((2, 3), 86), "K": arr((4, 3), 87), "V": arr((4, 2), 88)}, grad=arr((2, 2), 89))
P("prog/layernorm-ish", "m = mean(x, dim=-1, keepdim=True)\nd = x - m\nv = mean(d**2, dim=-1, keepdim=True)\nout = d / sqrt(v + 1e-5)",
  lambda x: {"out": (x - x.mean(-1, keepdim=True)) / torch.sqrt(((x - x.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True) + 1e-5)},
  vars={"x": arr((2, 4), 90)}, grad=arr((2, 4), 91))
P("prog/indexing-intermediate", "y = x * 3\nout = y[0] * y[-1] + y[1:].T @ y[:2]",
  lambda x: {"out": (x * 3)[0] * (x * 3)[-1] + (x * 3)[1:] @ (x * 3)[:2]}, vars={"x": V3})

# ---------------------------------------------------------------- of
P("of/vector-intermediate", "y = x * 2\nz = y ** 2\nout = sum(z)",
  lambda x: {"y": x * 2, "z": (x * 2) ** 2, "out": torch.sum((x * 2) ** 2)},
  vars={"x": V3}, of="y", grad=G3)
P("of/second-intermediate", "y = x * 2\nz = y ** 2\nout = sum(z)",
  lambda x: {"y": x * 2, "z": (x * 2) ** 2, "out": torch.sum((x * 2) ** 2)},
  vars={"x": V3}, of="z", grad=[1.0, 1.0, 1.0])
P("of/scalar-intermediate", "s = sum(x * y)\nout = s * 2 + 1",
  lambda x, y: {"s": torch.sum(x * y), "out": torch.sum(x * y) * 2 + 1}, vars={"x": V3, "y": V3B}, of="s")
P("of/repeat", "h = tanh(W @ x)\nout = sum(h)",
  lambda W, x: {"h": torch.tanh(W @ x), "out": torch.sum(torch.tanh(W @ x))},
  vars={"W": A23, "x": V3}, of="h", grad=[1.0, -0.5], repeat=2)
P("of/wrt-subset", "h = tanh(W @ x)\nout = sum(h)",
  lambda W, x: {"h": torch.tanh(W @ x), "out": torch.sum(torch.tanh(W @ x))},
  vars={"W": A23, "x": V3}, of="h", grad=[1.0, -0.5], wrt=["W"])
P("of/leaf-not-on-path", "y = a * 2\nout = y + b",
  lambda a, b: {"y": a * 2, "out": a * 2 + b}, vars={"a": V3, "b": V3B}, of="y", grad=G3)
P("of/rebound-name", "y = x + 1\ny = y * 3\nout = sum(y)",
  lambda x: {"y": (x + 1) * 3, "out": torch.sum((x + 1) * 3)}, vars={"x": V3}, of="y", grad=G3)

# ---------------------------------------------------------------- repeat in programs
P("prog/repeat-2", "y = 3*a + 2*b*b + log(c)",
  lambda a, b, c: {"y": 3 * a + 2 * b * b + torch.log(c)},
  vars={"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0], "c": [6.0, 7.0, 8.0]}, grad=[0.1, 1.0, 0.0001], repeat=2)

# ---------------------------------------------------------------- #: option lines inside programs
P("opts/grad-in-program", "#: --grad 0.1,1.0,0.0001\ny = 3*a + 2*b*b + log(c)",
  lambda a, b, c: {"y": 3 * a + 2 * b * b + torch.log(c)},
  vars={"a": [1.0, 2.0, 3.0], "b": [3.0, 4.0, 5.0], "c": [6.0, 7.0, 8.0]}, grad=[0.1, 1.0, 0.0001],
  request_omit=("grad",))
P("opts/repeat-in-program", "#: --repeat 2\nx = ones(2, 2)\nout = mean((x + 2)**2 * 3)",
  lambda x: {"out": torch.mean((x + 2) ** 2 * 3)}, program_leaves={"x": [[1.0, 1.0], [1.0, 1.0]]},
  repeat=2, request_omit=("repeat",))
P("opts/grad-and-repeat-in-program", "#: --grad 1 --repeat 2\ninp = eye(5)\nout = (inp + 1)**2",
  lambda inp: {"out": (inp + 1) ** 2},
  program_leaves={"inp": [[1.0 if i == j else 0.0 for j in range(5)] for i in range(5)]},
  grad=1.0, repeat=2, request_omit=("grad", "repeat"))
P("opts/wrt-in-program", "#: --wrt a\nout = sum(a * b)", lambda a, b: {"out": torch.sum(a * b)},
  vars={"a": V3, "b": V3B}, wrt=["a"], request_omit=("wrt",))


# ================================================================ 15. the edges of floating point
# Every op at the float range's edges (1e+-300, +-1e308, subnormals, signed zeros, +-inf) and
# on empty arrays (SPEC 2: results agree with PyTorch wherever it defines them). `edge/`
# cases are compared strictly by tests/test_reference.py: no absolute tolerance (a subnormal
# against torch's 0 differs) and zeros of the same sign.
INF = math.inf


def _text(values):
    """The gradcalc VALUE text of a list that holds inf (strict JSON has no number for it)."""
    if isinstance(values, list):
        return "[" + ", ".join(_text(v) for v in values) + "]"
    return repr(float(values))


def EDGE(id, expr, fn, vars, **kw):
    """An edge case: any non-finite leaf value is sent as VALUE text."""
    text = {n: _text(v) for n, v in vars.items()
            if not all(math.isfinite(f) for f in _flat(v))}
    E("edge/" + id, expr, fn, vars=vars, vars_text=text, **kw)


def _flat(v):
    if isinstance(v, list):
        return [f for w in v for f in _flat(w)]
    return [float(v)]


X_EDGE = [1e-300, -1e-300, 1e300, -1e300, 1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0, INF, -INF]
G_EDGE = [1e308, -1e308, 1e-300, 5e-324, -5e-324, 1e300]
UNARY_ALL = dict(UNARY, neg=(lambda x: -x, None))
for _name, (_f, _vec) in UNARY_ALL.items():
    _expr = "-x" if _name == "neg" else f"{_name}(x)"
    EDGE(f"{_name}/range", _expr, _f, vars={"x": X_EDGE}, grad=1.0)
    EDGE(f"{_name}/cotangent", _expr, _f, vars={"x": [0.5, -0.75, 1.5, 0.25, -2.0, 0.125]},
         grad=G_EDGE)
    EDGE(f"{_name}/empty", _expr, _f, vars={"x": []}, grad=1.0)
    EDGE(f"{_name}/range-f32", _expr, _f, dtype="float32", grad=1.0,
         vars={"x": [3e38, -3e38, 1e-40, -1e-40, 0.0, -0.0, 100.0, -100.0, 88.0, -88.0]})

# every pair of a few edge values, for each binary op (and clamp with a tensor bound)
_B = [1e-300, 1e300, 1e308, -1e308, 5e-324, 0.0, -0.0, 2.0, INF, -INF]
BINARY = {
    "add": ("x + y", lambda x, y: x + y), "sub": ("x - y", lambda x, y: x - y),
    "mul": ("x * y", lambda x, y: x * y), "div": ("x / y", lambda x, y: x / y),
    "pow": ("x ** y", lambda x, y: x ** y), "atan2": ("atan2(x, y)", torch and torch.atan2),
    "hypot": ("hypot(x, y)", torch and torch.hypot),
    "maximum": ("maximum(x, y)", torch and torch.maximum),
    "minimum": ("minimum(x, y)", torch and torch.minimum),
    "clamp-min": ("clamp(x, min=y)", lambda x, y: torch.clamp(x, min=y)),
    "clamp-max": ("clamp(x, max=y)", lambda x, y: torch.clamp(x, max=y)),
}
# maximum, minimum and clamp with tensor bounds return, on a tie of 0.0 and -0.0, the second
# operand in torch's SIMD loop (blocks of 8 or 16 elements, by CPU) and the first in its
# scalar loop (arrays under 8 elements, and the tail past the last block): in these 100-element
# pairs the sign would be the machine's, so they leave -0.0 out; the ties are recorded below
# on arrays under 8 elements, where every CPU runs the scalar loop
SIGNED_ZERO_TIES_UNDEFINED = ("maximum", "minimum", "clamp-min", "clamp-max")
_B_NO_NEG_ZERO = [b for b in _B if not (b == 0 and math.copysign(1, b) < 0)]
for _name, (_expr, _f) in BINARY.items():
    _vals = _B_NO_NEG_ZERO if _name in SIGNED_ZERO_TIES_UNDEFINED else _B
    EDGE(f"{_name}/pairs", _expr, (lambda f: lambda x, y: f(x, y))(_f),
         vars={"x": [a for a in _vals for b in _vals], "y": [b for a in _vals for b in _vals]},
         grad=1.0)
    EDGE(f"{_name}/cotangent", _expr, (lambda f: lambda x, y: f(x, y))(_f),
         vars={"x": [2.0, 0.5, -1.5, 3.0, 0.25, 1.25], "y": [4.0, 1.5, 2.0, -0.5, 0.75, 1.0]},
         grad=G_EDGE)
    EDGE(f"{_name}/empty", _expr, (lambda f: lambda x, y: f(x, y))(_f),
         vars={"x": [], "y": []}, grad=1.0)
    EDGE(f"{_name}/empty-scalar", _expr, (lambda f: lambda x, y: f(x, y))(_f),
         vars={"x": [], "y": 2.0}, grad=1.0)
_ZX, _ZY = [-0.0, 0.0, -0.0, 0.0], [0.0, -0.0, -0.0, 0.0]
for _name in SIGNED_ZERO_TIES_UNDEFINED:
    _expr, _f = BINARY[_name]
    EDGE(f"{_name}/signed-zero-ties", _expr, (lambda f: lambda x, y: f(x, y))(_f),
         vars={"x": _ZX, "y": _ZY}, grad=[1.0, 2.0, 3.0, 4.0])
    EDGE(f"{_name}/signed-zero-tie-0d", _expr, (lambda f: lambda x, y: f(x, y))(_f),
         vars={"x": -0.0, "y": 0.0})
EDGE("clamp/signed-zero-ties-both", "clamp(x, lo, hi)", lambda x, lo, hi: torch.clamp(x, lo, hi),
     vars={"x": [-0.0, 0.0, -0.0, 0.0], "lo": [0.0, -0.0, -1.0, -1.0], "hi": [1.0, 1.0, 0.0, -0.0]},
     grad=1.0)
EDGE("div/same-leaf-tiny", "s / s", lambda s: s / s, vars={"s": 1e-300})
EDGE("div/tiny-over-small", "x / y", lambda x, y: x / y, vars={"x": 1e-300, "y": 1e-170})
EDGE("div/huge-cotangent", "x / y", lambda x, y: x / y, vars={"x": 2.0, "y": 4.0}, grad=1e308)
EDGE("pow/half-scalar", "x ** 0.5", lambda x: x ** 0.5, vars={"x": X_EDGE}, grad=1.0)
EDGE("pow/minus-half-scalar", "x ** -0.5", lambda x: x ** -0.5, vars={"x": X_EDGE}, grad=1.0)
EDGE("pow/scalars", "x**2 + x**3 + x**-1 + x**1.5 + x**-2",
     lambda x: x ** 2 + x ** 3 + x ** -1 + x ** 1.5 + x ** -2, vars={"x": X_EDGE}, grad=1.0)
EDGE("pow/scalar-base", "2 ** x + 0.5 ** x", lambda x: 2 ** x + 0.5 ** x,
     vars={"x": X_EDGE}, grad=1.0)
# number bounds (clamp.Scalar) keep x on a tie in both of torch's loops: -0.0 stays -0.0
EDGE("clamp/min-zero", "clamp(x, min=0)", lambda x: torch.clamp(x, min=0),
     vars={"x": X_EDGE}, grad=1.0)
EDGE("clamp/max-neg-zero", "clamp(x, max=-0.0)", lambda x: torch.clamp(x, max=-0.0),
     vars={"x": X_EDGE}, grad=1.0)
EDGE("clamp/min-zero-0d", "clamp(x, min=0)", lambda x: torch.clamp(x, min=0), vars={"x": -0.0})
EDGE("clamp/both", "clamp(x, -1, 1)", lambda x: torch.clamp(x, -1, 1), vars={"x": X_EDGE},
     grad=1.0)
EDGE("clamp/min-inf-bound", "clamp(x, min=t)", lambda x, t: torch.clamp(x, min=t),
     vars={"x": [1.0, -2.0, INF], "t": [INF, INF, INF]}, grad=1.0)
EDGE("clamp/max-neg-inf-bound", "clamp(x, max=t)", lambda x, t: torch.clamp(x, max=t),
     vars={"x": [1.0, -2.0, -INF], "t": [-INF, -INF, -INF]}, grad=1.0)
EDGE("clamp/empty", "clamp(x, -1, 1)", lambda x: torch.clamp(x, -1, 1), vars={"x": []}, grad=1.0)
EDGE("clamp/empty-tensor-bounds", "clamp(x, lo, hi)", lambda x, lo, hi: torch.clamp(x, lo, hi),
     vars={"x": [], "lo": [], "hi": []}, grad=1.0)
for _name, _sym in (("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="),
                    ("ne", "!=")):
    _tf = torch_op(_name)
    EDGE(f"{_name}/empty", f"where(x {_sym} y, x, y)",
         (lambda tf: lambda x, y: torch.where(tf(x, y), x, y))(_tf),
         vars={"x": [], "y": []}, grad=1.0)
    # NaN compares false except !=; infinities and signed zeros compare as IEEE says
    EDGE(f"{_name}/nan-inf-zeros", f"where(x {_sym} y, x * 2, y * 3)",
         (lambda tf: lambda x, y: torch.where(tf(x, y), x * 2, y * 3))(_tf),
         vars={"x": [math.nan, 1.0, INF, -0.0, -INF], "y": [1.0, math.nan, INF, 0.0, 5.0]},
         grad=[1.0, 2.0, 3.0, 4.0, 5.0])
EDGE("where/empty", "where(x, x, -x)", lambda x: torch.where(x != 0, x, -x), vars={"x": []},
     grad=1.0)
EDGE("where/nan-condition", "where(c, x, y)", lambda c, x, y: torch.where(c != 0, x, y),
     vars={"c": [math.nan, 0.0, -0.0, INF], "x": [1.0, 2.0, 3.0, 4.0],
           "y": [5.0, 6.0, 7.0, 8.0]}, grad=[1.0, 2.0, 3.0, 4.0], wrt=["x", "y"])
EDGE("where/huge-grad", "where(x > 0, x, 0)", lambda x: torch.where(x > 0, x, C(0.0)),
     vars={"x": [1.0, -1.0, 0.0]}, grad=[1e308, -1e308, 1e308])
for _name, _expr, _f in (("softplus-beta", "softplus(x, beta=2)", lambda x: F.softplus(x, beta=2)),
                         ("leaky_relu-slope", "leaky_relu(x, negative_slope=0.2)",
                          lambda x: F.leaky_relu(x, negative_slope=0.2)),
                         ("elu-alpha", "elu(x, alpha=0.5)", lambda x: F.elu(x, alpha=0.5))):
    EDGE(f"{_name}/range", _expr, _f, vars={"x": X_EDGE}, grad=1.0)

# reductions over vectors at the edges, and over empty arrays
R_EDGE = {
    "huge": [1e308, 1e308, 1e308], "mixed": [1e308, -1e308, 1e-300], "tiny": [5e-324, 1e-300, -5e-324],
    "neg-zeros": [-0.0, -0.0], "zeros": [0.0, -0.0], "inf": [INF, 1.0, -2.0], "neg-inf": [-INF, 1.0],
    "one-inf": [INF], "one-neg-inf": [-INF],
}
REDUCTIONS = {
    "sum": ("sum(x)", lambda x: torch.sum(x)), "mean": ("mean(x)", lambda x: torch.mean(x)),
    "prod": ("prod(x)", lambda x: torch.prod(x)), "max": ("max(x)", lambda x: t_max(x)),
    "min": ("min(x)", lambda x: t_min(x)), "logsumexp": ("logsumexp(x)", lambda x: t_lse(x)),
    "norm-p2": ("norm(x)", lambda x: t_norm(x)), "norm-p1": ("norm(x, p=1)", lambda x: t_norm(x, 1)),
    "norm-p3": ("norm(x, p=3)", lambda x: t_norm(x, 3)),
    "cumprod": ("sum(cumprod(x, 0))", lambda x: torch.sum(torch.cumprod(x, 0))),
    "norm-p0": ("norm(x, p=0)", lambda x: t_norm(x, 0)),
    "norm-p0.5": ("norm(x, p=0.5)", lambda x: t_norm(x, 0.5)),
    "norm-pinf": ("norm(x, p=inf)", lambda x: t_norm(x, INF)),
    "softmax": ("sum(softmax(x) * w)", lambda x: torch.sum(torch.softmax(x, -1) * C([1.0, -2.0, 3.0][:x.numel()]))),
    "log_softmax": ("sum(log_softmax(x) * w)",
                    lambda x: torch.sum(torch.log_softmax(x, -1) * C([1.0, -2.0, 3.0][:x.numel()]))),
}
for _name, (_expr, _f) in REDUCTIONS.items():
    for _k, _v in R_EDGE.items():
        if "softmax" in _name:      # w is a constant of x's length
            _e = _expr.replace("w", _text([1.0, -2.0, 3.0][:len(_v)]))
        else:
            _e = _expr
        EDGE(f"{_name}/{_k}", _e, _f, vars={"x": _v})
EDGE("norm-p0/backward", "norm(x, p=0) * 3", lambda x: t_norm(x, 0) * 3, vars={"x": [1.0, 0.0, -2.0]})
EDGE("norm-p0/inf-cotangent", "norm(x, p=0) / a", lambda x, a: t_norm(x, 0) / a,
     vars={"x": [1.0, 0.0, -2.0], "a": 0.0}, wrt=["x"])

# empty arrays: every reduction torch defines on them
EMPTY_REDUCTIONS = {
    "sum": lambda x: torch.sum(x), "mean": lambda x: torch.mean(x), "prod": lambda x: torch.prod(x),
    "logsumexp": lambda x: t_lse(x),
}
for _name, _f in EMPTY_REDUCTIONS.items():
    EDGE(f"{_name}/empty", f"{_name}(x)", _f, vars={"x": []})
for _p, _tp in (("2", 2), ("1", 1), ("0", 0), ("3", 3)):
    EDGE(f"norm-p{_p}/empty", f"norm(x, p={_p})", (lambda p: lambda x: t_norm(x, p))(_tp),
         vars={"x": []})
EDGE("cumprod/empty", "sum(cumprod(x, 0))", lambda x: torch.sum(torch.cumprod(x, 0)),
     vars={"x": []})
EDGE("softmax/empty", "softmax(k, dim=0)", lambda k: torch.softmax(k, dim=0), vars={"k": []},
     grad=1.0)
EDGE("log_softmax/empty", "log_softmax(k, dim=0)", lambda k: torch.log_softmax(k, dim=0),
     vars={"k": []}, grad=1.0)
M33 = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
EDGE("cumprod/empty-slice-dim1", "cumprod(c[3:], dim=1)", lambda c: torch.cumprod(c[3:], dim=1),
     vars={"c": M33}, grad=1.0)
for _red, _tf in (("max", t_max), ("min", t_min)):
    EDGE(f"{_red}/empty-slice-dim1", f"{_red}(c[3:], dim=1)",
         (lambda f: lambda c: f(c[3:], dim=1))(_tf), vars={"c": M33}, grad=1.0)
for _red in ("sum", "mean", "prod", "logsumexp", "softmax", "log_softmax"):
    _f = {"logsumexp": lambda c: torch.logsumexp(c[3:], dim=1),
          "softmax": lambda c: torch.softmax(c[3:], dim=1),
          "log_softmax": lambda c: torch.log_softmax(c[3:], dim=1)}.get(
        _red, (lambda r: lambda c: getattr(torch, r)(c[3:], dim=1))(_red))
    EDGE(f"{_red}/empty-slice-dim1", f"{_red}(c[3:], dim=1)", _f, vars={"c": M33}, grad=1.0)
    if _red in ("sum", "mean", "prod", "logsumexp"):
        _f0 = (lambda r: lambda c: (torch.logsumexp if r == "logsumexp" else getattr(torch, r))(
            c[3:], dim=0))(_red)
        EDGE(f"{_red}/empty-slice-dim0", f"{_red}(c[3:], dim=0)", _f0, vars={"c": M33}, grad=1.0)
EDGE("norm/empty-slice-dim0", "norm(c[3:], dim=0)", lambda c: t_norm(c[3:], dim=0),
     vars={"c": M33}, grad=1.0)
EDGE("norm/empty-slice-pinf-dim1", "norm(c[3:], p=inf, dim=1)",
     lambda c: t_norm(c[3:], INF, dim=1), vars={"c": M33}, grad=1.0)
for _name, _f in (("softmax", torch and torch.softmax), ("log_softmax", torch and torch.log_softmax)):
    EDGE(f"{_name}/empty-slice-dim0", f"{_name}(c[3:], dim=0)",
         (lambda f: lambda c: f(c[3:], dim=0))(_f), vars={"c": M33}, grad=1.0)
for _name, _f in (("softmax", torch and torch.softmax), ("log_softmax", torch and torch.log_softmax)):
    for _k, _v in (("nan", math.nan), ("inf", INF), ("neg-inf", -INF)):
        EDGE(f"{_name}/0d-{_k}", f"{_name}(k) + k * 0",
             (lambda f: lambda k: f(k, dim=-1) + k * 0)(_f), vars={"k": _v})
        EDGE(f"{_name}/0d-{_k}-alone", f"{_name}(k)", (lambda f: lambda k: f(k, dim=-1))(_f),
             vars={"k": _v})
EDGE("softmax/single-inf", "softmax(x)", lambda x: torch.softmax(x, -1), vars={"x": [INF]},
     grad=1.0)
EDGE("log_softmax/nan", "log_softmax(x)", lambda x: torch.log_softmax(x, -1),
     vars={"x": [math.nan, 1.0]}, grad=1.0)
EDGE("log_softmax/single-nan", "log_softmax(x)", lambda x: torch.log_softmax(x, -1),
     vars={"x": [math.nan]}, grad=1.0)
EDGE("softmax/huge-f32", "softmax(x)", lambda x: torch.softmax(x, -1),
     vars={"x": [3e38, -3e38, 1e-40]}, grad=[1.0, 2.0, 3.0], dtype="float32")

# linear algebra at the edges and on empty operands
EDGE("dot/huge", "dot(a, b)", lambda a, b: torch.dot(a, b),
     vars={"a": [1e308, 1e-300, -0.0], "b": [2.0, 1e-300, 5e-324]})
EDGE("dot/empty", "dot(a, b)", lambda a, b: torch.dot(a, b), vars={"a": [], "b": []})
EDGE("matmul/huge", "A @ v", lambda A, v: A @ v,
     vars={"A": [[1e308, 1e308], [1e-300, 5e-324]], "v": [1e10, -0.0]}, grad=[1.0, 1e308])
EDGE("matmul/empty-inner", "A @ B", lambda A, B: A @ B,
     vars={"A": [[], []], "B": []}, grad=1.0)
EDGE("outer/huge", "outer(a, b)", lambda a, b: torch.outer(a, b),
     vars={"a": [1e308, 5e-324], "b": [1e10, -0.0]}, grad=1.0)
EDGE("outer/empty", "outer(a, b)", lambda a, b: torch.outer(a, b), vars={"a": [], "b": [1.0, 2.0]},
     grad=1.0)
EDGE("trace/huge", "trace(M)", lambda M: torch.trace(M), vars={"M": [[1e308, 0.0], [5.0, 1e308]]})
EDGE("trace/empty", "trace(M)", lambda M: torch.trace(M), vars={"M": [[]]})

# losses at the edges and on empty operands
EDGE("mse_loss/huge", "mse_loss(x, y)", lambda x, y: F.mse_loss(x, y),
     vars={"x": [1e308, 1e154, 5e-324], "y": [-1e308, 0.0, -5e-324]})
EDGE("mse_loss/huge-single", "mse_loss(x, y)", lambda x, y: F.mse_loss(x, y),
     vars={"x": [1e308], "y": [0.0]})
EDGE("mse_loss/huge-mean", "mse_loss(x, y)", lambda x, y: F.mse_loss(x, y),
     vars={"x": [1e308, 0.0, 0.0, 0.0], "y": [0.0, 0.0, 0.0, -1e308]})
EDGE("mse_loss/empty", "mse_loss(x, y)", lambda x, y: F.mse_loss(x, y), vars={"x": [], "y": []})
EDGE("bce/tiny", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
     vars={"p": [5e-324, 1e-300, 1.0, -0.0], "t": [1.0, 0.0, 5e-324, 1.0]})
EDGE("bce/target-grad-at-half", "binary_cross_entropy(p, t)",
     lambda p, t: F.binary_cross_entropy(p, t), vars={"p": [0.5, 0.25, 0.5], "t": [1.0, 0.0, 0.0]})
EDGE("bce/empty", "binary_cross_entropy(p, t)", lambda p, t: F.binary_cross_entropy(p, t),
     vars={"p": [], "t": []})
EDGE("bce_logits/huge", "binary_cross_entropy_with_logits(z, t)",
     lambda z, t: F.binary_cross_entropy_with_logits(z, t),
     vars={"z": [1e308, -1e308, 5e-324, -0.0], "t": [0.0, 1.0, 1e308, -1e308]})
EDGE("bce_logits/empty", "binary_cross_entropy_with_logits(z, t)",
     lambda z, t: F.binary_cross_entropy_with_logits(z, t), vars={"z": [], "t": []})
EDGE("cross_entropy/huge", "cross_entropy(z, q)", lambda z, q: F.cross_entropy(z, q),
     vars={"z": [[1e308, -1e308, 1e-300], [5e-324, 0.0, -0.0]], "q": [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]})
EDGE("cross_entropy/huge-indices", "cross_entropy(z, [1, 0])",
     lambda z: F.cross_entropy(z, torch.tensor([1, 0])),
     vars={"z": [[1e308, -1e308, 1e-300], [5e-324, 0.0, -0.0]]})
EDGE("cross_entropy/empty-batch", "cross_entropy(c[3:], q[3:])",
     lambda c, q: F.cross_entropy(c[3:], q[3:]), vars={"c": M33, "q": M33})
EDGE("cross_entropy/empty-batch-indices", "cross_entropy(c[3:], t[3:])",
     lambda c, t: F.cross_entropy(c[3:], t[3:].long()), vars={"c": M33, "t": [0.0, 2.0, 1.0]},
     wrt=["c"])

# shape ops and constructors on empty arrays and signed zeros
EDGE("index/empty-slice", "x[1:1]", lambda x: x[1:1], vars={"x": [1.0, -0.0]}, grad=1.0)
EDGE("index/neg-zero", "x[1] * 2", lambda x: x[1] * 2, vars={"x": [1.0, -0.0]})
EDGE("transpose/empty", "M.T", lambda M: M.T, vars={"M": [[]]}, grad=1.0)
EDGE("reshape/empty", "reshape(x, 0, 2)", lambda x: torch.reshape(x, (0, 2)), vars={"x": []},
     grad=1.0)
EDGE("stack/empty", "stack(a, b)", lambda a, b: torch.stack([a, b]), vars={"a": [], "b": []},
     grad=1.0)
EDGE("cat/empty", "cat(a, b)", lambda a, b: torch.cat([a, b]), vars={"a": [], "b": [-0.0, 1e308]},
     grad=1.0)
EDGE("shape/range", "cat(reshape(x, 3, 4).T[0], stack(x[1], x[-1]), x[::5])",
     lambda x: torch.cat([torch.reshape(x, (3, 4)).T[0], torch.stack([x[1], x[-1]]), x[::5]]),
     vars={"x": X_EDGE}, grad=[1e308, -1e308, 5e-324, -0.0, 1e-300, 2.0, -5e-324, 1e300])
EDGE("detach/range", "detach(x) * x", lambda x: x.detach() * x, vars={"x": X_EDGE}, grad=1.0)
EDGE("constructors/range", "x * full(3, value=1e308) + linspace(0, 1e-300, 3) + arange(0, 3e-300, 1e-300)",
     lambda x: x * torch.full((3,), 1e308) + torch.linspace(0, 1e-300, 3)
     + torch.arange(0, 3e-300, 1e-300), vars={"x": [5e-324, -0.0, 2.0]}, grad=1.0)
EDGE("detach/empty", "detach(x) * x", lambda x: x.detach() * x, vars={"x": []}, grad=1.0)
EDGE("constructors/empty", "x * ones(0) + zeros(0) + full(0, value=2) + linspace(0, 1, 0) + arange(0)",
     lambda x: x * torch.ones(0) + torch.zeros(0) + torch.full((0,), 2.0) + torch.linspace(0, 1, 0)
     + torch.arange(0.0), vars={"x": []}, grad=1.0)
EDGE("constructors/empty-2d", "x + eye(0) + rand(0, 0) + randn(0, 0)",
     lambda x: x + torch.eye(0) + torch.rand(0, 0) + torch.randn(0, 0), vars={"x": []}, grad=1.0)


# ================================================================ 16. float32 twins of selected cases
F32_TWINS = [
    "elem/chain/log-sqrt-exp", "elem/chain/trig", "elem/chain/activations", "elem/chain/logs",
    "op/div", "pow/tensor-exponent", "pow/scalar-base", "bin/atan2", "clamp/tensor-bounds",
    "red/mean/keepdim", "red/max/dim1", "red/softmax/mat-dim0", "la/matmul-3d-3d", "loss/ce-probs",
    "kink/abs-at-0", "kink/sqrt-at-0", "kink/max-dim-tie-first", "kink/maximum-tie",
    "kink/clamp-tensor-at-bounds", "kink/pow-0-0-tensor", "kink/norm-zero-p2", "nonfinite/recip-zero",
    "prog/attention", "of/vector-intermediate", "kink/bce-input-zero-target-one",
    # the edges in float32 (1e308 is inf there, a double subnormal 0)
    "edge/div/pairs", "edge/mul/pairs", "edge/pow/pairs", "edge/atan2/pairs", "edge/hypot/pairs",
    "edge/maximum/signed-zero-ties", "edge/clamp/min-zero", "edge/pow/half-scalar",
    "edge/pow/minus-half-scalar", "edge/pow/scalars", "edge/div/tiny-over-small",
    "edge/mse_loss/huge-mean", "edge/bce_logits/huge", "edge/softmax/0d-inf",
    "edge/norm-p2/tiny", "edge/logsumexp/huge", "edge/softmax/empty",
]
_by_id = {c.id: c for c in CASES}
for _id in F32_TWINS:
    CASES.append(replace(_by_id[_id], id=_id + "/f32", dtype="float32"))


def _check_unique():
    seen = set()
    for c in CASES:
        assert c.id not in seen, f"duplicate case id {c.id}"
        assert (c.expr is None) != (c.program is None), c.id
        seen.add(c.id)


_check_unique()
