"""The elementwise symbolic check's derivatives at scale: sympy's `diff` of a sum visits only
the terms that hold the symbol (`Terms`), and a program cut into pieces (forms nested
deeper than symbolic.CUT_DEPTH stand as symbols) has its pieces' derivatives composed by
the chain rule, in reverse over the pieces (`Chain`).

Every derivative here is still sympy's, of the op table's forward forms; only their
product along the program is taken in numpy, with the kinks' one-sided ranges carried as
intervals. It is handed the check's session and never imports sympy.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .evaluator import evaluate_array


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
            d = sp.Add(*[t.diff(s) for t in terms])
        else:
            session.afford(form)
            d = sp.diff(form, s)
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


@dataclass
class Part:
    """A derivative over the output's elements on the way through the pieces: its values,
    the one-sided range [lo, hi] where a kink lies on the way (None: none yet), where the
    range stands (`flag`) and where float64 overflowed on the way (`unverifiable`)."""

    d: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    flag: np.ndarray | None = None
    unverifiable: np.ndarray | None = None

    def times(self, local):
        """This derivative times a piece's own (evaluator.evaluate_array's tuple), the
        ranges multiplied as intervals."""
        D, flag, lo, hi, unv = local
        with np.errstate(all="ignore"):
            d = self.d * D
            if self.flag is None and not flag.any():
                return Part(d, unverifiable=_or(self.unverifiable, unv))
            a_lo, a_hi = (self.d, self.d) if self.lo is None else (self.lo, self.hi)
            ends = (a_lo * lo, a_lo * hi, a_hi * lo, a_hi * hi)
            return Part(d, functools.reduce(np.minimum, ends), functools.reduce(np.maximum, ends),
                        _or(self.flag, flag), _or(self.unverifiable, unv))

    def plus(self, other):
        with np.errstate(all="ignore"):
            d = self.d + other.d
            if self.flag is None and other.flag is None:
                return Part(d, unverifiable=_or(self.unverifiable, other.unverifiable))
            lo = (self.d if self.lo is None else self.lo) + (other.d if other.lo is None
                                                              else other.lo)
            hi = (self.d if self.hi is None else self.hi) + (other.d if other.hi is None
                                                              else other.hi)
        return Part(d, lo, hi, _or(self.flag, other.flag),
                    _or(self.unverifiable, other.unverifiable))

    def result(self, oshape):
        """(D, flag, lo, hi, unverifiable) over the output's shape, as evaluate_array
        gives them: flagged only where the range is not the value itself."""
        D = np.broadcast_to(np.asarray(self.d, dtype=np.float64), oshape)
        unv = None if self.unverifiable is None else \
            np.array(np.broadcast_to(self.unverifiable, oshape), dtype=bool)
        if self.flag is None:
            return D, np.zeros(oshape, bool), D, D, unv
        lo = np.broadcast_to(self.lo, oshape)
        hi = np.broadcast_to(self.hi, oshape)
        flag = np.broadcast_to(self.flag, oshape) & ~((lo == D) & (hi == D))
        return D, flag, lo, hi, unv


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
        self.holds: dict = {}            # symbol -> the pieces whose forms hold it
        for k, f in enumerate(self.forms):
            session.afford(f)
            for s in f.free_symbols:
                self.holds.setdefault(s, []).append(k)
        self.adjoint = [None] * len(self.forms)
        self.adjoint[-1] = Part(np.float64(1.0))
        for k in reversed(range(len(derived.cuts))):
            self.adjoint[k] = self._through(derived.cuts[k][0])

    def _through(self, s):
        total = None
        for k in self.holds.get(s, ()):
            if self.adjoint[k] is None:
                continue
            local = evaluate_array(self.session, self.ev, self.terms.diff(self.forms[k], s),
                                   self.env, self.oshape, self.not_finite)
            p = self.adjoint[k].times(local)
            total = p if total is None else total.plus(p)
            self.session.tick()
        return total

    def partials(self, s):
        """(D, flag, lo, hi, unverifiable) of the output by the leaf symbol `s`."""
        p = self._through(s)
        return (p or Part(np.float64(0.0))).result(self.oshape)
