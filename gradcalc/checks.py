"""The cross-checks of autograd's grads and Jacobian, and the verdict they share: symbolic
(symbolic.py: sympy, independent of the VJP rules) and numeric (numeric.py: central finite
differences); where the function is not differentiable, kinks.py.

A check reports {"passed", "max_abs_error", "max_rel_error", ...} as plain JSON-safe data;
it never raises for a disagreement (that is exit status 1, decided by the caller). At points
where the function is not differentiable (relu at 0, a max tie, clamp at a bound, sqrt at 0)
calculus and PyTorch's conventions legitimately part: such points are reported under
"nondifferentiable" with the value each method gave, and excused only when PyTorch's value
lies between the one-sided values (or the other method's value is undefined there). Nothing
here imports sympy.
"""
from __future__ import annotations

import math

import numpy as np

MAX_LISTED = 20                     # nondifferentiable points listed in a report
MAX_DISAGREEMENTS = 5               # disagreeing entries listed in a report


def default_tolerances(kind, dtype, rtol, atol):
    """Defaults: symbolic 1e-7/1e-10 (float64), numeric 1e-5/1e-7 (its own truncation and
    rounding are added per entry as slack). In float32 both expectations are still computed
    in float64 (at the float32 inputs), so what remains is autograd's float32 rounding:
    1e-4/1e-6 for both."""
    if dtype != "float64":
        r, a = 1e-4, 1e-6
    elif kind == "numeric":
        r, a = 1e-5, 1e-7
    else:
        r, a = 1e-7, 1e-10
    return (r if rtol is None else rtol), (a if atol is None else atol)


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


def agree(expected, actual, rtol, atol, scale=None, slack=None):
    """Entrywise (ok, abs_error, rel_error), the relative error taken against the larger of
    the two magnitudes. Two non-finite values of the same kind (both NaN, or infinities of
    one sign) agree. `scale` (e.g. the sum of |terms| behind a vᵀJ entry,
    or a function giving it, computed only if needed) widens the relative tolerance where a
    sum cancels; `slack` is an absolute error bound of the expectation (finite differences)."""
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


def _all_close(e, a, rtol, atol, slack, block=1 << 16):
    """(max_abs_error, max_rel_error) if every entry agrees, else None; in cache-sized
    blocks, so that a million-entry comparison allocates nothing large."""
    max_abs = max_rel = 0.0
    for i in range(0, e.size, block):
        j = i + block
        ok, diff, rel = agree(e[i:j], a[i:j], rtol, atol, None,
                              None if slack is None else slack[i:j])
        if not ok.all():
            return None
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float(rel.max()))
    return max_abs, max_rel


def compare(expected, actual, rtol, atol):
    """(passed, max_abs_error, max_rel_error) over all entries."""
    ok, diff, rel = agree(expected, actual, rtol, atol)
    if not diff.size:
        return True, 0.0, 0.0
    return bool(np.all(ok)), float(diff.max()), float(rel.max())


def run(kind, result, grads_once, *, rtol=None, atol=None, limits=None):
    if kind == "numeric":
        from .numeric import numeric
        try:
            return numeric(result, grads_once, rtol, atol)
        except MemoryError:
            return {"passed": None, "skipped": "the numeric check ran out of memory"}
        except Exception as exc:    # a check that cannot run must not cost the user the grads
            return {"passed": None, "skipped": f"the numeric check failed "
                                               f"({type(exc).__name__}: {str(exc)[:200]}); "
                                               "please report it"}
    from . import symbolic
    return symbolic.check(result, grads_once, rtol=rtol, atol=atol, limits=limits)


# ------------------------------------------------------------------ program structure
def ancestors(graph, out):
    """Ids of the nodes the output depends on, in graph order."""
    need = {out}
    for eq in reversed(graph.nodes[: out + 1]):
        if eq.id in need and eq.kind == "op":
            need.update(eq.inputs)
    return [i for i in range(out + 1) if i in need]


def is_elementwise_op(op) -> bool:
    return op.pointwise


def is_elementwise(graph, ids) -> bool:
    """True when every op the output depends on is elementwise (broadcasting allowed): each
    output element then depends on one element of each leaf."""
    return all(graph.nodes[i].kind != "op" or is_elementwise_op(graph.nodes[i].op) for i in ids)


