"""Cross-checks of autograd's grads and Jacobian: symbolic (symbolic.py: sympy, independent of
the VJP rules) and numeric (here: central finite differences), and the verdict both share.

A check reports {"passed", "max_abs_error", "max_rel_error", ...} as plain JSON-safe data;
it never raises for a disagreement (that is exit status 1, decided by the caller). At points
where the function is not differentiable (relu at 0, a max tie, clamp at a bound, sqrt at 0)
calculus and PyTorch's conventions legitimately part: such points are detected, reported
under "nondifferentiable" with the value each method gave, and excused only when PyTorch's
value lies between the one-sided values (or the other method's value is undefined there).
Nothing here imports sympy.
"""
from __future__ import annotations

import math

import numpy as np

# Numeric check: at most this many leaf elements are perturbed one at a time (programs that
# mix elements), and at most NUMERIC_MAX_WORK element-evaluations are spent on them; beyond,
# a seeded sample is checked and the report says how many. Elementwise programs perturb a
# whole leaf at once, so they are checked in full.
NUMERIC_MAX_PERTURBATIONS = 2000
NUMERIC_MAX_WORK = 50_000_000
MAX_LISTED = 20                     # nondifferentiable points listed in a report
MAX_DISAGREEMENTS = 5               # disagreeing entries listed in a report

# ops whose forward is elementwise (one output element reads one element of each input)
ELEMENTWISE_OPERATORS = {"add", "sub", "mul", "div", "pow", "neg"}


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
    return op.kind == "elementwise" or op.name in ELEMENTWISE_OPERATORS


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
    from .autograd import sum_to as _sum_to
    return np.asarray(_sum_to(v, 0, (), tuple(shape)))


def values64(result):
    """Every node's value in float64 (finite differences and the symbolic evaluation in
    float32 would be noise)."""
    if result.graph.dtype == np.float64:
        return result.values
    from . import autograd
    return autograd.forward(_as64(result.graph), lifted(result.graph), upto=result.output_id)


def lifted(graph):
    """Every leaf's and constant's value in float64 (so that ops compute in float64)."""
    if graph.dtype == np.float64:
        return {}
    return {eq.id: np.asarray(eq.value, dtype=np.float64) for eq in graph.nodes
            if eq.kind != "op"}


# ------------------------------------------------------------------ kinks: where, and which convention
def _eq0(x, *rest, **_):
    return x == 0


def _extreme_ties(npf):
    def pred(x, dim=None, keepdim=False, **_):
        if x.size == 0:
            return False
        m = npf(x, axis=dim, keepdims=True)
        return np.sum(x == m, axis=dim, keepdims=keepdim) > 1
    return pred


def _norm_kinks(x, p=2.0, dim=None, keepdim=False, **_):
    a = np.abs(x)
    if a.size == 0 or p == 0:
        return False
    if np.isinf(p):
        m = (np.max if p > 0 else np.min)(a, axis=dim, keepdims=True)
        return (np.sum(a == m, axis=dim, keepdims=keepdim) > 1) | np.all(
            a == 0, axis=dim, keepdims=keepdim)
    if p > 1:                   # differentiable except at the zero vector
        return np.all(a == 0, axis=dim, keepdims=keepdim)
    return np.any(a == 0, axis=dim, keepdims=keepdim)


