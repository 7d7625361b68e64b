"""Evaluates sympy trees over numpy: the symbolic check's own evaluator (no lambdify, whose
cold start costs ~100 ms and many imports), its mpmath refinement of a single point, and the
printing of a derivative for the report.

It walks a derivative once per shared subtree, over arrays (elementwise programs: every
element at once) or numpy scalars (IEEE arithmetic: 1/0 is inf, not ZeroDivisionError),
and marks where a discontinuous function sits on its switch (Heaviside(0), sign(0), a tie
of an inequality), so the check can re-evaluate with the tie resolved each way. It knows
the functions the op table's forms and their derivatives produce; anything else is
Unsupported (the check reports why it skipped). A smooth derivative also compiles to a
`Tape` (the same numpy calls, replayed without the tree: a million elements block by block,
or the requests of a JSON Lines stream). It is handed the check's session (sympy as `sp`,
and `tick()`, the budget's checkpoint) and never imports sympy itself.
"""
from __future__ import annotations

import functools
import math
import operator

import numpy as np

from ..engine.economy import all_finite

MAX_REFINE = 32                 # non-finite float64 entries re-evaluated with mpmath
MAX_FORMULA_NODES = 400         # a longer derivative is not printed ("derivatives": null)
# Where float64 overflows on the way to a derivative, the check's float reference cannot be
# trusted, and a float64 implementation (PyTorch's) may round away from the exact value
# (logsumexp at [1e308, 1e308]: 1 and 1, exactly 1/2 and 1/2): the point is refined in
# mpmath, and a value that still differs is reported as unverifiable, not as a disagreement
OVERFLOW = ("float64 overflows in the derivative's formula here: the exact value (mpmath) "
            "and a float64 implementation's may differ")


class Unsupported(Exception):
    """The check cannot be run on this program; the message says why (reported as skipped)."""


def _erf(x):
    if np.ndim(x) == 0:
        return np.float64(math.erf(float(x)))       # numpy scalars: IEEE division later
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def _add(*v):
    return functools.reduce(operator.add, v)


def _mul(*v):
    return functools.reduce(operator.mul, v)


# sympy head (by its name in the sympy namespace) -> numpy function of the evaluated
# arguments: the smooth ones; stored.py evaluates kept derivations with the same functions
SMOOTH = {
    "Add": _add, "Mul": _mul,
    "exp": np.exp, "log": lambda x, b=None: np.log(x) if b is None else np.log(x) / np.log(b),
    "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "cot": lambda x: 1 / np.tan(x), "sec": lambda x: 1 / np.cos(x),
    "csc": lambda x: 1 / np.sin(x),
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "acot": lambda x: np.arctan(1 / x), "atan2": np.arctan2,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "coth": lambda x: 1 / np.tanh(x), "sech": lambda x: 1 / np.cosh(x),
    "csch": lambda x: 1 / np.sinh(x),
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "erf": _erf, "erfc": lambda x: 1 - _erf(x),
    "Abs": np.abs, "floor": np.floor, "ceiling": np.ceil,
    # of a real argument (a NaN stands for a complex value here)
    "re": lambda x: x, "im": lambda x: np.where(np.isnan(x), np.nan, 0.0),
    "arg": lambda x: np.where(x > 0, 0.0, np.where(x < 0, np.pi, np.nan)),
    "Max": lambda *v: functools.reduce(np.maximum, v),
    "Min": lambda *v: functools.reduce(np.minimum, v),
}

# the powers with a cheaper (and more exact) numpy form than np.power, by pow_kind
POWERS = {
    "inv": lambda b, x: 1.0 / b,
    "square": lambda b, x: b * b,
    "sqrt": lambda b, x: np.sqrt(b),
    "rsqrt": lambda b, x: 1.0 / np.sqrt(b),
    None: lambda b, x: np.power(np.asarray(b, dtype=np.float64), x),
}


def pow_kind(sp, exponent):
    """Which of POWERS evaluates a power with this sympy exponent."""
    if exponent == -1:
        return "inv"
    if exponent == 2:
        return "square"
    if exponent == sp.Rational(1, 2):
        return "sqrt"
    if exponent == sp.Rational(-1, 2):
        return "rsqrt"
    return None


@functools.lru_cache(maxsize=4)
def _table(sp):
    """sympy head -> numpy function of the evaluated arguments (the smooth ones)."""
    return {getattr(sp, name): f for name, f in SMOOTH.items()}