def src_index(shape, out_shape):
    """For each output element, the flat index of the element of an operand of `shape`
    broadcast to `out_shape` that it reads."""
    n = math.prod(shape)
    return np.broadcast_to(np.arange(n).reshape(shape), out_shape)


def sum_to(v, shape):
    from .engine import sum_to as engine_sum_to
    return np.asarray(engine_sum_to(v, 0, (), tuple(shape)))


def values64(result):
    """Every node's value in float64 (finite differences and the symbolic evaluation in
    float32 would be noise)."""
    if result.graph.dtype == np.float64:
        return result.values
    from .engine import forward
    return forward(_as64(result.graph), lifted(result.graph), upto=result.output_id)


def lifted(graph):
    """Every leaf's and constant's value in float64 (so that ops compute in float64)."""
    if graph.dtype == np.float64:
        return {}
    return {eq.id: np.asarray(eq.value, dtype=np.float64) for eq in graph.nodes
            if eq.kind != "op"}


# ------------------------------------------------------------------ the verdict
def _index(shape, k):
    return [int(i) for i in np.unravel_index(int(k), shape)] if shape else []


class Tally:
    """Collects the comparisons of one check into its report."""

    def __init__(self, kind, rtol, atol, dtype, nan_ok=False):
        self.kind, self.rtol, self.atol = kind, rtol, atol
        # an autograd NaN may be IEEE's 0 * inf or inf - inf through a kink site or a
        # non-finite intermediate (sqrt(z) * 0 at z = 0): then it is excused, and listed
        self.nan_ok = nan_ok
        self.f32 = dtype == "float32"
        self.passed = True
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.disagreements, self.n_disagree = [], 0
        self.nondiff, self.n_nondiff = [], 0

    def _round(self, e):
        if not self.f32:
            return e
        with np.errstate(all="ignore"):    # autograd rounds to float32: so does the expectation
            return e.astype(np.float32).astype(np.float64)

    def add(self, leaf, what, expected, actual, shape, *, flagged=None, lo=None, hi=None,
            scale=None, slack=None, column=None, labeller=None, leaf_eq=None, index_map=None,
            quiet=None):
        """Compare `expected` with autograd's `actual` (same shape). `what` is "grad" (entries
        indexed like the leaf) or "jacobian". `flagged` marks entries at a nondifferentiable
        point, with the range [lo, hi] of the one-sided values there (NaN: undefined);
        `index_map(k)` gives the JSON index of flat entry k. For a Jacobian, `column` gives
        each entry's leaf element: autograd builds rows as VJPs with basis vectors, so in a
        column holding an infinite partial (or a flagged entry, where PyTorch's convention
        may be NaN) other entries legitimately come out NaN through a 0 * inf in some rule
        (as in torch.autograd.functional.jacobian). `quiet` marks flagged entries that are
        listed only if the two values differ: where the function itself is not finite."""
        e = self._round(np.asarray(expected, dtype=np.float64).reshape(-1))
        a = np.asarray(actual, dtype=np.float64).reshape(-1)
        if callable(scale):
            s = (lambda: np.asarray(scale(), dtype=np.float64).reshape(-1))
        else:
            s = None if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
        sl = None if slack is None else np.asarray(slack, dtype=np.float64).reshape(-1)
        if flagged is None or not np.any(flagged):
            quick = _all_close(e, a, self.rtol, self.atol, sl)
            if quick is not None:                 # everything agrees: only the maxima matter
                self.max_abs = max(self.max_abs, quick[0])
                self.max_rel = max(self.max_rel, quick[1])
                return
        ok, diff, rel = agree(e, a, self.rtol, self.atol, s, sl)
        if column is not None and not ok.all():
            # a column holding an infinite partial, or a point where the function or its
            # derivative is undefined (PyTorch's convention may be NaN there)
            column = np.asarray(column, dtype=np.int64).reshape(-1)
            bad = np.zeros(int(column.max()) + 1 if column.size else 0, bool)
            odd = ~np.isfinite(e)
            if flagged is not None:
                odd |= np.asarray(flagged, dtype=bool).reshape(-1)
            np.logical_or.at(bad, column, odd)
            zero_inf = np.isnan(a) & bad[column]
            ok = ok | zero_inf
            diff = np.where(zero_inf, 0.0, diff)
            rel = np.where(zero_inf, 0.0, rel)
        if self.nan_ok and not ok.all():
            ieee = np.isnan(a) & ~ok
            if ieee.any():          # (after the column rule, which names no point)
                ieee_flag = ieee if flagged is None else ieee & ~np.asarray(flagged).reshape(-1)
                flagged = ieee_flag if flagged is None else \
                    np.asarray(flagged).reshape(-1) | ieee_flag
                lo = np.where(ieee_flag, np.nan, np.nan if lo is None else
                              np.broadcast_to(np.asarray(lo, dtype=np.float64).reshape(-1),
                                              e.shape))
                hi = np.where(ieee_flag, np.nan, np.nan if hi is None else
                              np.broadcast_to(np.asarray(hi, dtype=np.float64).reshape(-1),
                                              e.shape))
                ieee_only = ieee_flag
            else:
                ieee_only = None
        else:
            ieee_only = None
        index_map = index_map or (lambda k: _index(shape, k))
        f = None if flagged is None else np.asarray(flagged).reshape(-1)
        if f is not None and f.any():
            lo = self._round(np.asarray(lo, dtype=np.float64).reshape(-1))
            hi = self._round(np.asarray(hi, dtype=np.float64).reshape(-1))
            with np.errstate(all="ignore"):
                tol = self.atol + self.rtol * np.maximum(np.abs(lo), np.abs(hi))
                inside = (a >= lo - tol) & (a <= hi + tol)
            # undefined: this method has no value there, or PyTorch's convention is NaN
            undefined = np.isnan(e) | np.isnan(lo) | np.isnan(hi) | np.isnan(a)
            excused = f & (ok | inside | undefined)
            q = None if quiet is None else np.asarray(quiet, dtype=bool).reshape(-1)
            listed = f if q is None else f & ~(q & ok)
            if what == "grad":
                for k in np.flatnonzero(listed):
                    self.n_nondiff += 1
                    if len(self.nondiff) >= MAX_LISTED:
                        continue
                    op, conv = labeller.label(leaf_eq, k) if labeller else (None, None)
                    if q is not None and q[k] and op is None:
                        conv = "the function's value is not finite here"
                    if ieee_only is not None and ieee_only[k]:
                        op, conv = None, ("IEEE arithmetic: 0 * inf = NaN through a kink or a "
                                          "non-finite value on the path, as in PyTorch")
                    rng = None if np.isnan(lo[k]) or np.isnan(hi[k]) else \
                        [jnum(lo[k]), jnum(hi[k])]
                    self.nondiff.append({"leaf": leaf, "index": index_map(k), "op": op,
                                         "convention": conv, "pytorch": jnum(a[k]),
                                         self.kind: jnum(e[k]), "range": rng})
            ok = ok | excused
            counted = ~f | ~ok
            diff, rel = diff[counted], rel[counted]
        if not ok.all():
            self.passed = False
            bad = np.flatnonzero(~ok)
            self.n_disagree += len(bad)
            for k in bad[: max(0, MAX_DISAGREEMENTS - len(self.disagreements))]:
                self.disagreements.append({"leaf": leaf, "in": what, "index": index_map(k),
                                           "autograd": jnum(a[k]), self.kind: jnum(e[k])})
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float(rel.max()))

    def report(self, **extra):
        out = {"passed": bool(self.passed), "max_abs_error": jnum(self.max_abs),
               "max_rel_error": jnum(self.max_rel)}
        out.update(extra)
        out["rtol"], out["atol"] = self.rtol, self.atol
        if self.n_nondiff:
            out["nondifferentiable"] = self.nondiff
            if self.n_nondiff > len(self.nondiff):
                out["nondifferentiable_total"] = self.n_nondiff
        if self.n_disagree:
            out["disagreements"] = self.disagreements
            if self.n_disagree > len(self.disagreements):
                out["disagreements_total"] = self.n_disagree
        return out