# op name -> (PyTorch's convention there, predicate(*input values, **params) -> mask that
# broadcasts to the op's output). Used to name the op behind a nondifferentiable point.
KINKS = {
    "relu": ("relu'(0) = 0 (threshold_backward passes the gradient where the result > 0)", _eq0),
    "abs": ("abs'(0) = 0 (grad * sgn(x))", _eq0),
    "sign": ("sign' = 0 everywhere, also at 0", _eq0),
    "sqrt": ("sqrt'(0) = +inf (grad / (2 * result))", _eq0),
    "log": ("log'(0) = +inf (grad / x)", _eq0),
    "log2": ("log2'(0) = +inf", _eq0),
    "log10": ("log10'(0) = +inf", _eq0),
    "log1p": ("log1p'(-1) = +inf", lambda x, **_: x == -1),
    "asin": ("asin'(+-1) = +inf ((1 - x^2).rsqrt())", lambda x, **_: np.abs(x) == 1),
    "acos": ("acos'(+-1) = -inf (-(1 - x^2).rsqrt())", lambda x, **_: np.abs(x) == 1),
    "pow": ("x**y at x = 0: the base's partial is 0 where y == 0, grad*y*x**(y-1) elsewhere; "
            "the exponent's partial is 0 where y >= 0", lambda x, y, **_: x == 0),
    "div": ("x / 0 in IEEE arithmetic: grad / y and -grad * x / y^2", lambda x, y, **_: y == 0),
    "maximum": ("a tie gives half the gradient to each side", lambda x, y, **_: x == y),
    "minimum": ("a tie gives half the gradient to each side", lambda x, y, **_: x == y),
    "clamp": ("clamp passes gradient 1 to x at its bounds",
              lambda x, lo, hi, **_: (x == lo) | (x == hi)),
    "atan2": ("both partials 0 at (0, 0)", lambda y, x, **_: (y == 0) & (x == 0)),
    "hypot": ("grad * x / result: NaN at (0, 0)", lambda x, y, **_: (x == 0) & (y == 0)),
    "softplus": ("gradient 1 where beta*x > threshold, sigmoid(beta*x) at and below it",
                 lambda x, beta=1.0, threshold=20.0, **_: x * beta == threshold),
    "max": ("a full max splits the gradient evenly over ties; max(dim=) gives it all to the "
            "first maximal index", _extreme_ties(np.max)),
    "min": ("a full min splits the gradient evenly over ties; min(dim=) gives it all to the "
            "first minimal index", _extreme_ties(np.min)),
    "norm": ("gradient 0 at the zero vector (sgn(x) at zeros for p <= 1; p=inf ties share it)",
             _norm_kinks),
    "binary_cross_entropy": ("log clamped at -100; backward divides by max((1 - x) * x, 1e-12)",
                             lambda x, t, **_: (x <= 0) | (x >= 1)),
}


# Sites where PyTorch's convention defines every derivative through the node, beyond the
# one-sided range: binary_cross_entropy's target grad is -logit(x), unclamped, while its
# forward clamps the log at -100; clamp with min == max == x passes gradient 1 to x
# although the function is constant. op name -> predicate like those of KINKS.
WHOLE_NODE = {
    "binary_cross_entropy": lambda x, t, **_: (x <= 0) | (x >= 1),
    "clamp": lambda x, lo, hi, **_: (x == lo) & (lo == hi),
}


def nan_may_arise(graph, vals, ids, sites):
    """True when autograd may legitimately produce NaN (0 * inf, inf - inf): a kink site
    on the path, or a non-finite value anywhere on it."""
    if sites:
        return True
    with np.errstate(all="ignore"):
        return not all(np.isfinite(np.asarray(vals[i], dtype=np.float64)).all() for i in ids)


def kink_sites(graph, vals, ids):
    """[(node, mask over the node's shape, whole)] for every op node on the path that sits
    at one of its kinks (KINKS) at the inputs; `whole` when it is a WHOLE_NODE site."""
    sites = []
    with np.errstate(all="ignore"):
        for i in ids:
            eq = graph.nodes[i]
            if eq.kind != "op" or eq.op.name not in KINKS:
                continue
            try:
                m = KINKS[eq.op.name][1](*[np.asarray(vals[j]) for j in eq.inputs],
                                         **eq.params)
            except Exception:           # a predicate that cannot run names nothing
                continue
            m = np.asarray(m, dtype=bool)
            try:
                m = np.broadcast_to(m, eq.shape)
            except ValueError:              # a mask over the inputs of a loss: the whole node
                m = np.broadcast_to(m.any(), eq.shape)
            if m.any():
                whole = eq.op.name in WHOLE_NODE and bool(np.any(WHOLE_NODE[eq.op.name](
                    *[np.asarray(vals[j]) for j in eq.inputs], **eq.params)))
                sites.append((eq, m, whole))
    return sites