@functools.lru_cache(maxsize=4)
def _heads(sp):
    """sympy head -> its name in SMOOTH (a tape's node)."""
    return {getattr(sp, name): name for name in SMOOTH}


class Evaluator:
    """Evaluates sympy trees over numpy values of their symbols (arrays or floats), walking
    each shared subtree once (memo) and without recursion.

    Each value comes with a mask of "tie candidates": elements where a function that is
    discontinuous in its argument sits exactly on its switch (Heaviside(0), sign(0),
    DiracDelta(0), an inequality between equal sides). There sympy's choice (Heaviside(0) =
    1/2) is one convention among several: `ties=0` or `ties=1` re-evaluates with the switch
    resolved each way, which spans the one-sided values."""

    _REL = None

    def __init__(self, session, env, ties=None):
        self.session, self.sp, self.env, self.ties = session, session.sp, env, ties
        self.memo: dict = {}
        self.lost: dict = {}         # expr -> mask where float64 overflowed on its way, or None
        self.table = _table(session.sp)
        sp = session.sp
        self.rel = {sp.StrictGreaterThan: operator.gt, sp.GreaterThan: operator.ge,
                    sp.StrictLessThan: operator.lt, sp.LessThan: operator.le}
        self.eqrel = {sp.Equality: operator.eq, sp.Unequality: operator.ne}
        # heads whose values are truth values or condition pairs, not numbers
        self._logic = (sp.Piecewise, sp.ITE, sp.And, sp.Or, sp.Not, sp.Xor,
                       sp.Heaviside, sp.DiracDelta, *self.rel, *self.eqrel)

    def evaluate(self, expr):
        """(value, candidate mask or None)."""
        memo = self.memo
        if expr in memo:
            return memo[expr]
        stack = [expr]
        steps = 0
        with np.errstate(all="ignore"):
            while stack:
                e = stack[-1]
                if e in memo:
                    stack.pop()
                    continue
                if isinstance(e, (self.sp.Derivative, self.sp.Subs)):
                    raise Unsupported(
                        f"sympy left the derivative of {type(e.args[0]).__name__}() "
                        "unevaluated (it cannot tell that its argument is real)")
                pending = [a for a in e.args if a not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                stack.pop()
                memo[e] = self._node(e)
                self._track_overflow(e)
                steps += 1
                if steps % 512 == 0:
                    self.session.tick()
        return memo[expr]

    def bind(self, sym, expr):
        """Let the symbol `sym` stand for `expr`: its value (in the environment, for the
        tie evaluators and mpmath too), its tie candidates and where it overflowed."""
        self.memo[sym] = self.evaluate(expr)
        self.env[sym] = self.memo[sym][0]
        self.lost[sym] = self.lost.get(expr)

    def overflowed(self, expr):
        """Where the float64 value of an evaluated `expr` passed through an overflow (a
        non-finite value from finite arguments: exp(800), x**2 at 1e300), or None: there
        the value may be wrong although finite (1e300/sqrt(inf) is 0), so the check refines
        it in mpmath or calls it unverifiable."""
        return self.lost.get(expr)

    def _track_overflow(self, e):
        lost = [self.lost.get(a) for a in e.args]
        lost = functools.reduce(_or, [m for m in lost if m is not None], None)
        v = self.memo[e][0]
        if e.args and not isinstance(v, tuple) and not isinstance(e, self._logic):
            bad = ~np.isfinite(np.asarray(v, dtype=np.float64))
            if bad.any():                 # the usual case, all finite, costs one pass
                for a in e.args:
                    if not isinstance(self.memo[a][0], tuple):
                        bad = bad & np.isfinite(np.asarray(self.memo[a][0], dtype=np.float64))
                if bad.any():
                    lost = _or(lost, bad)
        self.lost[e] = lost

    def _node(self, e):
        sp = self.sp
        if not e.args:
            return self._atom(e), None
        got = [self.memo[a] for a in e.args]
        vals = [g[0] for g in got]
        cands = [g[1] for g in got if g[1] is not None]
        cand = functools.reduce(np.logical_or, cands) if cands else None
        head = type(e)
        f = self.table.get(head)
        if f is not None:
            return f(*vals), cand
        if head is sp.Pow:
            return self._pow(e, *vals), cand
        if head is sp.Heaviside:
            x = vals[0]
            h0 = (vals[1] if len(vals) > 1 else 0.5) if self.ties is None else float(self.ties)
            at = self._zero(e.args[0], x)
            v = np.where(at, h0, np.where(x > 0, 1.0, np.where(x < 0, 0.0, np.nan)))
            return v, _or(cand, at)
        if head is sp.sign:
            x = vals[0]
            at = self._zero(e.args[0], x)
            v = np.where(at, 0.0 if self.ties is None else (1.0 if self.ties else -1.0),
                         np.sign(x))
            return v, _or(cand, at)
        if head is sp.DiracDelta:
            at = self._zero(e.args[0], vals[0])
            return np.where(at, np.nan, 0.0), _or(cand, at)
        if head in self.rel:
            lhs, rhs = vals
            with np.errstate(all="ignore"):
                mag = np.abs(lhs) + np.abs(rhs)
                at = (lhs == rhs) | (np.isfinite(mag) & (np.abs(lhs - rhs) <= _TIE * mag))
            v = self.rel[head](lhs, rhs)
            v = np.where(at, bool(self.ties) if self.ties is not None else
                         self.rel[head](0.0, 0.0), v)
            return v, _or(cand, at)
        if head in self.eqrel:
            return self.eqrel[head](*vals), cand
        if head is sp.And:
            return functools.reduce(np.logical_and, vals), cand
        if head is sp.Or:
            return functools.reduce(np.logical_or, vals), cand
        if head is sp.Not:
            return np.logical_not(vals[0]), cand
        if head is sp.ITE:                        # nested Piecewise conditions
            return np.where(np.asarray(vals[0], dtype=bool), vals[1], vals[2]), cand
        if head is sp.Xor:
            return functools.reduce(np.logical_xor, vals), cand
        if head is _expr_cond_pair():
            return tuple(vals), cand
        if head is sp.Piecewise:
            out, taken = np.nan, False
            for v, c in vals:
                c = np.asarray(c, dtype=bool)
                out = np.where(c & ~np.asarray(taken), v, out)
                taken = np.logical_or(taken, c)
            return np.where(taken, out, np.nan), cand
        raise Unsupported(f"the symbolic check cannot evaluate sympy's {head.__name__}()")

    def _zero(self, arg, value):
        """Where `value` (of the expression `arg`) is zero up to the rounding of the sum it
        came from: sympy rearranges a tie's difference (Min(b, c) - a) into a sum whose
        terms cancel only to within a few ulps."""
        v = np.asarray(value, dtype=np.float64)
        if isinstance(arg, self.sp.Add):
            mag = sum(np.abs(np.asarray(self.memo[t][0], dtype=np.float64)) for t in arg.args)
            with np.errstate(all="ignore"):
                return (v == 0) | (np.isfinite(mag) & (np.abs(v) <= _TIE * mag))
        return v == 0

    def _pow(self, e, b, x):
        return POWERS[pow_kind(self.sp, e.args[1])](b, x)

    def _atom(self, e):
        sp = self.sp
        if e in self.env:
            return self.env[e]
        if e is sp.nan or e is sp.zoo:
            return np.float64(math.nan)
        if e is sp.oo:
            return np.float64(math.inf)
        if e is -sp.oo:               # the NegativeInfinity singleton
            return np.float64(-math.inf)
        if e is sp.I:                 # a complex value: NaN, as numpy's real arithmetic has it
            return np.float64(math.nan)
        if e is sp.true:
            return True
        if e is sp.false:
            return False
        if e.is_Number or isinstance(e, sp.NumberSymbol):
            return np.float64(float(e))
        raise Unsupported(f"the symbolic check cannot evaluate {type(e).__name__}")


class Tape:
    """A derivative compiled for the check's usual case (issue 15: JSON Lines repeats one
    program with new values; a million elements are taken block by block while they are in
    cache): its distinct subtrees in an order the Evaluator may take them, each the same
    numpy call on the same values, so the same numbers bit for bit, without walking sympy's
    tree again. Only smooth heads compile (SMOOTH's, Pow, numbers, the inputs' symbols): a
    tape has no ties to mark. It does not track overflow either: `run` gives None unless
    every step's value and the result are finite, and the caller then takes the Evaluator's
    way, which refines and flags (where every step is finite, nothing overflowed and there
    is nothing to flag).

    Its `nodes` are plain data, which stored.py keeps across processes as they are:
    ["in", k] the k-th input, ["num", x] a finite number, ["pow", POWERS kind, base,
    exponent] and [SMOOTH head, argument, ...], arguments by the position of an earlier
    node. Made from data, a malformed node raises ValueError."""

    def __init__(self, nodes, inputs):
        self.nodes, self.inputs = nodes, inputs     # inputs: what `run` is given, in order
        n_in = len(inputs)
        n_num = sum(1 for node in nodes if node[0] == "num")
        self.consts, self.steps, at = [], [], []    # at: each node's place among the values
        for node in nodes:
            head, *args = node
            if head == "in":
                (k,) = args
                _check_refs([k], n_in)
                at.append(k)
            elif head == "num":
                (x,) = args
                if not isinstance(x, (int, float)) or not math.isfinite(x):
                    raise ValueError(f"not a finite number: {x!r}")
                at.append(n_in + len(self.consts))
                self.consts.append(np.float64(x))
            else:
                if head == "pow":
                    kind, *args = args
                    f = POWERS.get(kind) if isinstance(kind, (str, type(None))) else None
                else:
                    f = SMOOTH.get(head) if isinstance(head, str) else None
                if f is None:
                    raise ValueError(f"not a smooth head: {head!r}")
                _check_refs(args, len(at))
                at.append(n_in + n_num + len(self.steps))
                self.steps.append((f, [at[r] for r in args]))
        if not at:
            raise ValueError("an empty tape")
        self.result = at[-1]                        # the derivative: the last node

    @classmethod
    def compile(cls, sp, d, env, tick=None):
        """The tape of `d` whose inputs are the symbols of `env` it reads, or None when it
        holds a head that is not smooth (Heaviside, a relation, Piecewise, ...) or an atom
        that is no finite number. `tick` is the budget's checkpoint, if any."""
        heads = _heads(sp)
        inputs, nodes, index = [], [], {}
        for e in postorder(d, index):
            if not e.args:
                if e in env:
                    node = ["in", len(inputs)]
                    inputs.append(e)
                elif (e.is_Number or isinstance(e, sp.NumberSymbol)) and e.is_finite:
                    try:
                        node = ["num", float(e)]
                    except OverflowError:       # an integer past float64's range
                        return None
                    if not math.isfinite(node[1]):
                        return None
                else:
                    return None
            elif type(e) is sp.Pow:
                node = ["pow", pow_kind(sp, e.args[1]), index[e.args[0]], index[e.args[1]]]
            elif type(e) in heads:
                node = [heads[type(e)], *(index[a] for a in e.args)]
            else:
                return None
            index[e] = len(nodes)
            nodes.append(node)
            if tick is not None and len(nodes) % 512 == 0:
                tick()
        return cls(nodes, inputs)

    def run(self, inputs, result=True):
        """The derivative's value at `inputs` (the inputs' values, in order), or None
        where some step's value or (unless `result` is False: the caller finds a
        non-finite result itself) the result is not finite. Run it under
        np.errstate(all="ignore"), as the Evaluator runs."""
        vals = list(inputs)
        vals.extend(self.consts)
        last = self.steps[-1] if self.steps and not result else None
        for step in self.steps:
            f, args = step
            v = f(*[vals[k] for k in args])
            if step is not last and not all_finite(v):
                return None
            vals.append(v)
        out = vals[self.result]       # a step's value was checked (the root is the last)
        return out if self.steps or not result or all_finite(out) else None


def postorder(root, done):
    """The subtrees of `root` that are not in `done`, each once and after its arguments,
    without recursion: the caller puts each one it takes into `done` (a walk of a shared
    tree in time linear in its distinct subtrees)."""
    stack = [root]
    while stack:
        e = stack[-1]
        if e in done:
            stack.pop()
            continue
        pending = [a for a in e.args if a not in done]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        yield e


def _check_refs(refs, n):
    """Each of `refs` a position below n (kept data is read, so never trusted)."""
    if not all(type(r) is int and 0 <= r < n for r in refs):
        raise ValueError(f"not positions below {n}: {refs!r}")


@functools.lru_cache(maxsize=1)
def _expr_cond_pair():
    from sympy.functions.elementary.piecewise import ExprCondPair
    return ExprCondPair


_TIE = 64 * np.finfo(np.float64).eps      # a difference this small next to its terms is 0


def _or(a, b):
    b = np.asarray(b, dtype=bool)
    return b if a is None else np.logical_or(a, b)


def refine(session, d, point):
    """`d` at `point` in mpmath's arithmetic (no float64 overflow); NaN if undefined."""
    sp = session.sp
    session.tick()
    try:
        # substituted, then evaluated: evalf(subs=...) turns an exact zero under a root
        # into a tiny number (1/sqrt(0) came out 6e79); 40-digit Floats keep powers cheap
        r = d.xreplace({s: sp.Float(v, 40) for s, v in point.items()}).evalf(30)
        return float(r)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return math.nan


def formula(session, d, display):
    """sympy's printing of a derivative with the leaves' names, or None when it involves
    something without a name (an array constant) or is too long to read."""
    if not all(s in display for s in d.free_symbols):
        return None
    if _tree_size(d, MAX_FORMULA_NODES) > MAX_FORMULA_NODES:
        return None
    session.tick()
    return session.sp.sstr(d.xreplace(display), full_prec=False)


def _tree_size(expr, cap):
    """Nodes of the printed tree (shared subtrees count each time), stopping past `cap`."""
    size, stack = 0, [expr]
    while stack and size <= cap:
        e = stack.pop()
        size += 1
        stack.extend(e.args)
    return size


def evaluate_array(session, ev, d, env, oshape, not_finite=None):
    """The derivative over every output element, with the flags of the check: kinks (a tie
    choice such as Heaviside(0) changes the value; [lo, hi] spans the choices) and singular
    points (non-finite although the inputs are finite, even in mpmath's arithmetic); and
    the points where float64 overflowed on the way: refined in mpmath up to MAX_REFINE, and
    unverifiable (see evaluator.OVERFLOW)."""
    val, cand = ev.evaluate(d)
    D = np.asarray(val, dtype=np.float64)
    finite = all_finite(D)
    D = np.broadcast_to(D, oshape)        # read-only: it may be a leaf's own values
    lo = hi = D
    flag = np.zeros(oshape, bool)
    if finite and ev.overflowed(d) is None and (cand is None or not np.any(cand)):
        return D, flag, lo, hi, None      # the usual case: nothing to flag or refine
    if cand is not None and np.any(cand):
        cand = np.broadcast_to(cand, oshape)
        d0 = np.broadcast_to(Evaluator(session, env, ties=0).evaluate(d)[0], oshape)
        d1 = np.broadcast_to(Evaluator(session, env, ties=1).evaluate(d)[0], oshape)
        kink = cand & ~((d0 == D) & (d1 == D))
        with np.errstate(invalid="ignore"):
            lo = np.where(kink, np.minimum(np.minimum(d0, d1), D), lo)
            hi = np.where(kink, np.maximum(np.maximum(d0, d1), D), hi)
        flag |= kink
    # not finite: refined in mpmath below, except at a kink, whose range (NaN: undefined, as
    # 0 * DiracDelta(0) of a second derivative) stands
    bad = np.array(~np.isfinite(D) & ~flag, dtype=bool)   # an array even when 0-d
    over = ev.overflowed(d)
    lost = unverifiable = None
    if over is not None:                  # through an overflow: refined, and unverifiable
        unverifiable = np.array(np.broadcast_to(over, oshape), dtype=bool)
        lost = unverifiable & ~bad        # finite, but perhaps wrong (1e300/sqrt(inf) = 0)
        bad |= lost
    if bad.any():
        syms = [s for s in d.free_symbols if s in env]
        for s in syms:
            bad &= np.broadcast_to(np.isfinite(env[s]), oshape)
        if not_finite is not None:            # no derivative to refine where f is not finite
            bad &= ~not_finite
        for k in np.flatnonzero(bad)[:MAX_REFINE]:
            point = {s: float(np.broadcast_to(env[s], oshape).flat[k]) for s in syms}
            v = refine(session, d, point)
            if math.isfinite(v):
                if not D.flags.writeable:
                    D, lo, hi = np.array(D), np.array(lo), np.array(hi)
                D.flat[k] = lo.flat[k] = hi.flat[k] = v
                bad.flat[k] = False
        if lost is not None:                  # finite past the refinement cap: unverifiable
            bad &= ~lost
        lo = np.where(bad, np.nan, lo)        # no derivative there: PyTorch's is convention
        hi = np.where(bad, np.nan, hi)
        flag |= bad
    return D, flag, lo, hi, unverifiable