def jacobian_index(out_shape, leaf_shape, n_leaf):
    def index(k):
        o, l = divmod(int(k), max(n_leaf, 1))
        return _index(out_shape, o) + _index(leaf_shape, l)
    return index


def _tally_partials(tally, name, eq, g, jac, cot, d, flag, lo, hi, labeller, src, slack=None,
                    quiet=None):
    """Shared by both checks on elementwise programs: `d` holds, for each output element, its
    partial derivative by the one leaf element it reads (`src`); `slack` its error bound;
    `quiet` the flagged output elements where the function itself is not finite."""
    shape = eq.shape
    oshape = d.shape
    if labeller is not None and eq.id in labeller.whole:
        # the op's convention defines every derivative through it there (see WHOLE_NODE)
        flag = np.ones(oshape, bool)
        lo, hi = np.full(oshape, np.nan), np.full(oshape, np.nan)
    g_flag = g_lo = g_hi = g_quiet = None
    with np.errstate(all="ignore"):
        g_slack = None if slack is None else sum_to(np.abs(cot) * slack, shape)
        terms = cot * d
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
    tally.add(name, "grad", exp_g, g, shape, flagged=g_flag, lo=g_lo, hi=g_hi, scale=scale,
              slack=g_slack, labeller=labeller, leaf_eq=eq, quiet=g_quiet)
    if jac is not None:
        n, N = math.prod(shape), math.prod(oshape)
        rows, cols = np.arange(N), np.asarray(src).reshape(-1)

        def dense(v, fill=0.0):
            out = np.full((N, n), fill)
            out[rows, cols] = np.asarray(v).reshape(-1)
            return out
        tally.add(name, "jacobian", dense(d), jac.reshape(N, n), oshape + shape,
                  flagged=dense(flag, False).astype(bool), lo=dense(lo), hi=dense(hi),
                  slack=None if slack is None else dense(slack),
                  column=np.broadcast_to(np.arange(n), (N, n)),
                  index_map=jacobian_index(oshape, shape, n))


