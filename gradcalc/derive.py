"""A derivative without numbers: `gradcalc 'x*sin(x)**2'` with nothing bound.

When an expression names variables bound nowhere, each becomes a real scalar symbol, and
the output's partial derivatives are sympy's `diff` of the forward formula built from the
op table's sympy forms (simplified, as a calculator prints them). A `--claim 'x: FORMULA'`
worked out by hand is read by gradcalc's own parser (never sympify) and judged: sympy
proves the difference zero, or, failing a proof, the two are compared at sample points.
sympy is imported only here, and only when such a question is asked.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from .compile import Compiler, Graph
from .errors import GradcalcError, Limits, escape_text
from .parser import parse_program

SIMPLIFY_MAX_OPS = 400       # larger derivatives are printed as diff gives them
SAMPLE_POINTS = 12           # points of the numeric fallback for a claim
SAMPLE_RTOL = 1e-9


@dataclass
class Claim:
    leaf: str
    text: str
    right: bool | None = None
    how: str = ""            # "symbolic", "numeric", or why it could not be decided
    counterexample: dict | None = None

    def to_json(self) -> dict:
        return {"leaf": self.leaf, "claim": self.text, "right": self.right, "how": self.how,
                "counterexample": self.counterexample}


@dataclass
class Derivation:
    expression: str
    output: str                     # the forward formula, as sympy prints it
    derivatives: dict               # leaf -> formula text
    claims: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.right is not False for c in self.claims)

    def to_json(self) -> dict:
        return {"expression": self.expression, "output": self.output,
                "derivatives": dict(self.derivatives),
                "claims": [c.to_json() for c in self.claims]}


def free_names(text: str, limits: Limits) -> list[str]:
    """The names `text` uses but binds nowhere, in order of first use ([] for a program
    that can be computed as it stands, or one that is not valid: the calculation then
    reports its own errors)."""
    try:
        return _compile(text, limits)[1]
    except GradcalcError:
        return []


def derive(text: str, limits: Limits, claims=()) -> Derivation:
    """The partial derivatives of the output of `text` in its free names; `claims` are
    "NAME: FORMULA" strings to judge."""
    import sympy as sp
    graph, _ = _compile(text, limits)
    symbols = {n: sp.Symbol(n, real=True) for n in graph.leaf_order}
    y = _formula(sp, graph, symbols, text)
    derivatives = {n: _tidy(sp, sp.diff(y, s)) for n, s in symbols.items()}
    out = Derivation(text, str(y), {n: str(d) for n, d in derivatives.items()})
    for claim in claims:
        out.claims.append(_judge(sp, claim, derivatives, symbols, limits))
    return out


def _compile(text: str, limits: Limits) -> tuple[Graph, list]:
    """The graph with every free name a scalar leaf, and those names."""
    comp = Compiler(text, {}, limits=limits, free_scalars=True)
    graph = comp.program(parse_program(text, limits.max_depth))
    return graph, [n for n in graph.leaf_order if n in comp.bindings]


def _formula(sp, graph: Graph, symbols: dict, text: str):
    """The output as one sympy expression of the leaves' symbols, from the table's forms."""
    expr = {}
    for eq in graph.nodes[: graph.output + 1]:
        if eq.kind == "leaf":
            expr[eq.id] = symbols[eq.name]
        elif eq.kind == "const":
            expr[eq.id] = _constant(sp, eq.value) if eq.size == 1 and eq.shape == () else None
        elif not eq.op.pointwise or eq.op.sympy is None or any(
                eq.op.vjp(j) is None for j in range(len(eq.inputs))):
            raise GradcalcError(
                "usage", f"a derivative without numbers covers scalar formulas of the "
                         f"elementwise functions; {eq.op.name}() needs values: bind each "
                         f"variable, e.g. x=1.5", eq.pos).with_source(text)
        else:
            args = [expr[i] for i in eq.inputs]
            if any(a is None for a in args):
                raise GradcalcError("usage", "a derivative without numbers needs scalar "
                                             "constants, not arrays", eq.pos).with_source(text)
            expr[eq.id] = eq.op.sympy(sp, *args, **eq.params)
    return expr[graph.output]


def _constant(sp, value):
    v = float(np.asarray(value).reshape(()))
    if math.isnan(v):
        return sp.nan
    if math.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    if v == math.pi:
        return sp.pi
    if v == math.e:
        return sp.E
    if v.is_integer() and abs(v) < 2**53:
        return sp.Integer(int(v))
    r = sp.Rational(v).limit_denominator(1000)      # 0.5 -> 1/2, but only when exact
    return r if float(r) == v else sp.Float(v)


def _tidy(sp, d):
    """diff's own form or sympy's simplification of it, whichever is shorter (simplify
    rewrites sin(x)**2 + 2*x*sin(x)*cos(x) with double angles, no shorter to read)."""
    if sp.count_ops(d) > SIMPLIFY_MAX_OPS:
        return d
    s = sp.simplify(d)
    return s if sp.count_ops(s) < sp.count_ops(d) else d


def _judge(sp, claim: str, derivatives: dict, symbols: dict, limits: Limits) -> Claim:
    name, sep, formula = claim.partition(":")
    name, formula = name.strip(), formula.strip()
    if not sep or not name or not formula:
        raise GradcalcError("usage", f"--claim takes NAME: FORMULA, e.g. --claim 'x: 2*x', got "
                                     f"'{escape_text(claim)[:200]}'")
    if name not in derivatives:
        raise GradcalcError("usage", f"--claim: the expression has no variable '{escape_text(name)[:60]}'"
                                     f" (variables: {', '.join(derivatives)})")
    graph, _ = _compile(formula, limits)
    unknown = [n for n in graph.leaf_order if n not in symbols]
    if unknown:
        raise GradcalcError("usage", f"--claim for {name}: '{unknown[0]}' is not a variable of "
                                     "the expression")
    c = _formula(sp, graph, symbols, formula)
    out = Claim(name, formula)
    diff = sp.simplify(c - derivatives[name])
    if diff == 0:
        out.right, out.how = True, "symbolic"
        return out
    return _sampled(sp, out, c, derivatives[name], symbols)


def _sampled(sp, out: Claim, claim, truth, symbols: dict) -> Claim:
    """Compare at seeded sample points where both are finite (sympy could not prove it)."""
    rng = random.Random(0)
    syms = list(symbols.values())
    tried = 0
    for _ in range(10 * SAMPLE_POINTS):
        point = {s: sp.Float(rng.uniform(-3, 3)) for s in syms}
        a, b = complex(claim.evalf(subs=point)), complex(truth.evalf(subs=point))
        if not all(map(math.isfinite, (a.real, a.imag, b.real, b.imag))) or a.imag or b.imag:
            continue
        tried += 1
        if abs(a.real - b.real) > SAMPLE_RTOL * max(1.0, abs(a.real), abs(b.real)):
            out.right, out.how = False, "numeric"
            out.counterexample = {"at": {str(s): float(v) for s, v in point.items()},
                                  "claim": a.real, "derivative": b.real}
            return out
        if tried == SAMPLE_POINTS:
            break
    if tried == 0:
        out.how = "undecided: no sample point where both are finite"
        return out
    out.right, out.how = True, f"numeric (equal at {tried} points; sympy found no proof)"
    return out
