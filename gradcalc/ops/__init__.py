"""THE TABLE: every primitive of the language, declared once.

Each `Op` holds its numpy forward, one vector-Jacobian rule per array input, a shape/param
inference (which validates arguments before anything is allocated), its sympy *forward* form
(the symbolic check differentiates that independently; it is never handed a VJP), its
PyTorch backward-node name, and sample calls that the table-driven tests walk.

Format of an entry (a written spec, as derivatives.yaml opens with one):

- `sig`: "x, y" array inputs; "name:int?=None", "name:bool=False", "name:number=1" constant
  parameters; "*xs" variadic arrays; "*shape:int" variadic integers; a bare "*" makes the
  parameters after it keyword-only (max(x, 1) must not silently mean dim=1).
- `forward(*arrays, **params) -> ndarray`.
- `vjps`: a tuple with one rule per array input, `rule(g, ans, *arrays, **params)`, or a
  function `i -> rule` for variadic ops. `g` is the cotangent with any number of extra
  LEADING batch axes (shape batch + ans.shape); a rule must keep them (broadcast over them,
  use negative axes, `matmul`, `swapaxes(-1, -2)`), so that backward with a batch of basis
  cotangents yields a whole Jacobian in one pass. A rule may return something that merely
  broadcasts to batch + ans.shape; summing a broadcast operand back to its own shape is done
  once, in the engine (engine.plain.sum_to). `None` means "no gradient flows here".
- `infer(shapes, params) -> (out_shape, params)`: validates arguments (raising
  GradcalcError kind "call" or "shape") and normalises params (dims become negative, so that
  rules work under leading batch axes).
- `sympy(sp, *args, **params)`: the forward formula that the symbolic check differentiates
  (it never sees a VJP rule); `sp` is the sympy module, imported only when a check runs.
  * Pointwise ops take sympy scalars and return one expression: the check lets one symbol
    stand for every element of a leaf, so one derivative per leaf covers an array of any size.
  * Every other op takes numpy object arrays of its inputs' shapes and returns one of its
    output's shape. An entry is a Python float (a constant at the check's point) or a sympy
    expression; `symforms` holds the reductions, maps and matmul that keep the float part in
    float arithmetic. These forms also receive the internal params and `_at`, the inputs'
    numbers at the check's point, for choices that are constants there (cross_entropy's
    class indices, a shift that keeps exp() finite); never to compute a derivative.
  * Constructors return their numbers (the compiler folds them into constants anyway).
  * An input whose rule is None (detach) is a constant to the check: the builder puts the
    input's value there, so no derivative flows through it, as in autograd.
- `torch`: the PyTorch backward-node name: a str, or a function of the `Site` (which inputs
  are constants, the params, the operands' ranks) for ops such as pow and matmul.
- `family`: the table file the op belongs to (elementwise, reduction, linalg, shape, loss,
  constructor); the help groups ops by it. It decides nothing else:
- `pointwise`: output element k depends only on element k of each (broadcast) input. The
  engine's diagonal Jacobian and the symbolic check's one-symbol-per-leaf derivation rely on
  it, and read it nowhere but here.
- `sympy_terms(sp, *args, **params)`: for an op whose sympy form is a sum, the terms whose
  `sp.Add` is that form (add: x, y; sub: x, -y). The symbolic check gathers a chain of sums
  into one `Add` call with them (sympy re-flattens a sum at each `+`: quadratic in the terms).
- `syntax` / `named`: the operator that reaches the op ("+", "x[i]"), and whether it is
  also callable by name (`add(x, y)` is; `index` is reached only by `x[i]`).
- `kinks`: `Kink` records, each beside the rule whose convention it states: where the op is
  not differentiable and the words for PyTorch's convention there. The checks name them.
- `random`: draws from the `--seed` generator (a program using it is never cached).
- `at_site(Site) -> dict`: internal params fixed by the call site, for ops whose torch kernel
  depends on it (`x ** 0.5` with a number exponent is torch's pow.Tensor_Scalar, computed as
  sqrt). An optional array input left out is listed in the internal param `_absent` (torch's
  clamp with min only is another rule than clamp with both bounds, even where max is +inf).
- `cost(out_size, in_shapes)`: element operations of one forward, for the numeric check's
  budget (default: the output's size).
- `samples`: `(expression, {var: shape}, (low, high))` triples for the table-driven tests.
- `jvp(tangents, ans, *arrays, **params)`: torch's forward-mode formula (derivatives.yaml's
  `result:`), declared only where it is not the transpose of the VJP rule (at ties, NaNs,
  the float range's edges); `tangents` holds one per array input, None where no tangent
  flows. J·u and Taylor (engine/forward_mode.py) read it; every other op's tangent is its VJP
  rule transposed. HVP and Hessian never read it: they are torch's double backward.
- `keeps_zero`: torch has a ZeroTensor kernel for the op (add, sub, mul, div and the views):
  a missing tangent, which torch's forward mode holds as an efficient zero, comes out of it
  as an efficient zero again; any other op turns it into real zeros (0, or -0.0 through
  neg), which the next order of a nested jacfwd differentiates (engine/forward_mode.py's
  Nested). Checked with torch 2.13: `torch._efficientzerotensor(3).neg()._is_zerotensor()`
  is False, `... * x` and `.reshape(...)` are True.
- `nested_jvp(tangents, ans, *arrays, **params)`: torch's forward-mode formula where it is
  the transposed VJP rule but for rounding at finite values (a number over x, which torch
  runs as reciprocal(x) * number), read by Nested alone, where a value is not finite and
  the formula's own zeros and infinities decide the next order; J·u and finite Taylor keep
  the transposed rule's numbers. None from it: the transposed rule.
- `ufuncs`: numpy ufuncs that compute this op besides its `forward` (a forward that is a
  ufunc counts by itself), so that a rule calling them on traced arrays records this op
  (engine/traced.py). A traced array's type defines `__gradcalc_traced__` (`traced(a)`
  asks): a rule runs on one only to be differentiated again, as torch's backward formulas
  run under GradMode (create_graph=True). The rules that take another route there say why:
  index's scatter (a traced array cannot be assigned into), prod_backward's zeros and
  logit's backward (torch checks GradMode), pow with a number exponent (torch
  differentiates pow, not its kernel).
- A rule whose torch formula is a backward function with a derivatives.yaml entry of its
  own (binary_cross_entropy_backward: its double backward is not the derivative of its
  formula) computes it through `recorded(op, ...)` with an `Op` of its entry's file that is
  not in OPS (no user can call it): on numpy arrays its forward, on traced ones one equation
  of it, whose own `vjps` are torch's double-backward formulas.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import GradcalcError


class Param:
    """One parameter of an op's signature (parse_sig). The records of this module are plain
    classes: a dataclass costs 0.3-1 ms to define, at the start of every process (issue 15,
    figures 1 and 2), and none of them is compared, hashed or printed."""

    __slots__ = ("name", "kind", "optional", "default", "kwonly")

    def __init__(self, name: str, kind: str, optional: bool = False, default: Any = None,
                 kwonly: bool = False):
        self.name = name
        # "array", "arrays" (variadic), "int", "ints" (variadic), "number", "bool"
        self.kind = kind
        self.optional, self.default = optional, default
        self.kwonly = kwonly   # after a bare "*" in the sig: by keyword only


def parse_sig(sig: str) -> tuple[Param, ...]:
    out = []
    kwonly = False
    for part in filter(None, (p.strip() for p in sig.split(","))):
        if part == "*":
            kwonly = True
            continue
        default, optional = None, False
        if "=" in part:
            part, d = part.split("=")
            named = {"None": None, "False": False, "True": True,
                     "inf": float("inf"), "-inf": float("-inf")}
            if d in named:
                default = named[d]
            else:
                default = float(d) if "." in d or "e" in d else int(d)
            optional = True
        if part.startswith("*"):
            name, _, kind = part[1:].partition(":")
            out.append(Param(name, "ints" if kind == "int" else "arrays"))
            continue
        name, _, kind = part.partition(":")
        kind = kind or "array"
        if kind.endswith("?"):
            kind = kind[:-1]
        out.append(Param(name, kind, optional, default, kwonly))
    return tuple(out)


class Kink:
    """A point where an op is not differentiable, and the derivative PyTorch 2.13 defines
    there. `where(*input values, **params)` is a mask that broadcasts to the op's output (or
    over its inputs, for a loss: then the whole node is flagged). `whole`, where given, marks
    the sites where PyTorch's convention defines every derivative through the node, beyond
    the one-sided range calculus allows (clamp with min == max == x)."""

    __slots__ = ("words", "where", "whole")

    def __init__(self, words: str, where: Callable, whole: Callable | None = None):
        self.words, self.where, self.whole = words, where, whole


class Site:
    """What a PyTorch node name may depend on: which inputs are constants, the params, and
    the inputs' ranks (matmul's name follows its operands' dimensions)."""

    __slots__ = ("consts", "params", "ranks")

    def __init__(self, consts: tuple = (), params: dict | None = None, ranks: tuple = ()):
        self.consts, self.ranks = consts, ranks
        self.params = {} if params is None else params


