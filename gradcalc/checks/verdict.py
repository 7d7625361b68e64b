"""The verdict of one check: what each method found (`Partials`, one record per leaf) is
compared with autograd's grads and Jacobian and collected into the report of SPEC section 4.

Both methods feed the same `Verdict`, so they agree on tolerances, on what is excused at a
nondifferentiable point (PyTorch's value between the one-sided values, or a value that is
undefined there) and on how a report reads. A disagreement is data, never an exception;
nothing here imports sympy.
"""
from __future__ import annotations

import contextlib
import copy
import math
import threading
from functools import cached_property

import numpy as np

from ..engine.economy import all_finite
from . import rounding
from .context import Leaf, src_index, sum_to
from .kinks import Labeller, kink_sites, nan_may_arise

MAX_LISTED = 20                     # nondifferentiable points listed in a report
MAX_DISAGREEMENTS = 5               # disagreeing entries listed in a report
MAX_UNVERIFIABLE = 20               # unverifiable entries listed in a report
MAX_ROUNDING_PROBED = 100_000       # disagreeing entries held against autograd's rounding
BLOCK = 1 << 16                     # entries compared at a time (in cache): _all_close's
SMALL = 1 << 12                     # fewer entries than this are compared in fresh arrays
TINY = 64                           # at most this many (float64) are compared as Python floats
_KEPT: list = []                    # a set of work buffers kept for the process (_borrowed)
_KEPT_LOCK = threading.Lock()


def jnum(v):
    """A float for JSON: non-finite numbers as the strings of SPEC section 8."""
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


class Partials:
    """What a method found for one leaf. Elementwise programs (`picks` None): `d` has the
    output's shape, each element the partial derivative by the one leaf element it reads.
    Otherwise row r of `d` is the Jacobian column of leaf element picks[r] (over the flat
    output). `flag` marks entries at a nondifferentiable point, with the range [lo, hi] of
    the one-sided values there (NaN: undefined); `slack` is an absolute error bound of `d`
    (finite differences); `quiet` marks flagged entries where the function itself is not
    finite (listed only if the values differ). `unverifiable` marks entries where the method's
own reference cannot be trusted (a float64 overflow in sympy's formula beyond what mpmath
refined, a finite difference lost below the spacing of the floats), for `reason`: there a
difference is reported as unverifiable, not as a disagreement."""

    __slots__ = ("leaf", "d", "flag", "lo", "hi", "slack", "quiet", "picks", "unverifiable",
                 "reason")

    def __init__(self, leaf: Leaf, d: np.ndarray, flag: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray, slack: np.ndarray | None = None, quiet: np.ndarray | None = None,
                 picks: np.ndarray | None = None, unverifiable: np.ndarray | None = None,
                 reason: str | None = None):
        self.leaf, self.d, self.flag, self.lo, self.hi = leaf, d, flag, lo, hi
        self.slack, self.quiet, self.picks = slack, quiet, picks
        self.unverifiable, self.reason = unverifiable, reason


class Entries:
    """One comparison: `expected` against autograd's `actual` (flattened alike); `what` is
    "grad", "jacobian", or a second-order answer ("jvp", "taylor", "hvp", "hessian");
    `index(k)` gives the JSON index of flat entry k and `label(k)` the op and convention
    behind it. `scale` (an array, or a function giving it, computed only if needed: the sum
    of |terms| behind a vᵀJ entry) widens the relative tolerance where a sum cancels. For a
    Jacobian, `column` gives each entry's leaf element: autograd builds rows as VJPs with
    basis vectors, so in a column holding an infinite partial (or a flagged entry, where
    PyTorch's convention may be NaN) other entries legitimately come out NaN
    through a 0 * inf in some rule (as in torch.autograd.functional.jacobian)."""

    __slots__ = ("leaf", "what", "expected", "actual", "index", "flagged", "lo", "hi", "scale",
                 "slack", "column", "label", "quiet", "unverifiable", "reason")

    def __init__(self, leaf, what, expected, actual, index, flagged=None, lo=None, hi=None,
                 scale=None, slack=None, column=None, label=None, quiet=None,
                 unverifiable=None, reason=None):
        self.leaf, self.what, self.expected, self.actual, self.index = (leaf, what, expected,
                                                                        actual, index)
        self.flagged, self.lo, self.hi, self.scale, self.slack = flagged, lo, hi, scale, slack
        self.column, self.label, self.quiet = column, label, quiet
        self.unverifiable, self.reason = unverifiable, reason

    def because(self, reason):
        """These entries with another reason (a copy)."""
        other = copy.copy(self)
        other.reason = reason
        return other