def _tally_columns(tally, name, eq, g, jac, cot, picks, cols, flags, los, his, labeller,
                   oshape, slack=None, quiet=None):
    """Shared by both checks on programs that mix elements: row r of `cols` is the column of
    the Jacobian for leaf element picks[r] (over every output element)."""
    n = eq.size
    c = np.asarray(cot, dtype=np.float64).reshape(1, -1)
    if labeller is not None and eq.id in labeller.whole:
        # the op's convention defines every derivative through it there (see WHOLE_NODE)
        flags = np.ones(cols.shape, bool)
        los = np.where(flags, np.nan, los)
        his = np.where(flags, np.nan, his)
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
    picks = np.asarray(picks, dtype=np.int64)
    got = np.asarray(g, dtype=np.float64).reshape(-1)[picks]

    def leaf_index(r):
        return _index(eq.shape, picks[int(r)])

    class _Lab:                           # flat entry r of this list is leaf element picks[r]
        @staticmethod
        def label(leaf_eq, r):
            return labeller.label(leaf_eq, int(picks[int(r)]))
    tally.add(name, "grad", exp_g, got, eq.shape, flagged=g_flag, lo=g_lo, hi=g_hi,
              scale=scale, slack=g_slack, labeller=_Lab, leaf_eq=eq, index_map=leaf_index,
              quiet=g_quiet)
    if jac is not None:
        N = math.prod(oshape)
        J = jac.reshape(N, n)[:, picks].T            # (picks, N) like cols

        def jindex(k):
            r, o = divmod(int(k), max(N, 1))
            return _index(oshape, o) + _index(eq.shape, picks[r])
        tally.add(name, "jacobian", cols, J, None, flagged=flags, lo=los, hi=his,
                  slack=slack, column=np.broadcast_to(np.arange(len(picks))[:, None], cols.shape),
                  index_map=jindex)


def _as64(graph):
    """The graph evaluated in float64 (finite differences in float32 would be noise). A
    fresh shallow copy each time: a cache keyed by id() could hand back a collected graph's."""
    if graph.dtype == np.float64:
        return graph
    import copy
    g = copy.copy(graph)
    g.dtype = np.dtype(np.float64)
    return g