class Op:
    """One entry of the op table (the module's notes say what each field means)."""

    __slots__ = ("name", "sig", "forward", "vjps", "infer", "torch", "family", "sympy",
                 "sympy_terms", "samples", "hint", "doc", "pointwise", "syntax", "named",
                 "kinks", "random", "cost", "at_site", "ufuncs", "jvp", "keeps_zero",
                 "nested_jvp", "params")

    def __init__(self, name: str, sig: str, forward: Callable, vjps: Any, infer: Callable,
                 torch: Any, family: str, sympy: Callable | None = None,
                 sympy_terms: Callable | None = None, samples: tuple = (), hint: str = "",
                 doc: str = "", pointwise: bool = False, syntax: str = "", named: bool = True,
                 kinks: tuple = (), random: bool = False, cost: Callable | None = None,
                 at_site: Callable | None = None, ufuncs: tuple = (), jvp: Callable | None = None,
                 keeps_zero: bool = False, nested_jvp: Callable | None = None):
        self.name, self.sig, self.forward, self.vjps, self.infer = name, sig, forward, vjps, infer
        self.torch = torch                  # str, or Site -> str
        self.family = family                # the table file's family: elementwise, reduction, ...
        self.sympy = sympy
        self.sympy_terms = sympy_terms      # the terms of a form that is a sum (see above)
        self.samples = samples
        self.hint = hint                    # shown when the call is misused
        self.doc = doc
        self.pointwise = pointwise          # output element k reads element k of each input
        self.syntax = syntax                # the operator that reaches it ("+", "x[i]", ".T")
        self.named = named                  # callable by name, as f(x)
        self.kinks = kinks                  # Kink records
        self.random = random                # draws from the --seed generator
        self.cost = cost                    # (out_size, in_shapes) -> element operations
        self.at_site = at_site              # Site -> internal params the call site fixes
        self.ufuncs = ufuncs                # numpy ufuncs a rule may use for this op
        self.jvp = jvp                      # torch's forward-mode formula, where it is its own
        self.keeps_zero = keeps_zero        # torch's ZeroTensor kernel passes a zero tangent on
        self.nested_jvp = nested_jvp        # torch's forward formula, for the non-finite route
        self.params = parse_sig(sig)

    @property
    def array_params(self):
        return [p for p in self.params if p.kind in ("array", "arrays")]

    @property
    def variadic(self) -> bool:
        return any(p.kind == "arrays" for p in self.params)

    def vjp(self, i: int):
        if callable(self.vjps):
            return self.vjps(i)
        return self.vjps[i]

    def torch_name(self, site: Site) -> str:
        """PyTorch's backward-node name at one use of the op (sum() is SumBackward0,
        sum(dim=...) SumBackward1; A @ v is MvBackward0)."""
        if callable(self.torch):
            return self.torch(site)
        return self.torch

    def work(self, out_size: int, in_shapes) -> int:
        """Rough element operations of one forward (for the numeric check's budget)."""
        if self.cost is None:
            return out_size
        return self.cost(out_size, in_shapes)