def agree(expected, actual, rtol, atol, scale=None, slack=None):
    """Entrywise (ok, abs_error, rel_error), the relative error taken against the larger of
    the two magnitudes. Two non-finite values of the same kind (both NaN, or infinities of
    one sign) agree. `scale` widens the relative tolerance where a sum cancels; `slack` is
    an absolute error bound of the expectation."""
    e = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    a = np.atleast_1d(np.asarray(actual, dtype=np.float64))
    with np.errstate(all="ignore"):
        diff = np.subtract(e, a)
        np.abs(diff, out=diff)
        mag = np.abs(e)
        tol = mag * rtol
        tol += atol
        if slack is not None:
            tol += slack
        ok = diff <= tol                   # NaN and inf differences fail here: see below
        if ok.all():                       # the usual case: everything finite and close
            np.maximum(mag, np.abs(a), out=mag)
            np.maximum(mag, 1e-300, out=mag)
            return ok, diff, np.divide(diff, mag, out=mag)
        same = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (e == a))
        diff = np.where(same, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        mag = np.where(np.isfinite(e), np.abs(e), 0.0)
        if scale is not None:
            sc = np.asarray(scale() if callable(scale) else scale, dtype=np.float64)
            mag = np.maximum(mag, np.where(np.isfinite(sc), sc, 0.0))
        tol = atol + rtol * mag
        if slack is not None:
            tol = tol + slack
        ok = diff <= tol
        rel = diff / np.maximum(np.maximum(np.abs(e), np.abs(a)), 1e-300)
        rel[diff == 0] = 0.0
        rel[np.isnan(rel)] = np.inf
    return ok, diff, rel


def _all_close(e, a, rtol, atol, slack, block=BLOCK):
    """(max_abs_error, max_rel_error) if every entry agrees, else None; the numbers of
    agree(), in cache-sized blocks through buffers allocated once, so that a million-entry
    comparison allocates nothing large. Where no difference exceeds atol (the usual case)
    every entry agrees without computing its tolerance, and where none differs at all the
    relative errors are 0 without dividing."""
    max_abs = max_rel = 0.0
    n = min(block, e.size)
    if n == e.size < SMALL and slack is None:
        with np.errstate(all="ignore"):
            return _close(e, a, rtol, atol)
    diff, mag, tmp, ok = np.empty(n), np.empty(n), np.empty(n), np.empty(n, bool)
    with np.errstate(all="ignore"):
        for i in range(0, e.size, block):
            eb, ab = e[i:i + block], a[i:i + block]
            k = eb.size
            d, m, t = diff[:k], mag[:k], tmp[:k]
            np.subtract(eb, ab, out=d)
            np.abs(d, out=d)
            top = float(d.max())
            np.abs(eb, out=m)
            if not (top <= atol and slack is None):     # NaN: compared, and fails
                np.multiply(m, rtol, out=t)
                t += atol
                if slack is not None:
                    t += slack[i:i + block]
                if not np.less_equal(d, t, out=ok[:k]).all():
                    return None
            max_abs = max(max_abs, top)
            if top > 0:
                np.abs(ab, out=t)
                np.maximum(m, t, out=m)
                np.maximum(m, 1e-300, out=m)
                max_rel = max(max_rel, float(np.divide(d, m, out=m).max()))
    return max_abs, max_rel


def _close(e, a, rtol, atol, work=None, beat=0.0):
    """_all_close() of one block without slack: the same arithmetic, entry by entry, in
    fresh arrays (a small comparison pays numpy's calls, not memory) or in the buffers
    `work` (three, of at least e.size: a large block allocates nothing). `beat` is a
    relative error found already: the relative errors are computed only where one may
    exceed it (else 0.0 stands for them), so the larger of the two is the same. Call it
    under np.errstate(all="ignore")."""
    n = e.size
    if not n:
        return 0.0, 0.0
    d, m, t = (np.empty(n), np.empty(n), np.empty(n)) if work is None else \
        (w[:n] for w in work)
    np.subtract(e, a, out=d)
    np.abs(d, out=d)
    top = float(d.max())
    if not top <= atol:                    # NaN: compared, and fails
        np.abs(e, out=m)
        np.multiply(m, rtol, out=t)
        t += atol
        if not (d <= t).all():
            return None
    if not top > 0:                        # none differs: no relative error to take
        return top, 0.0
    if beat > 0:
        # d / max(|e|, |a|, 1e-300) > beat only where d > beat * |e|, and then d is at
        # least beat * |e| rounded (to nearest: never past a float above the exact value)
        np.abs(e, out=m)
        may = d >= np.multiply(m, beat, out=t)
        if not may.any():
            return top, 0.0
        at = np.flatnonzero(may)
        return top, _max_rel(d[at], e[at], a[at])
    return top, _max_rel(d, e, a, m, t)


def _equal_finite(e, a, differs):
    """Whether the arrays e and a are equal entry for entry (in the bool buffer `differs`)
    and every entry is finite: then _close() gives (0.0, 0.0)."""
    return not np.not_equal(e, a, out=differs).any() and all_finite(e)


def reserve():
    """Keep a set of work buffers for the comparisons of the checks to come, allocated by
    the calling thread: the symbolic check compares in a worker thread, whose own malloc
    arena starts empty (the first check of a process at 10^6 elements faulted in 787 fresh
    pages, 0.5-1 ms), where the caller's reuses memory its calculation freed."""
    with _KEPT_LOCK:
        if not _KEPT:
            _KEPT.append(tuple(np.empty(BLOCK) for _ in range(4)))


@contextlib.contextmanager
def _borrowed(n):
    """Four float arrays of at least `n` entries for one comparison: the kept set (of BLOCK
    entries) while no other comparison has it, given back after; else new ones."""
    work = None
    if n <= BLOCK:
        with _KEPT_LOCK:
            work = _KEPT.pop() if _KEPT else None
    if work is None:
        work = tuple(np.empty(max(n, BLOCK)) for _ in range(4))
    try:
        yield work
    finally:
        if work[0].size == BLOCK:
            with _KEPT_LOCK:
                if not _KEPT:
                    _KEPT.append(work)


def _close_floats(e, a, rtol, atol):
    """_close() of lists of Python floats: the same arithmetic (a float's -, abs, * and /
    are IEEE's, as numpy's are), a NaN anywhere failing as it fails there."""
    d = [abs(x - y) for x, y in zip(e, a)]
    total = sum(d)
    if total != total:                  # a NaN (the differences are >= 0 or NaN)
        return None
    top = max(d, default=0.0)
    if not top <= atol and not all([x <= abs(y) * rtol + atol for x, y in zip(d, e)]):
        return None
    if not top > 0:
        return top, 0.0
    return top, max([x / max(abs(y), abs(z), 1e-300) for x, y, z in zip(d, e, a)])


def _max_rel(d, e, a, m=None, t=None):
    """The largest d / max(|e|, |a|, 1e-300), in the buffers m and t (else fresh arrays)."""
    m = np.abs(e, out=m)
    np.maximum(m, np.abs(a, out=t), out=m)
    np.maximum(m, 1e-300, out=m)
    return float(np.divide(d, m, out=m).max())


def _finite(found):
    """_close()'s errors, or None where the largest difference is infinite (a value that is
    not finite, which feed_usual leaves to feed())."""
    return None if found is None or found[0] == math.inf else found


def off_pattern_zero(J, on):
    """Whether every entry of autograd's Jacobian `J` besides `on` (one per row, the
    entries an elementwise program makes nonzero) is 0 (a NaN is not)."""
    return np.count_nonzero(J) == np.count_nonzero(on)


def _index(shape, k):
    return [int(i) for i in np.unravel_index(int(k), shape)] if shape else []


def flat_index(shape):
    """index(k) of the entries of an array of `shape`."""
    return lambda k: _index(shape, k)


def _flat(v, shape=None):
    return None if v is None else np.asarray(v, dtype=np.float64).reshape(-1) \
        if shape is None else np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), shape)