class Labeller:
    """Names the op (and PyTorch's convention) behind a flagged leaf element. In an
    elementwise program a site's mask maps element by element to the leaf; otherwise the
    first op on the path that sits at a kink anywhere is named."""

    def __init__(self, graph, sites, out_shape, elementwise, fallback):
        self.sites, self.fallback = sites, fallback
        self.elementwise, self.out_shape = elementwise, out_shape
        self.per_leaf = {}
        # leaves upstream of a WHOLE_NODE site: every derivative of theirs is convention
        self.whole = set()
        for eq, _, whole in sites:
            if whole:
                self.whole.update(i for i in ancestors(graph, eq.id)
                                  if graph.nodes[i].kind == "leaf")

    def label(self, leaf_eq, flat_index):
        if not self.sites:
            return None, self.fallback
        if not self.elementwise:
            eq = self.sites[0][0]
            names = sorted({e.op.name for e, _, _ in self.sites})
            return ", ".join(names), KINKS[eq.op.name][0]
        if leaf_eq.id not in self.per_leaf:
            masks = []
            for eq, m, _ in self.sites:
                mo = np.broadcast_to(m, self.out_shape).astype(np.int64)
                masks.append((eq, sum_to(mo, leaf_eq.shape).reshape(-1) > 0))
            self.per_leaf[leaf_eq.id] = masks
        for eq, m in self.per_leaf[leaf_eq.id]:
            if m[flat_index]:
                return eq.op.name, KINKS[eq.op.name][0]
        return None, self.fallback


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


# ------------------------------------------------------------------ numeric: central differences
def _step(x0):
    """Steps cbrt(eps) * max(1, |x|) and 8 times smaller, as actually taken after rounding:
    (x + h, x - h, x + h/8, x - h/8) and (h+, h-, h+/8, h-/8)."""
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1.0, np.abs(x0))
    with np.errstate(all="ignore"):
        pts = (x0 + h, x0 - h, x0 + h / 8, x0 - h / 8)
        steps = (pts[0] - x0, x0 - pts[1], pts[2] - x0, x0 - pts[3])
    return pts, steps


def _classify(f0, fs, hs):
    """From f at x and at x +- h, x +- h/8: the central estimate, its error bound, and the
    flags of the points where it means nothing, each with the range PyTorch's value may take.

    - a kink: the one-sided slopes differ and keep differing at h/8 (a smooth function's
      would shrink 8 times): range [left, right];
    - a jump (sign at 0, atan2 at the origin): f(x +- h/8) is as far from f(x) as f(x +- h):
      undefined;
    - a domain edge (sqrt at 0): f is finite at x but not on one side: the finite side's
      slope, continued to the infinity it points to;
    - a singular point: f itself is not finite at x: undefined.
    The error bound is 8/7 |C(h) - C(h/8)|: where the derivative itself has a kink (x*|x|
    at 0) the central difference converges only linearly."""
    fp, fm, fp8, fm8 = fs
    hp, hm, hp8, hm8 = hs
    with np.errstate(all="ignore"):
        central = (fp - fm) / (hp + hm)
        central8 = (fp8 - fm8) / (hp8 + hm8)
        right, left = (fp - f0) / hp, (f0 - fm) / hm
        r8, l8 = (fp8 - f0) / hp8, (f0 - fm8) / hm8
        tiny = 1e3 * np.finfo(np.float64).eps * np.maximum(np.abs(f0), 1e-300)
        noise = tiny / np.minimum(hp8, hm8)
        jump = np.abs(right - left)
        kink = np.isfinite(jump) & (jump > 1e-6 * np.maximum(np.abs(left), np.abs(right))
                                    + noise) & (np.abs(r8 - l8) > 0.5 * jump)
        disc = ((np.abs(fp - f0) > tiny) & (np.abs(fp8 - f0) > 0.5 * np.abs(fp - f0))) | (
            (np.abs(fm - f0) > tiny) & (np.abs(fm8 - f0) > 0.5 * np.abs(fm - f0)))
        edge = np.isfinite(f0) & ~(np.isfinite(fp) & np.isfinite(fm))
        singular = ~np.isfinite(f0)
        disc &= ~edge & ~singular
        kink &= ~disc
        lo = np.where(kink, np.minimum(left, right), np.nan)
        hi = np.where(kink, np.maximum(left, right), np.nan)
        side = np.where(np.isfinite(fp), right, left)
        lo = np.where(edge, np.where(side > 0, side, -np.inf), lo)
        hi = np.where(edge, np.where(side > 0, np.inf, side), hi)
        flag = kink | disc | edge | singular
        central = np.where(edge | singular, np.nan, central)
        # truncation (linear where f' has a kink) and rounding (f large next to its change)
        rounding = 16 * np.finfo(np.float64).eps * (np.abs(fp) + np.abs(fm)) / (hp + hm)
        slack = np.where(flag, 0.0, 8 / 7 * np.abs(central - central8) + rounding)
        slack = np.where(np.isfinite(slack), slack, 0.0)
    return central, slack, flag, lo, hi, singular


