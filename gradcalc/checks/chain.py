"""The elementwise symbolic check's derivatives at scale: sympy's `diff` of a sum visits only
the terms that hold the symbol (`Terms`), and a program cut into pieces (forms nested
deeper than symbolic.CUT_DEPTH stand as symbols) has its pieces' derivatives composed by
the chain rule, in reverse over the pieces (`Chain`).

Every derivative here is still sympy's, of the op table's forward forms; only their
product along the program is taken in numpy, three ways where a tie lies on the way (as
sympy left it, and with every tie to one side, then the other), as the whole form's
derivative is evaluated. It is handed the check's session and never imports sympy.
"""
from __future__ import annotations

import numpy as np

from .evaluator import Evaluator, evaluate_array


class Terms:
    """sympy's derivatives of forms by one symbol. The derivative of a sum is the sum of its
    terms' derivatives (sympy's Add._eval_derivative, which differentiates every term, 0 for
    a term without the symbol): here only the terms holding the symbol are differentiated,
    so k leaves of a k-term sum cost k small diffs, not k diffs of the whole sum."""

    def __init__(self, session, cache):
        self.session, self.cache = session, cache
        self.index: dict = {}        # a sum -> {symbol: its terms holding it}

    def diff(self, form, s):
        key = (form, s)
        d = self.cache.get(key)
        if d is not None:
            return d
        sp, session = self.session.sp, self.session
        if isinstance(form, sp.Add):
            terms = self._holding(form).get(s, ())
            session.afford(*terms)
            d = sp.Add(*[scaled_diff(sp, t, s) for t in terms])
        else:
            session.afford(form)
            d = scaled_diff(sp, form, s)
        session.tick()
        self.cache[key] = d
        return d

    def _holding(self, form):
        by = self.index.get(form)
        if by is None:
            self.session.afford(form)
            by = self.index[form] = {}
            for t in form.args:
                for s in t.free_symbols:
                    by.setdefault(s, []).append(t)
        return by


def scaled_diff(sp, form, s):
    """sympy's derivative of `form` by `s`; of a number times a form, the number times the
    form's derivative (sympy's diff of a product takes its general Leibniz rule, which
    differentiates the number too: 0.2-0.3 ms a term, of the first check's few ms)."""
    if type(form) is sp.Mul:
        k, rest = form.as_coeff_Mul()
        if k is not sp.S.One:
            return k * sp.diff(rest, s)
    return sp.diff(form, s)


class Part:
    """A derivative over the output's elements on the way through the pieces: its values
    with sympy's choice at a tie (Heaviside(0) = 1/2), and where a tie lies on the way
    (`cand`), its values with every tie resolved to one side (`d0`) and to the other
    (`d1`), as the whole form's derivative is evaluated three ways (evaluate_array); and
    where float64 overflowed on the way (`unverifiable`)."""

    __slots__ = ("d", "d0", "d1", "cand", "unverifiable")

    def __init__(self, d: np.ndarray, d0: np.ndarray | None = None, d1: np.ndarray | None = None,
                 cand: np.ndarray | None = None, unverifiable: np.ndarray | None = None):
        self.d, self.d0, self.d1, self.cand, self.unverifiable = d, d0, d1, cand, unverifiable

    def _with(self, other, op):
        with np.errstate(all="ignore"):
            d = op(self.d, other.d)
            if self.cand is None and other.cand is None:
                return Part(d, unverifiable=_or(self.unverifiable, other.unverifiable))
            d0 = op(_side(self, 0), _side(other, 0))
            d1 = op(_side(self, 1), _side(other, 1))
        return Part(d, d0, d1, _or(self.cand, other.cand),
                    _or(self.unverifiable, other.unverifiable))

    def times(self, other):
        return self._with(other, np.multiply)

    def plus(self, other):
        return self._with(other, np.add)

    def result(self, oshape, inputs_finite, not_finite):
        """(D, flag, lo, hi, unverifiable) over the output's shape, as evaluate_array gives
        them: a kink where a tie's side changes the value, [lo, hi] spanning the sides; no
        derivative (NaN range) where it is not finite although the inputs and the function
        are (each piece's own non-finite values were refined in mpmath already)."""
        D = np.broadcast_to(np.asarray(self.d, dtype=np.float64), oshape)
        unv = None if self.unverifiable is None else \
            np.array(np.broadcast_to(self.unverifiable, oshape), dtype=bool)
        lo = hi = D
        flag = np.zeros(oshape, bool)
        with np.errstate(invalid="ignore"):
            if self.cand is not None:
                d0, d1 = np.broadcast_to(self.d0, oshape), np.broadcast_to(self.d1, oshape)
                flag = np.broadcast_to(self.cand, oshape) & ~((d0 == D) & (d1 == D))
                lo = np.where(flag, np.minimum(np.minimum(d0, d1), D), D)
                hi = np.where(flag, np.maximum(np.maximum(d0, d1), D), D)
            bad = ~np.isfinite(D) & ~flag & inputs_finite
            if not_finite is not None:
                bad &= ~not_finite
            if bad.any():
                flag = flag | bad
                lo, hi = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)
        return D, flag, lo, hi, unv