OPS: dict[str, Op] = {}


def traced(a) -> bool:
    """Whether `a` is a traced array (engine/traced.py): the rule running on it is being
    recorded to be differentiated again, where torch's formulas see GradMode enabled."""
    return getattr(type(a), "__gradcalc_traced__", False)


def constant(a) -> bool:
    """Whether traced array `a` is a constant of its program (a number the user wrote), which
    torch's Python operators take as a Python scalar, not a tensor (`1 / x` is
    reciprocal(x) * 1)."""
    return getattr(a, "__gradcalc_constant__", False)


def recorded(op: Op, *arrays, **params):
    """`op.forward(*arrays, **params)`, or, when an input is traced, that call recorded as one
    equation of `op` (the tracer's `__gradcalc_record__`), to be differentiated by op's own
    rules rather than through the steps of its forward."""
    for a in arrays:
        if traced(a):
            return a.__gradcalc_record__(op, arrays, params)
    return op.forward(*arrays, **params)


def register(*ops: Op):
    for op in ops:
        assert op.name not in OPS, op.name
        OPS[op.name] = op


def call_error(op: Op, message: str) -> GradcalcError:
    return GradcalcError("call", f"{op.name}(): {message}")


def norm_dim(op_name: str, dim: int, ndim: int) -> int:
    """A dim as a negative axis (valid under leading batch axes); PyTorch's range rules,
    where a 0-d array accepts dim 0 and -1."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise GradcalcError(
            "call", f"{op_name}(): dim {dim} is out of range for a {ndim}-D array "
            f"(expected {-n}..{n - 1})")
    return dim - n if dim >= 0 else dim


def broadcast(op_name: str, *shapes):
    first = tuple(shapes[0]) if shapes else ()
    if all(tuple(s) == first for s in shapes[1:]):
        return first        # equal shapes (most ops): numpy's helper costs more than the op
    try:
        import numpy as np
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        shown = " and ".join(str(tuple(s)) for s in shapes)
        raise GradcalcError("shape", f"{op_name}: shapes {shown} cannot be broadcast together")


def elementwise_infer(op_name):
    def infer(shapes, params):
        return broadcast(op_name, *shapes), params
    return infer


from . import elementwise, reductions, linalg, shape, losses, constructors  # noqa: E402,F401