def _of(en) -> dict:
    """{"in": what} for a point of a second-order answer (a grad's points say nothing)."""
    return {} if en.what == "grad" else {"in": en.what}


class Verdict:
    """Collects the comparisons of one check (`kind` "symbolic" or "numeric") into its report.
    It finds the kink sites on the path itself, so both methods name them alike."""

    def __init__(self, kind, context, fallback):
        """`fallback` is the convention's words where no op on the path names a flagged
        point (the method's own reason, e.g. "the one-sided differences disagree")."""
        self.kind, self.context = kind, context
        self.rtol, self.atol = context.tolerances(kind)
        self.sites = kink_sites(context)
        self.labeller = Labeller(context, self.sites, fallback)
        self.f32 = context.dtype == "float32"
        self.cot = np.asarray(context.cotangent, dtype=np.float64)
        self._buffer = None
        self.passed = True
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.disagreements, self.n_disagree = [], 0
        self.nondiff, self.n_nondiff = [], 0
        self.unverifiable, self.n_unverifiable = [], 0
        self._reach = None                 # autograd's rounding span, when first needed

    @cached_property
    def nan_ok(self):
        """An autograd NaN may be IEEE's 0 * inf or inf - inf through a kink site or a
        non-finite intermediate (sqrt(z) * 0 at z = 0): then it is excused, and listed.
        Asked only once an entry disagrees (it reads every value on the path)."""
        return nan_may_arise(self.context, self.sites)

    # ---------------------------------------------------------------- what the methods feed
    def no_path(self, leaf: Leaf):
        """A leaf the output does not depend on: every derivative is exactly 0."""
        shape = leaf.eq.shape
        self.compare(Entries(leaf.name, "grad", np.zeros(shape), leaf.grad, flat_index(shape)))
        if leaf.jac is not None:
            self.compare(Entries(leaf.name, "jacobian", np.zeros(leaf.jac.shape), leaf.jac,
                                 flat_index(leaf.jac.shape)))

    def feed(self, p: Partials):
        if p.picks is None:
            self._feed_elementwise(p)
        else:
            self._feed_columns(p)

    def _scratch(self, shape):
        """An array of `shape` reused from leaf to leaf (each comparison ends before the next
        leaf is fed): a million-element temporary's pages are faulted in once a check."""
        if self._buffer is None or self._buffer.shape != tuple(shape):
            self._buffer = np.empty(shape)
        return self._buffer

    def _whole(self, p: Partials):
        """Where the op's convention defines every derivative through it (Kink.whole), every
        entry is convention: flagged, its range undefined."""
        if p.leaf.eq.id in self.labeller.whole:
            p.flag = np.ones(np.shape(p.d), bool)
            p.lo, p.hi = np.full(np.shape(p.d), np.nan), np.full(np.shape(p.d), np.nan)

    def _feed_elementwise(self, p: Partials):
        """The grad as vᵀ times the partials summed to the leaf's shape; the Jacobian is
        diagonal-like: output element o has one nonzero entry, in the column it reads."""
        self._whole(p)
        leaf, eq, cot = p.leaf, p.leaf.eq, self.cot
        shape, oshape = eq.shape, np.shape(p.d)
        flag, lo, hi, slack, quiet = p.flag, p.lo, p.hi, p.slack, p.quiet
        g_flag = g_lo = g_hi = g_quiet = g_unv = None
        if p.unverifiable is not None and p.unverifiable.any():
            g_unv = sum_to(p.unverifiable.astype(np.int64), shape) > 0
        with np.errstate(all="ignore"):
            g_slack = None if slack is None else sum_to(np.abs(cot) * slack, shape)
            terms = np.multiply(cot, p.d, out=self._scratch(oshape))
            exp_g = sum_to(terms, shape)
            if flag.any():
                lo_t = np.where(flag, np.minimum(cot * lo, cot * hi), terms)
                hi_t = np.where(flag, np.maximum(cot * lo, cot * hi), terms)
                g_flag = sum_to(flag.astype(np.int64), shape) > 0
                g_lo, g_hi = sum_to(lo_t, shape), sum_to(hi_t, shape)
                if quiet is not None:            # quiet only if every flag behind it is quiet
                    g_quiet = sum_to((flag & ~np.asarray(quiet)).astype(np.int64), shape) == 0

        def scale():
            with np.errstate(all="ignore"):
                return sum_to(np.abs(terms), shape)
        self.compare(Entries(leaf.name, "grad", exp_g, leaf.grad, flat_index(shape),
                             flagged=g_flag, lo=g_lo, hi=g_hi, scale=scale, slack=g_slack,
                             label=lambda k: self.labeller.label(eq, k), quiet=g_quiet,
                             unverifiable=g_unv, reason=p.reason))
        if leaf.jac is None:
            return
        n, N = math.prod(shape), math.prod(oshape)
        rows, cols = np.arange(N), np.asarray(src_index(shape, oshape)).reshape(-1)
        J = leaf.jac.reshape(N, n)
        on = J[rows, cols]
        if off_pattern_zero(J, on):
            # every entry off the pattern is 0 in both: they agree, add nothing to the
            # errors and are never listed, so the entries on it make the same comparison
            self.compare(Entries(leaf.name, "jacobian", p.d, on,
                                 lambda k: _index(oshape, k) + _index(shape, cols[int(k)]),
                                 flagged=flag, lo=lo, hi=hi, slack=slack, column=cols,
                                 unverifiable=None if g_unv is None else p.unverifiable,
                                 reason=p.reason))
            return

        def dense(v, fill=0.0):
            out = np.full((N, n), fill)
            out[rows, cols] = np.asarray(v).reshape(-1)
            return out

        def index(k):
            o, col = divmod(int(k), max(n, 1))
            return _index(oshape, o) + _index(shape, col)
        self.compare(Entries(leaf.name, "jacobian", dense(p.d), J, index,
                             flagged=dense(flag, False).astype(bool), lo=dense(lo),
                             hi=dense(hi), slack=None if slack is None else dense(slack),
                             column=np.broadcast_to(np.arange(n), (N, n)),
                             unverifiable=None if g_unv is None else
                             dense(p.unverifiable, False).astype(bool), reason=p.reason))

    def feed_usual(self, items, oshape) -> list:
        """feed() of elementwise leaves of the output's shape in the usual case: every
        partial finite, nothing flagged or unverifiable (the caller knows it: no kink site,
        a finite output, and the partials finite), so each grad is vᵀ times its partials
        entry by entry. `items` are (leaf, partials), `partials(lo, hi)` giving the leaf's
        partials of flat output elements lo..hi (None where a value on their way is not
        finite; a partial that is not finite makes an infinite or NaN difference, which
        fails here). Small leaves are compared all together in one block (so are
        Jacobians); large ones one at a time, BLOCK entries at a time, each block computed
        and compared while it is in cache.
        Returns the leaves fed: the errors are kept as feed() keeps them (the same
        arithmetic, entry by entry; a maximum does not depend on the order). It feeds none
        (and keeps nothing) if any value is not finite or any entry disagrees: the caller
        then feeds each leaf, which finds and lists what disagrees. A leaf of another shape,
        or one whose Jacobian has entries off its diagonal, is left to the caller."""
        N, cot = math.prod(oshape), self.cot
        if cot.shape == tuple(oshape):
            cot = cot.reshape(-1)
        elif cot.size == 1:
            cot = cot.reshape(())
        else:
            return []
        fed, jacs = [], 0                    # (leaf, partials, Jacobian diagonal or None)
        oshape, whole = tuple(oshape), self.labeller.whole
        for leaf, partials in items:
            if leaf.eq.shape != oshape or N == 0 or leaf.eq.id in whole:
                continue
            on = None
            if leaf.jac is not None:
                J = leaf.jac.reshape(N, N)
                on = J.diagonal()            # src_index of a leaf of the output's shape
                if not off_pattern_zero(J, on):
                    continue
                jacs += 1
            fed.append((leaf, partials, on))
        jac = jacs > 0
        if not fed or jacs not in (0, len(fed)):
            return []
        found = (self._usual_together if jac or N * len(fed) <= BLOCK else
                 self._usual_blocks)(fed, cot, N)
        if found is None:
            return []
        self.max_abs = max(self.max_abs, found[0])
        self.max_rel = max(self.max_rel, found[1])
        return [leaf for leaf, _, _ in fed]

    def _usual_together(self, fed, cot, N):
        """feed_usual()'s comparison of every leaf in one block (small ones, or Jacobians
        compared): the leaves' terms vᵀ·partials against their grads and, with Jacobians,
        their partials against the diagonals, as one set of entries: each comparison's
        largest errors are those of its entries, and one fails if any of them does. The
        largest errors, or None where a value is not finite or an entry disagrees."""
        k, jac = len(fed), fed[0][2] is not None
        if not self.f32 and (2 * k if jac else k) * N <= TINY:
            return self._usual_tiny(fed, cot, N)
        E = np.empty((2 * k if jac else k, N))          # what is expected: terms, partials
        A = np.empty(E.shape)                           # autograd's: grads, diagonals
        D = E[k:] if jac else np.empty((k, N))
        with np.errstate(all="ignore"):
            for r, (leaf, partials, on) in enumerate(fed):
                d = partials(0, N)
                if d is None:
                    return None
                D[r] = d                     # (a number: the same at every element)
                A[r] = leaf.grad.reshape(-1)
                if jac:
                    A[k + r] = on
            np.multiply(D, cot, out=E[:k])
            e, a = self._round(E).reshape(-1), A.reshape(-1)
            if E.size < SMALL:
                return _finite(_close(e, a, self.rtol, self.atol))
            with _borrowed(E.size) as work:
                return _finite(_close(e, a, self.rtol, self.atol, work[:3]))

    def _usual_tiny(self, fed, cot, N):
        """_usual_together() of a few float64 entries as Python floats (a JSON Lines
        request of three elements): the same IEEE operations entry by entry (_close_floats),
        where each of a dozen numpy calls would cost more than all the arithmetic."""
        c = cot.tolist() if cot.ndim else [float(cot)] * N
        expected, actual = [], []
        with np.errstate(all="ignore"):
            for leaf, partials, on in fed:
                d = partials(0, N)
                if d is None:
                    return None
                d = d.reshape(-1).tolist() if getattr(d, "ndim", 0) else [float(d)]
                if len(d) == 1:                 # a number: the same at every element
                    d *= N
                expected += [x * y for x, y in zip(d, c)]
                actual += leaf.grad.reshape(-1).tolist()
                if on is not None:
                    expected += d
                    actual += on.tolist()
        return _finite(_close_floats(expected, actual, self.rtol, self.atol))

    def _usual_blocks(self, fed, cot, N):
        """feed_usual()'s comparison of large leaves, BLOCK entries at a time, every leaf's
        block while v's is in cache (one pass over v for all the leaves), through buffers
        reused from block to block and kept from check to check (fresh ones would fault in
        new pages each time: _borrowed); a block whose relative errors cannot exceed the
        largest found so far does not compute them. A leaf's blocks are first tested for
        being equal to autograd's entry for entry (no error to take: two passes where the
        errors take three); from its first block that is not, the leaf's blocks are
        compared. The largest errors, or None where a value is not finite or an entry
        disagrees."""
        block = min(BLOCK, N)
        differs = np.empty(block, dtype=bool)
        top_abs, top_rel = self.max_abs, self.max_rel
        grads = [(leaf.grad.reshape(-1), partials) for leaf, partials, _ in fed]
        same = [True] * len(grads)              # each leaf's blocks equal so far
        with _borrowed(block) as work, np.errstate(all="ignore"):
            for lo in range(0, N, block):
                hi = min(lo + block, N)
                c = cot if cot.ndim == 0 else cot[lo:hi]
                terms = work[3][:hi - lo]
                for r, (grad, partials) in enumerate(grads):
                    d = partials(lo, hi)            # (a number: the same at every element)
                    if d is None:
                        return None
                    np.multiply(d, c, out=terms)
                    del d                   # (its memory: the next leaf's partials')
                    e, a = self._round(terms), grad[lo:hi]
                    if same[r]:
                        if _equal_finite(e, a, differs[:hi - lo]):
                            continue                # _close(): (0.0, 0.0)
                        same[r] = False
                    q = _finite(_close(e, a, self.rtol, self.atol, work[:3], top_rel))
                    if q is None:
                        return None
                    top_abs, top_rel = max(top_abs, q[0]), max(top_rel, q[1])
        return top_abs, top_rel

    def _feed_columns(self, p: Partials):
        """Row r of `p.d` is the column of the Jacobian for leaf element picks[r] (over every
        output element): the grad of that element is vᵀ times it."""
        self._whole(p)
        leaf, eq = p.leaf, p.leaf.eq
        cols, flags, los, his, slack, quiet = p.d, p.flag, p.lo, p.hi, p.slack, p.quiet
        picks = np.asarray(p.picks, dtype=np.int64)
        c = self.cot.reshape(1, -1)
        with np.errstate(all="ignore"):
            g_slack = None if slack is None else (np.abs(c) * slack).sum(axis=1)
            terms = c * cols if cols.size else np.zeros((len(picks), c.size))
            lo_t = np.where(flags, np.minimum(c * los, c * his), terms)
            hi_t = np.where(flags, np.maximum(c * los, c * his), terms)
            exp_g = terms.sum(axis=1)
            scale = np.abs(terms).sum(axis=1)
            g_flag = flags.any(axis=1) if flags.size else np.zeros(len(picks), bool)
            g_lo, g_hi = lo_t.sum(axis=1), hi_t.sum(axis=1)
            g_quiet = None if quiet is None else ~(flags & ~quiet).any(axis=1)
        unv = p.unverifiable
        g_unv = None if unv is None or not unv.any() else unv.any(axis=1)
        got = leaf.grad.reshape(-1)[picks]
        self.compare(Entries(leaf.name, "grad", exp_g, got,
                             lambda r: _index(eq.shape, picks[int(r)]),
                             flagged=g_flag, lo=g_lo, hi=g_hi, scale=scale, slack=g_slack,
                             label=lambda r: self.labeller.label(eq, int(picks[int(r)])),
                             quiet=g_quiet, unverifiable=g_unv, reason=p.reason))
        if leaf.jac is None:
            return
        oshape = self.context.out_shape
        N = math.prod(oshape)
        J = leaf.jac.reshape(N, eq.size)[:, picks].T            # (picks, N) like cols

        def index(k):
            r, o = divmod(int(k), max(N, 1))
            return _index(oshape, o) + _index(eq.shape, picks[r])
        self.compare(Entries(leaf.name, "jacobian", cols, J, index, flagged=flags, lo=los,
                             hi=his, slack=slack,
                             column=np.broadcast_to(np.arange(len(picks))[:, None], cols.shape),
                             unverifiable=None if g_unv is None else unv, reason=p.reason))

    # ---------------------------------------------------------------- the comparison
    def _round(self, e):
        if not self.f32:
            return e
        with np.errstate(all="ignore"):    # autograd rounds to float32: so does the expectation
            return e.astype(np.float32).astype(np.float64)

    def compare(self, en: Entries):
        """Compare one set of entries, listing the nondifferentiable points and the
        disagreements, and keeping the largest errors."""
        e = self._round(_flat(en.expected))
        a = _flat(en.actual)
        scale = en.scale
        s = (lambda: _flat(scale())) if callable(scale) else _flat(scale)
        sl = _flat(en.slack)
        flagged, lo, hi = en.flagged, en.lo, en.hi
        if (flagged is None or not np.any(flagged)) and en.unverifiable is None:
            quick = _all_close(e, a, self.rtol, self.atol, sl)
            if quick is not None:                 # everything agrees: only the maxima matter
                self.max_abs = max(self.max_abs, quick[0])
                self.max_rel = max(self.max_rel, quick[1])
                return
        ok, diff, rel = agree(e, a, self.rtol, self.atol, s, sl)
        if en.column is not None and not ok.all():
            ok, diff, rel = self._zero_times_inf(en, e, a, ok, diff, rel)
        ieee_only = None
        if not ok.all() and self.nan_ok:
            ieee = np.isnan(a) & ~ok
            if ieee.any():          # (after the column rule, which names no point)
                f = None if flagged is None else np.asarray(flagged).reshape(-1)
                ieee_only = ieee if f is None else ieee & ~f
                flagged = ieee_only if f is None else f | ieee_only
                lo = np.where(ieee_only, np.nan, np.nan if lo is None else _flat(lo, e.shape))
                hi = np.where(ieee_only, np.nan, np.nan if hi is None else _flat(hi, e.shape))
        f = None if flagged is None else np.asarray(flagged).reshape(-1)
        if f is not None and f.any():
            lo, hi = self._round(_flat(lo)), self._round(_flat(hi))
            with np.errstate(all="ignore"):
                tol = self.atol + self.rtol * np.maximum(np.abs(lo), np.abs(hi))
                inside = (a >= lo - tol) & (a <= hi + tol)
            # undefined: this method has no value there, or PyTorch's convention is NaN
            undefined = np.isnan(e) | np.isnan(lo) | np.isnan(hi) | np.isnan(a)
            excused = f & (ok | inside | undefined)
            q = None if en.quiet is None else np.asarray(en.quiet, dtype=bool).reshape(-1)
            listed = f if q is None else f & ~(q & ok)
            if en.what != "jacobian":      # a Jacobian repeats its grad's points
                self._list_nondiff(en, np.flatnonzero(listed), e, a, lo, hi, q, ieee_only)
            ok = ok | excused
            counted = ~f | ~ok
        else:
            counted = np.ones(ok.shape, bool)
        if en.unverifiable is not None and not ok.all():
            unv = np.asarray(en.unverifiable, dtype=bool).reshape(-1) & ~ok
            if en.what != "jacobian":      # a Jacobian repeats its grad's points
                self._list_unverifiable(en, np.flatnonzero(unv), e, a)
            ok = ok | unv
            counted &= ~unv
        if not ok.all() and en.what in ("grad", "jacobian"):
            within = self._within_rounding(en, e, np.flatnonzero(~ok))
            if within.size:
                if en.what != "jacobian":
                    self._list_unverifiable(en.because(rounding.ROUNDING),
                                            within, e, a)
                ok[within] = True
                counted[within] = False
        diff, rel = diff[counted], rel[counted]
        if not ok.all():
            self.passed = False
            bad = np.flatnonzero(~ok)
            self.n_disagree += len(bad)
            for k in bad[: max(0, MAX_DISAGREEMENTS - len(self.disagreements))]:
                self.disagreements.append({"leaf": en.leaf, "in": en.what,
                                           "index": en.index(k), "autograd": jnum(a[k]),
                                           self.kind: jnum(e[k])})
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float(rel.max()))

    def _within_rounding(self, en, e, bad):
        """The entries of `bad` whose reference lies within the reach of autograd's own
        rounding (rounding.py), computed once per check and only when something disagrees."""
        if self._reach is None:
            self._reach = rounding.reach(self.context)
        span = self._reach.get((en.leaf, en.what))
        if span is None or len(bad) > MAX_ROUNDING_PROBED:
            return bad[:0]
        lo, hi = (x.reshape(-1) for x in span)
        at = np.array([np.ravel_multi_index(tuple(en.index(k)), span[0].shape) if span[0].ndim
                       else 0 for k in bad], dtype=np.int64)
        tol = self.atol + self.rtol * np.maximum(np.abs(lo[at]), np.abs(hi[at]))
        with np.errstate(invalid="ignore"):
            inside = (e[bad] >= lo[at] - tol) & (e[bad] <= hi[at] + tol) & (lo[at] < hi[at])
        return bad[inside]

    @staticmethod
    def _zero_times_inf(en, e, a, ok, diff, rel):
        """In a Jacobian column holding an infinite partial or a point where the function or
        its derivative is undefined, a NaN of autograd is IEEE's 0 * inf: it agrees."""
        column = np.asarray(en.column, dtype=np.int64).reshape(-1)
        bad = np.zeros(int(column.max()) + 1 if column.size else 0, bool)
        odd = ~np.isfinite(e)
        if en.flagged is not None:
            odd |= np.asarray(en.flagged, dtype=bool).reshape(-1)
        np.logical_or.at(bad, column, odd)
        zero_inf = np.isnan(a) & bad[column]
        return (ok | zero_inf, np.where(zero_inf, 0.0, diff), np.where(zero_inf, 0.0, rel))

    def _list_nondiff(self, en, listed, e, a, lo, hi, quiet, ieee_only):
        for k in listed:
            self.n_nondiff += 1
            if len(self.nondiff) >= MAX_LISTED:
                continue
            op, conv = en.label(k) if en.label else (None, None)
            if quiet is not None and quiet[k] and op is None:
                conv = "the function's value is not finite here"
            if ieee_only is not None and ieee_only[k]:
                op, conv = None, ("IEEE arithmetic: 0 * inf = NaN through a kink or a "
                                  "non-finite value on the path, as in PyTorch")
            rng = None if np.isnan(lo[k]) or np.isnan(hi[k]) else [jnum(lo[k]), jnum(hi[k])]
            self.nondiff.append({"leaf": en.leaf, "index": en.index(k), "op": op,
                                 "convention": conv, "pytorch": jnum(a[k]),
                                 self.kind: jnum(e[k]), "range": rng, **_of(en)})

    def _list_unverifiable(self, en, listed, e, a):
        for k in listed:
            self.n_unverifiable += 1
            if len(self.unverifiable) < MAX_UNVERIFIABLE:
                self.unverifiable.append({"leaf": en.leaf, "index": en.index(k),
                                          "reason": en.reason, "pytorch": jnum(a[k]),
                                          self.kind: jnum(e[k]), **_of(en)})

    def report(self, **extra):
        out = {"passed": bool(self.passed), "max_abs_error": jnum(self.max_abs),
               "max_rel_error": jnum(self.max_rel)}
        out.update(extra)
        out["rtol"], out["atol"] = self.rtol, self.atol
        if self.n_nondiff:
            out["nondifferentiable"] = self.nondiff
            if self.n_nondiff > len(self.nondiff):
                out["nondifferentiable_total"] = self.n_nondiff
        if self.n_unverifiable:
            out["unverifiable"] = self.unverifiable
            if self.n_unverifiable > len(self.unverifiable):
                out["unverifiable_total"] = self.n_unverifiable
        if self.n_disagree:
            out["disagreements"] = self.disagreements
            if self.n_disagree > len(self.disagreements):
                out["disagreements_total"] = self.n_disagree
        return out