def numeric(result, grads_once, rtol, atol):
    """Central differences in float64, step cbrt(eps) * max(1, |x|), for the grads (vᵀJ) and
    the Jacobian when it was computed."""
    from .errors import GradcalcError
    graph, out = result.graph, result.output_id
    vals = values64(result)
    rtol, atol = default_tolerances("numeric", result.dtype, rtol, atol)
    cot = np.asarray(result.cotangent, dtype=np.float64)
    f0 = np.asarray(vals[out], dtype=np.float64)
    oshape = f0.shape
    ids = ancestors(graph, out)
    elementwise = is_elementwise(graph, ids)
    sites = kink_sites(graph, vals, ids)
    tally = Tally("numeric", rtol, atol, result.dtype, nan_may_arise(graph, vals, ids, sites))
    labeller = Labeller(graph, sites, oshape, elementwise, "the one-sided differences disagree")
    # where two kinks meet (a maximum tie feeding a clamp at its bound), PyTorch's
    # conventions compose and may leave the one-sided range: finite differences then have
    # nothing to say
    if elementwise:
        stacked = sum((np.broadcast_to(m, oshape).astype(np.int64) for _, m, _ in sites),
                      np.zeros(oshape, np.int64)) >= 2
    else:
        stacked = np.full(oshape, len(sites) >= 2)
    leaf_ids = {n: graph.leaves[n] for n in result.wrt}
    total = sum(graph.nodes[i].size for i in leaf_ids.values())
    cost = 4 * max(1, sum(_work(graph, graph.nodes[i]) for i in ids))  # 4 evaluations each
    budget = min(NUMERIC_MAX_PERTURBATIONS, max(16, NUMERIC_MAX_WORK // cost))
    rng = np.random.default_rng(0)
    checked = jac_checked = jac_total = 0
    skipped = []

    f_at = Perturbed(graph, vals, out, ids)

    for name, i in leaf_ids.items():
        eq = graph.nodes[i]
        x0 = np.asarray(eq.value, dtype=np.float64)
        n = x0.size
        g = grads_once.get(name)
        g = np.zeros(x0.shape) if g is None else np.asarray(g, dtype=np.float64)
        jac = None if result.jacobian is None else np.asarray(result.jacobian[name], np.float64)
        if jac is not None:
            jac_total += f0.size * n
        if i not in ids:                      # no path: every derivative is exactly 0
            tally.add(name, "grad", np.zeros(x0.shape), g, x0.shape)
            if jac is not None:
                tally.add(name, "jacobian", np.zeros(jac.shape), jac, jac.shape)
                jac_checked += f0.size * n
            checked += n
            continue
        try:
            if elementwise:
                _numeric_elementwise(tally, name, eq, x0, g, jac, cot, f0, f_at, labeller, stacked)
                checked += n
                if jac is not None:
                    jac_checked += f0.size * n
                continue
            share = n if total <= budget else max(1, int(budget * n / total))
            picks = np.arange(n) if share >= n else np.sort(rng.choice(n, share, replace=False))
            _numeric_columns(tally, name, eq, x0, g, jac, cot, f0, f_at, labeller, picks, stacked)
        except GradcalcError as err:          # e.g. a class-index target moved off a whole number
            skipped.append({"leaf": name, "reason": err.message})
            continue
        checked += len(picks)
        if jac is not None:
            jac_checked += f0.size * len(picks)
    extra = {"elements_checked": checked, "elements_total": total,
             "jacobian_entries_checked": jac_checked if result.jacobian is not None else None,
             "jacobian_entries_total": jac_total if result.jacobian is not None else None}
    if skipped:
        extra["leaves_not_checked"] = skipped
    return tally.report(**extra)


def _work(graph, eq):
    """Rough element-operations of one node's forward (a matmul's are m*k*n)."""
    if eq.kind == "op" and eq.op.name in ("matmul", "dot"):
        a = graph.nodes[eq.inputs[0]].shape
        return max(1, eq.size) * (a[-1] if a else 1)
    return eq.size


class Perturbed:
    """f at the inputs with one leaf replaced, recomputing (in float64) only the nodes that
    depend on that leaf through an input with a rule: an input whose rule is None (detach)
    keeps its value, as no derivative flows there in autograd either."""

    def __init__(self, graph, vals, out, ids):
        self.nodes, self.vals, self.out, self.ids = graph.nodes, vals, out, ids
        self.down: dict = {}

    def _downstream(self, leaf):
        if leaf not in self.down:
            changed, order = {leaf}, []
            for i in self.ids:
                eq = self.nodes[i]
                if eq.kind == "op" and any(j in changed and eq.op.vjp(k) is not None
                                           for k, j in enumerate(eq.inputs)):
                    changed.add(i)
                    order.append(i)
            self.down[leaf] = order
        return self.down[leaf]

    def __call__(self, leaf, x):
        new = {leaf: x}
        with np.errstate(all="ignore"):
            for i in self._downstream(leaf):
                eq = self.nodes[i]
                args = [new[j] if j in new and eq.op.vjp(k) is not None else self.vals[j]
                        for k, j in enumerate(eq.inputs)]
                new[i] = np.asarray(eq.op.forward(*args, **eq.params), dtype=np.float64)
        return np.asarray(new.get(self.out, self.vals[self.out]), dtype=np.float64)


def _unsettled(lo, hi, flag, quiet, stacked):
    """Where two kinks meet (a tie of max feeding a clamp at its bound), PyTorch's conventions
    compose and may leave the one-sided range, even where f is flat on both sides: there
    finite differences say nothing. Such entries become undefined, listed only if the values
    differ."""
    cut = np.broadcast_to(stacked, np.shape(flag))
    if cut.any():
        quiet = quiet | (cut & ~flag)
        flag = flag | cut
        lo, hi = np.where(cut, np.nan, lo), np.where(cut, np.nan, hi)
    return lo, hi, flag, quiet


def _numeric_elementwise(tally, name, eq, x0, g, jac, cot, f0, f_at, labeller, stacked):
    """Every element of the leaf moved at once: in an elementwise program output element o
    reads one element of the leaf, so each evaluation gives every partial."""
    oshape = f0.shape
    pts, steps = _step(x0)
    fs = [f_at(eq.id, p) for p in pts]
    hs = [np.broadcast_to(h, oshape) for h in steps]
    d, slack, flag, lo, hi, quiet = _classify(f0, fs, hs)
    lo, hi, flag, quiet = _unsettled(lo, hi, flag, quiet, stacked)
    _tally_partials(tally, name, eq, g, jac, cot, d, flag, lo, hi, labeller,
                    src_index(eq.shape, oshape), slack=slack, quiet=quiet)


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


def _numeric_columns(tally, name, eq, x0, g, jac, cot, f0, f_at, labeller, picks, stacked):
    """One leaf element at a time: columns of the Jacobian, and vᵀ times each."""
    oshape = f0.shape
    rows = [[], [], [], [], [], []]
    for k in picks:
        pts, hs = _step(np.float64(x0.flat[k]))
        fs = []
        for p in pts:
            x = x0.copy()
            x.flat[k] = p
            fs.append(f_at(eq.id, x))
        d, slack, flag, lo, hi, quiet = _classify(f0, fs, hs)
        lo, hi, flag, quiet = _unsettled(lo, hi, flag, quiet, stacked)
        for row, v in zip(rows, (d, slack, flag, lo, hi, quiet)):
            row.append(np.broadcast_to(v, oshape).reshape(-1))
    cols, slack, flags, los, his, quiet = (np.array(r).reshape(len(picks), -1) for r in rows)
    _tally_columns(tally, name, eq, g, jac, cot, picks, cols, flags.astype(bool), los, his,
                   labeller, oshape, slack=slack, quiet=quiet.astype(bool))


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