def _side(p, k):
    v = p.d0 if k == 0 else p.d1
    return p.d if v is None else v


def _or(a, b):
    if b is None:
        return a
    return b if a is None else (a | b)


class Chain:
    """The derivative of the output by each leaf through a program cut into pieces: each
    cut's symbol is bound to its form's value, and the output's derivative by every cut
    symbol (its adjoint) is composed once, in reverse; a leaf's derivative is then the sum,
    over the pieces holding its symbol, of the piece's adjoint times its own derivative."""

    def __init__(self, session, ev, derived, out, context, terms):
        self.session, self.ev, self.terms = session, ev, terms
        self.env = ev.env
        self.oshape, self.not_finite = context.out_shape, context.not_finite
        self.forms = [f for _, f in derived.cuts] + [out]
        for u, f in derived.cuts:
            ev.bind(u, f)
        self.sides = (Evaluator(session, self.env, ties=0), Evaluator(session, self.env, ties=1))
        finite = np.ones(self.oshape, bool)
        for s in derived.leaf_sym.values():
            finite &= np.broadcast_to(np.isfinite(self.env[s]), self.oshape)
        self.inputs_finite = finite
        self.holds: dict = {}            # symbol -> the pieces whose forms hold it
        for k, f in enumerate(self.forms):
            session.afford(f)
            for s in f.free_symbols:
                self.holds.setdefault(s, []).append(k)
        self.adjoint = [None] * len(self.forms)
        self.adjoint[-1] = Part(np.float64(1.0))
        for k in reversed(range(len(derived.cuts))):
            self.adjoint[k] = self._through(derived.cuts[k][0])

    def _local(self, form, s):
        """A piece's own derivative by `s` as a Part: refined where not finite (mpmath),
        and each way at its ties."""
        d = self.terms.diff(form, s)
        D, _, _, _, unv = evaluate_array(self.session, self.ev, d, self.env, self.oshape,
                                         self.not_finite)
        cand = self.ev.evaluate(d)[1]
        if cand is None or not np.any(cand):
            return Part(D, unverifiable=unv)
        d0, d1 = (ev.evaluate(d)[0] for ev in self.sides)
        return Part(D, d0, d1, cand, unv)

    def _through(self, s):
        total = None
        for k in self.holds.get(s, ()):
            if self.adjoint[k] is None:
                continue
            p = self.adjoint[k].times(self._local(self.forms[k], s))
            total = p if total is None else total.plus(p)
            self.session.tick()
        return total

    def partials(self, s):
        """(D, flag, lo, hi, unverifiable) of the output by the leaf symbol `s`."""
        p = self._through(s) or Part(np.float64(0.0))
        return p.result(self.oshape, self.inputs_finite, self.not_finite)
