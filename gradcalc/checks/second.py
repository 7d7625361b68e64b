"""The cross-checks of SPEC 9's answers: J·u, the Taylor derivatives, H·u and the Hessian.

Symbolic: sympy differentiates the forward formula (the forms symbolic.py and mixed.py build
from the op table, never a VJP rule or a traced program) to the requested order — the
directional derivative D_u e = sum of de/dx * u for J·u, Taylor and H·u, second partials for
the Hessian — and evaluates it at the inputs. Numeric: central differences of the output
along u (J·u; Taylor's orders 1 to 4 by central stencils) and of the gradient (H·u along u;
Hessian columns one leaf element at a time, sampled, or a whole leaf at once where the
block is diagonal). Both
feed the first-order check's Verdict and say per answer how many entries they checked and
why any were not; neither decides the exit status nor imports sympy itself.
"""
from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from .. import engine
from . import mixed
from .context import src_index, sum_to
from .evaluator import OVERFLOW, Evaluator, evaluate_array
from .numeric import LOST, NUMERIC_MAX_PERTURBATIONS, NUMERIC_MAX_WORK, classify
from .verdict import Entries, flat_index

OUTPUT = "(output)"              # the "leaf" of a J·u or Taylor entry: it has none
MAX_DENSE = 10_000_000           # expected Hessian entries built densely per block


class Coverage:
    """How many entries of each answer a method checked, of how many, and why not all."""

    def __init__(self, context):
        h, g = context.higher, context.graph
        self.kinds: dict = {}
        size = lambda n: g.nodes[g.leaves[n]].size      # noqa: E731
        n_out = math.prod(context.out_shape)
        if h.jvp is not None:
            self._total("jvp", n_out)
        if h.taylor is not None:
            self._total("taylor", n_out * len(h.taylor))
        if h.hvp is not None:
            self._total("hvp", sum(size(n) for n in h.hvp))
        if h.hessian is not None:
            self._total("hessian", sum(size(a) * size(b) for a, row in h.hessian.items()
                                       for b in row))

    def _total(self, kind, n):
        self.kinds[kind] = {"entries_checked": 0, "entries_total": int(n)}

    def add(self, kind, n):
        self.kinds[kind]["entries_checked"] += int(n)

    def note(self, kind, why):
        """Why `kind` is not checked in full so far, if it is not (the first reason stands)."""
        c = self.kinds[kind]
        if c["entries_checked"] < c["entries_total"]:
            c.setdefault("not_checked", why)

    def stop(self, why):
        for kind in self.kinds:
            self.note(kind, why)

    def report(self):
        return self.kinds


def _label(verdict):
    """The op and convention named at a flagged entry of a second-order answer."""
    if verdict.sites:
        names = ", ".join(sorted({eq.op.name for eq, _, _, _ in verdict.sites}))
        return lambda k: (names, verdict.sites[0][3])
    return lambda k: (None, verdict.labeller.fallback)


def _index(shape, prefix=()):
    at = flat_index(shape)
    return lambda k: list(prefix) + at(k)


# ---------------------------------------------------------------- symbolic, elementwise
def symbolic_elementwise(session, context, verdict, derived, cov):
    """One symbol per leaf, every element at once: D_u of the output (J·u, Taylor), D_u of
    each grad (H·u), and the second partials (the Hessian blocks)."""
    _each_answer(_Elementwise(session, context, verdict, derived, cov), context.higher)


def _each_answer(check, h):
    """Every SPEC 9 answer the calculation holds, checked by `check`'s method of its name."""
    for kind in ("jvp", "taylor", "hvp", "hessian"):
        if getattr(h, kind) is not None:
            getattr(check, kind)()


class _Elementwise:
    """The elementwise symbolic check of one calculation's SPEC 9 answers: the output's
    formula with a symbol per leaf (symbolic.py's derivation), the arrays its symbols and
    directions stand for, the outputs flagged at a kink, and each leaf's first partial
    (shared by H·u and the Hessian)."""

    def __init__(self, session, context, verdict, derived, cov):
        self.session, self.sp, self.context = session, session.sp, context
        self.verdict, self.cov, self.h = verdict, cov, context.higher
        graph = context.graph
        self.oshape = context.out_shape
        self.env = dict(derived.const_env)
        for i, s in derived.leaf_sym.items():
            self.env[s] = np.asarray(context.vals[i], dtype=np.float64)
        self.ev = Evaluator(session, self.env)
        self.f = derived.exprs[context.output_id]
        self.sym = {n: derived.leaf_sym.get(graph.leaves[n]) for n in context.wrt}
        self.at_site = None
        for _, m, _, _ in verdict.sites:
            m = np.broadcast_to(m, self.oshape)
            self.at_site = m if self.at_site is None else (self.at_site | m)
        self.label = _label(verdict)
        self.shape_of = {n: graph.nodes[graph.leaves[n]].shape for n in context.wrt}
        self.grad = {}               # leaf -> d(output)/d(its symbol)

    @cached_property
    def cot(self):
        """The cotangent v at every output element (H·u and the Hessian are of vᵀ·output)."""
        return np.broadcast_to(np.asarray(self.context.cotangent, dtype=np.float64),
                               self.oshape)

    # -- derivatives, and their values at the inputs
    def direction(self, dirs) -> dict:
        """A leaf's symbol -> a symbol standing for its direction u (an array in `env`)."""
        w = {}
        for n, u in (dirs or {}).items():
            if self.sym.get(n) is not None and np.any(u):
                d = self.sp.Dummy(f"u_{n}", real=True)
                self.env[d] = np.asarray(u, dtype=np.float64)
                w[self.sym[n]] = d
        return w

    def along(self, e, w):
        self.session.afford(e)
        out = self.sp.Add(*[self.sp.diff(e, s) * d for s, d in w.items()])
        self.session.tick()
        return out

    def partial(self, n):
        if n not in self.grad:
            self.session.afford(self.f)
            self.grad[n] = self.sp.diff(self.f, self.sym[n])
            self.session.tick()
        return self.grad[n]

    def values(self, d):
        """(values, flagged, lo, hi, unverifiable) of `d` at every output element."""
        context = self.context
        D, flag, lo, hi, unv = evaluate_array(self.session, self.ev, d, self.env, self.oshape,
                                              context.not_finite)
        extra = self.at_site if context.not_finite is None else (
            context.not_finite if self.at_site is None else self.at_site | context.not_finite)
        if extra is not None and (extra & ~flag).any():
            # a kink or a non-finite value on the path: the derivative of this order there
            # is PyTorch's convention, whatever sympy's simplified formula gives
            new = extra & ~flag
            flag = flag | new
            lo, hi = np.where(new, np.nan, lo), np.where(new, np.nan, hi)
        return D, flag, lo, hi, unv

    def weighted(self, parts, shape):
        """vᵀ times the per-output values, summed to a leaf's shape (with the range)."""
        D, flag, lo, hi, unv = parts
        cot = self.cot
        with np.errstate(all="ignore"):
            terms = cot * D
            e = sum_to(terms, shape)
            g_flag = sum_to(flag.astype(np.int64), shape) > 0
            g_lo = sum_to(np.where(flag, np.minimum(cot * lo, cot * hi), terms), shape)
            g_hi = sum_to(np.where(flag, np.maximum(cot * lo, cot * hi), terms), shape)
        g_unv = None if unv is None else sum_to(unv.astype(np.int64), shape) > 0
        return e, g_flag, g_lo, g_hi, g_unv

    def compare(self, what, leaf, expected, actual, index, parts):
        _, flag, lo, hi, unv = parts
        self.verdict.compare(Entries(leaf, what, expected, actual, index, flagged=flag, lo=lo,
                                     hi=hi, label=self.label, unverifiable=unv,
                                     reason=OVERFLOW))

    # -- the answers
    def jvp(self):
        oshape = self.oshape
        parts = self.values(self.along(self.f, self.direction(self.h.tangent)))
        self.compare("jvp", OUTPUT, parts[0], self.h.jvp, _index(oshape), parts)
        self.cov.add("jvp", math.prod(oshape))

    def taylor(self):
        oshape = self.oshape
        w, e = self.direction(self.h.along), self.f
        for k, got in enumerate(self.h.taylor, 1):
            e = self.along(e, w)
            parts = self.values(e)
            self.compare("taylor", OUTPUT, parts[0], got, _index(oshape, [k]), parts)
            self.cov.add("taylor", math.prod(oshape))

    def hvp(self):
        w = self.direction(self.h.hvp_dir)
        for n, got in self.h.hvp.items():
            shape = self.shape_of[n]
            if self.sym.get(n) is None:
                zero = np.zeros(shape)
                self.compare("hvp", n, zero, got, flat_index(shape),
                             (zero, None, None, None, None))
            else:
                parts = self.weighted(self.values(self.along(self.partial(n), w)), shape)
                self.compare("hvp", n, parts[0], got, flat_index(shape), parts)
            self.cov.add("hvp", math.prod(shape))

    def hessian(self):
        for a, row in self.h.hessian.items():
            for b, block in row.items():
                n = self.hessian_block(a, b, block)
                if n is None:
                    self.cov.note("hessian", f"a block over {MAX_DENSE:,} entries that is "
                                             "not diagonal is not built densely; --check "
                                             "numeric samples its columns")
                else:
                    self.cov.add("hessian", n)

    def hessian_block(self, a, b, block):
        """Compare block H_ab; the entries compared, or None when it is too large to build."""
        oshape, cot = self.oshape, self.cot
        graph = self.context.graph
        sa, sb = (graph.nodes[graph.leaves[n]].shape for n in (a, b))
        na, nb = math.prod(sa), math.prod(sb)
        diag = getattr(block, "diag", None)
        if self.sym.get(a) is None or self.sym.get(b) is None:
            parts = (np.zeros(oshape), np.zeros(oshape, bool), np.zeros(oshape),
                     np.zeros(oshape), None)
        else:
            self.session.afford(self.partial(a))
            d2 = self.sp.diff(self.partial(a), self.sym[b])
            self.session.tick()
            parts = self.values(d2)
        if diag is not None and sa == sb == tuple(oshape):
            # each output element reads element k of both leaves: the block is vᵀ·d2 on its
            # diagonal and 0 off it, which the diagonal block holds by construction
            D, flag, lo, hi, unv = parts
            with np.errstate(all="ignore"):
                lo2, hi2 = np.minimum(cot * lo, cot * hi), np.maximum(cot * lo, cot * hi)
            self.compare("hessian", a, cot * D, diag, lambda k: flat_index(sa)(k) * 2,
                         (None, flag, lo2, hi2, unv))
            return na * nb
        if na * nb > MAX_DENSE:
            return None
        rows = np.asarray(src_index(sa, oshape)).reshape(-1)
        cols = np.asarray(src_index(sb, oshape)).reshape(-1)

        def dense(v, fill=0.0, dtype=np.float64):
            out = np.full((na, nb), fill, dtype=dtype)
            if dtype == bool:
                np.logical_or.at(out, (rows, cols), np.broadcast_to(v, oshape).reshape(-1))
            else:
                np.add.at(out, (rows, cols), np.broadcast_to(v, oshape).reshape(-1))
            return out
        D, flag, lo, hi, unv = parts
        with np.errstate(all="ignore"):
            terms = cot * D
            lo_t = np.where(flag, np.minimum(cot * lo, cot * hi), terms)
            hi_t = np.where(flag, np.maximum(cot * lo, cot * hi), terms)
            expected = dense(terms)
        actual = np.asarray(block if diag is None else np.asarray(block), dtype=np.float64)
        self.compare("hessian", a, expected, actual.reshape(na, nb),
                     lambda k: flat_index(sa)(k // max(nb, 1)) + flat_index(sb)(k % max(nb, 1)),
                     (None, dense(flag, False, bool), dense(lo_t), dense(hi_t),
                      None if unv is None else dense(unv, False, bool)))
        return na * nb


# ---------------------------------------------------------------- symbolic, mixed
def symbolic_mixed(session, context, verdict, cov):
    """Leaf elements as symbols (mixed.py's choice and caps): the Hessian entries among the
    chosen elements; J·u, Taylor and H·u when every leaf element is a symbol (a direction
    moves them all). At most mixed.MAX_DERIVATIVES sympy differentiations per answer."""
    _each_answer(_Mixed(session, context, verdict, cov), context.higher)


class _Mixed:
    """The mixed symbolic check of one calculation's SPEC 9 answers: the leaf elements'
    symbols and the output's forms (mixed.py's), their evaluators, the gradient's partials
    (shared by H·u and the Hessian), and the sympy differentiations spent on the answer at
    hand, against the cap."""

    CAP = (f"at most {mixed.MAX_DERIVATIVES} sympy differentiations per answer; "
           "--check numeric covers the rest")
    WHOLE = ("the program mixes elements and only a sample of its leaf elements could be "
             "symbols, while a direction moves every element; --check numeric covers it")

    def __init__(self, session, context, verdict, cov):
        self.session, self.sp, self.context = session, session.sp, context
        self.verdict, self.cov, self.h = verdict, cov, context.higher
        graph = context.graph
        idset = set(context.ids)
        in_path = [graph.leaves[w] for w in context.wrt if graph.leaves[w] in idset]
        syms, self.picks, env, _, self.exact = mixed.symbols(session, context, in_path)
        _, self.out_idx, self.out_ex = mixed.forms(session, context, syms,
                                                   self.picks)[context.output_id]
        self.ev = Evaluator(session, env)
        self.ties = Evaluator(session, env, ties=0), Evaluator(session, env, ties=1)
        self.label = _label(verdict)
        self.n_out = math.prod(context.out_shape)
        name_of = {i: n for n, i in graph.leaves.items()}
        self.sym_at = {(name_of[i], k): s for i in syms for k, s in zip(self.picks[i], syms[i])}
        self.shape_of = {n: graph.nodes[graph.leaves[n]].shape for n in context.wrt}
        self.spent = 0
        self.weighted = None         # vᵀ·output as one sympy sum (H·u, the Hessian)
        self.grad = {}               # (leaf, element) -> its partial of `weighted`

    # -- derivatives, and their values at the inputs
    def diff(self, e, s):
        """de/ds, the terms of a sum without s skipped; counted against the cap."""
        sp = self.sp
        self.spent += 1
        self.session.afford(e)
        terms = e.args if isinstance(e, sp.Add) else (e,)
        out = sp.Add(*[sp.diff(t, s) for t in terms if s in t.free_symbols])
        self.session.tick()
        return out

    def along(self, e, w):
        return self.sp.Add(*[self.diff(e, s) * u for s, u in w.items() if s in e.free_symbols])

    def direction(self, dirs) -> dict:
        return {self.sym_at[(n, k)]: float(v) for n, u in (dirs or {}).items()
                for k, v in enumerate(np.asarray(u, dtype=np.float64).reshape(-1))
                if v and (n, k) in self.sym_at}

    def point(self, d):
        """(value, flagged, lo, hi) of a derivative at the inputs."""
        v, cand = self.ev.evaluate(d)
        v = float(v)
        if not math.isfinite(v):
            return v, True, math.nan, math.nan
        if cand is not None and bool(np.any(cand)):
            v0, v1 = (float(t.evaluate(d)[0]) for t in self.ties)
            if not (v0 == v and v1 == v):
                return v, True, min(v0, v1, v), max(v0, v1, v)
        return v, False, v, v

    def partial(self, key):
        """d(vᵀ·output)/d(leaf element `key`), made once for H·u and the Hessian."""
        if self.weighted is None:
            sp, oshape = self.sp, self.context.out_shape
            cot = np.broadcast_to(np.asarray(self.context.cotangent, dtype=np.float64),
                                  oshape).reshape(-1)
            self.weighted = sp.Add(*[sp.Float(float(cot[o])) * e if cot[o] != 1 else e
                                     for o, e in zip(self.out_idx, self.out_ex) if cot[o] != 0])
        if key not in self.grad:
            self.grad[key] = self.diff(self.weighted, self.sym_at[key])
        return self.grad[key]

    # -- what the verdict is fed
    def feed(self, what, leaf, rows, actual, index):
        """rows: [(flat position in `actual`, value, flagged, lo, hi)]."""
        if not rows:
            return
        pos = np.array([r[0] for r in rows], dtype=np.int64)
        e, f, lo, hi = (np.array([r[k] for r in rows]) for k in (1, 2, 3, 4))
        a = _entries(actual, pos)
        self.verdict.compare(Entries(leaf, what, e, a, lambda k: index(int(pos[int(k)])),
                                     flagged=f.astype(bool), lo=lo, hi=hi, label=self.label))

    def output_rows(self, e_of) -> list:
        rows = []
        for o, e in zip(self.out_idx, self.out_ex):
            if self.spent >= mixed.MAX_DERIVATIVES:
                break
            rows.append((int(o), *self.point(e_of(e))))
        constant = set(range(self.n_out)) - set(int(o) for o in self.out_idx)
        rows += [(o, 0.0, False, 0.0, 0.0) for o in sorted(constant)]
        return rows

    # -- the answers
    def jvp(self):
        if self.exact:
            self.spent = 0
            w = self.direction(self.h.tangent)
            rows = self.output_rows(lambda e: self.along(e, w))
            self.feed("jvp", OUTPUT, rows, self.h.jvp, flat_index(self.context.out_shape))
            self.cov.add("jvp", len(rows))
        self.cov.note("jvp", self.CAP if self.exact else self.WHOLE)

    def taylor(self):
        if self.exact:
            self.spent = 0
            w = self.direction(self.h.along)
            current = dict(zip((int(o) for o in self.out_idx), self.out_ex))
            for k, got in enumerate(self.h.taylor, 1):
                current = {o: self.along(e, w) for o, e in current.items()
                           if self.spent < mixed.MAX_DERIVATIVES}
                if len(current) < len(self.out_idx):
                    break
                rows = [(o, *self.point(e)) for o, e in current.items()]
                rows += [(o, 0.0, False, 0.0, 0.0) for o in range(self.n_out)
                         if o not in current]
                self.feed("taylor", OUTPUT, rows, got, _index(self.context.out_shape, [k]))
                self.cov.add("taylor", len(rows))
        self.cov.note("taylor", self.CAP if self.exact else self.WHOLE)

    def hvp(self):
        self.spent = 0
        w = self.direction(self.h.hvp_dir)
        for n, got in self.h.hvp.items():
            rows = []
            for k in range(math.prod(self.shape_of[n])):
                if self.spent >= mixed.MAX_DERIVATIVES or not self.exact:
                    break
                found = self.point(self.along(self.partial((n, k)), w)) \
                    if (n, k) in self.sym_at else (0.0, False, 0.0, 0.0)
                rows.append((k, *found))
            self.feed("hvp", n, rows, got, flat_index(self.shape_of[n]))
            self.cov.add("hvp", len(rows))
        self.cov.note("hvp", self.CAP if self.exact else self.WHOLE)

    def hessian(self):
        """The entries among the chosen elements of each pair of leaves."""
        self.spent = 0
        leaves, picks = self.context.graph.leaves, self.picks
        for a, row in self.h.hessian.items():
            for b, block in row.items():
                nb = math.prod(self.shape_of[b])
                rows = []
                for ka in picks.get(leaves[a], ()):
                    for kb in picks.get(leaves[b], ()):
                        if self.spent >= mixed.MAX_DERIVATIVES:
                            break
                        d2 = self.diff(self.partial((a, ka)), self.sym_at[(b, kb)])
                        rows.append((ka * nb + kb, *self.point(d2)))
                self.feed("hessian", a, rows, block,
                          _pair_index(self.shape_of[a], self.shape_of[b]))
                self.cov.add("hessian", len(rows))
        self.cov.note("hessian", self.CAP if self.exact else
                      "the Hessian entries among a sample of leaf elements (the symbols)")


def _entries(actual, pos):
    """Flat entries `pos` of an answer, a DiagonalBlock's without forming it densely."""
    diag = getattr(actual, "diag", None)
    if diag is None:
        return np.asarray(actual, dtype=np.float64).reshape(-1)[pos]
    n = diag.size
    row, col = np.divmod(pos, max(n, 1))
    return np.where(row == col, np.asarray(diag, np.float64).reshape(-1)[row % max(n, 1)], 0.0)


def _pair_index(sa, sb):
    nb = max(math.prod(sb), 1)
    return lambda k: flat_index(sa)(k // nb) + flat_index(sb)(k % nb)


# ---------------------------------------------------------------- numeric
def numeric(context, verdict, cov):
    """Central differences in float64: of the output along u (J·u, Taylor order 1), of the
    gradient along u (H·u), and of the gradient by one leaf element (Hessian columns; a
    whole leaf at once where the block is diagonal)."""
    h, graph, out = context.higher, context.graph, context.output_id
    wide, lifted = context.wide, context.lifted
    ids = {n: graph.leaves[n] for n in context.wrt}
    label = _label(verdict)
    oshape = context.out_shape

    def f_at(moved):
        return np.asarray(engine.forward(wide, moved, upto=out)[out], dtype=np.float64)

    def g_at(moved):
        vals = engine.forward(wide, moved, upto=out)
        cot = np.asarray(context.cotangent, dtype=np.float64)
        got = engine.backward(wide, vals, cot, out)
        return {n: np.asarray(got[i], np.float64) if i in got else
                np.zeros(graph.nodes[i].shape) for n, i in ids.items()}

    def directional(dirs, fn):
        """fn at the inputs moved by +-t, +-t/8 along `dirs`, and the steps."""
        moving = {n: np.asarray(u, dtype=np.float64) for n, u in (dirs or {}).items()}
        scale = max([1.0] + [float(np.max(np.abs(lifted[ids[n]]), initial=0.0))
                             for n in moving])
        top = max([0.0] + [float(np.max(np.abs(u), initial=0.0)) for u in moving.values()])
        t = np.finfo(np.float64).eps ** (1 / 3) * scale / (top or 1.0)
        steps = (t, -t, t / 8, -t / 8)
        fs = [fn({ids[n]: lifted[ids[n]] + p * u for n, u in moving.items()}) for p in steps]
        return fs, (t, t, t / 8, t / 8)

    def compare(what, leaf, f0, fs, hs, actual, index):
        hs = [np.broadcast_to(x, np.shape(f0)) for x in hs]
        d, slack, flag, lo, hi, quiet, lost = classify(f0, fs, hs)
        verdict.compare(Entries(leaf, what, d, actual, index, flagged=flag, lo=lo, hi=hi,
                                slack=slack, label=label, quiet=quiet, unverifiable=lost,
                                reason=LOST))

    if h.jvp is not None or h.taylor is not None:
        f0 = np.asarray(context.vals[out], dtype=np.float64)
        for what, dirs, got in (("jvp", h.tangent, h.jvp),
                                ("taylor", h.along, None if h.taylor is None else h.taylor[0])):
            if got is None:
                continue
            fs, hs = directional(dirs, f_at)
            compare(what, OUTPUT, f0, fs, hs, got,
                    _index(oshape, [1] if what == "taylor" else []))
            cov.add(what, f0.size)
        if h.taylor is not None and len(h.taylor) > 1:
            _numeric_taylor(context, h, f_at, verdict, cov, label)
    if h.hvp is None and h.hessian is None:
        return
    g0 = g_at({})
    if h.hvp is not None:
        gs, hs = directional(h.hvp_dir, g_at)
        for n, got in h.hvp.items():
            compare("hvp", n, g0[n], [g[n] for g in gs], hs, got,
                    flat_index(graph.nodes[ids[n]].shape))
            cov.add("hvp", np.size(got))
    if h.hessian is not None:
        _numeric_hessian(context, h.hessian, g0, g_at, ids, compare, cov)


# Taylor orders past the first: central stencils of f along u, each at steps h and h/2
TAYLOR_MAX_ORDER = 4             # beyond it float64 differences carry too few digits
SETTLED = 0.05                   # slack over |estimate| above which an order is unverifiable
UNSETTLED = ("the finite differences of this order do not settle here: a kink or an edge "
             "near the input, or too few digits left in float64")


def stencil(order: int, side: int = 0) -> tuple:
    """Offsets j and weights w with sum(w * g(j h)) / h**order ~ g^(order)(0): central
    (side 0; 2p + 1 points, p = (order + 1) // 2, error O(h^2)) or one-sided (side +1 or -1;
    points 0..order on that side, error O(h)); from the Vandermonde system
    sum w_j j^m / m! = [m == order], exact for polynomials of the stencil's degree."""
    p = (order + 1) // 2
    js = np.arange(-p, p + 1) if side == 0 else side * np.arange(order + 1)
    js = js.astype(np.float64)
    m = np.arange(len(js))
    a = js[None, :] ** m[:, None] / np.array([math.factorial(int(i)) for i in m])[:, None]
    return js, np.linalg.solve(a, (m == order).astype(np.float64))


def _numeric_taylor(context, h, f_at, verdict, cov, label):
    """Orders 2..TAYLOR_MAX_ORDER of d^k/dt^k y(x + t u): each order's central stencil at
    steps h_k and h_k/2 (h_k = eps^(1/(k+2)), where truncation meets rounding), the finer
    estimate compared, with slack 4/3 of their difference (Richardson: the error is O(h^2))
    plus the rounding of f. A kink of the k-th derivative at the input (one-sided stencils at
    2h_k and 8h_k disagree alike) is flagged with both sides as the range PyTorch's value
    may take; where the slack is not small next to the estimate the entry is unverifiable."""
    graph, lifted, oshape = context.graph, context.lifted, context.out_shape
    ids = {n: graph.leaves[n] for n in context.wrt}
    moving = {n: np.asarray(u, dtype=np.float64) for n, u in (h.along or {}).items()}
    scale = max([1.0] + [float(np.max(np.abs(lifted[ids[n]]), initial=0.0)) for n in moving])
    top = max([0.0] + [float(np.max(np.abs(u), initial=0.0)) for u in moving.values()]) or 1.0
    f0 = np.asarray(context.vals[context.output_id], dtype=np.float64)
    last = min(len(h.taylor), TAYLOR_MAX_ORDER)
    eps = np.finfo(np.float64).eps
    cache = {0.0: f0}
    evaluations = sum(len(stencil(k)[0]) * 2 + (k + 1) * 4 for k in range(2, last + 1))
    if evaluations * max(1, sum(nd.size for nd in graph.nodes)) > NUMERIC_MAX_WORK:
        cov.note("taylor", "finite differences check the first order only: the higher "
                           "orders' stencils would exceed the numeric check's work budget")
        return

    def estimate(k, side, step):
        js, w = stencil(k, side)
        vals = []
        for j in js:
            t = float(j * step)
            if t not in cache:
                cache[t] = f_at({ids[n]: lifted[ids[n]] + t * u for n, u in moving.items()})
            vals.append(cache[t])
        with np.errstate(all="ignore"):
            return (sum(wj * v for wj, v in zip(w, vals)) / step ** k,
                    16 * eps * np.abs(w).sum() * np.max(np.abs(vals), axis=0) / step ** k)

    for k in range(2, last + 1):
        step = eps ** (1 / (k + 2)) * scale / top
        coarse, _ = estimate(k, 0, step)
        fine, noise = estimate(k, 0, step / 2)
        jumps = []
        for wide in (2 * step, 8 * step):
            (r, nr), (left, nl) = estimate(k, 1, wide), estimate(k, -1, wide)
            jumps.append((r, left, np.abs(r - left), nr + nl))
        (r, left, jump, near), (_, _, far_jump, far) = jumps
        with np.errstate(all="ignore"):
            kink = (jump > 10 * (near + far) + 1e-6 * np.maximum(np.abs(r), np.abs(left))) & (
                far_jump < 2 * jump) & (jump < 2 * far_jump)
            slack = 4 / 3 * np.abs(coarse - fine) + noise
            lost = ~kink & (~np.isfinite(slack) | ~np.isfinite(fine) | (
                slack > SETTLED * np.maximum(np.abs(fine), 1.0)))
        verdict.compare(Entries(
            OUTPUT, "taylor", np.where(lost, 0.0, fine), h.taylor[k - 1], _index(oshape, [k]),
            flagged=kink, lo=np.where(kink, np.minimum(r, left), np.nan),
            hi=np.where(kink, np.maximum(r, left), np.nan),
            slack=np.where(lost | kink, 0.0, slack), label=label, unverifiable=lost,
            reason=UNSETTLED))
        cov.add("taylor", f0.size)
    if len(h.taylor) > last:
        cov.note("taylor", f"finite differences check orders 1 to {last} only (past order "
                           f"{TAYLOR_MAX_ORDER}, float64 differences keep too few digits)")


def _numeric_hessian(context, hessian, g0, g_at, ids, compare, cov):
    graph, lifted = context.graph, context.lifted
    shape = {n: graph.nodes[i].shape for n, i in ids.items()}
    cost = 12 * max(1, sum(graph.nodes[i].size for i in context.ids))   # 4 grads each
    budget = min(NUMERIC_MAX_PERTURBATIONS, max(16, NUMERIC_MAX_WORK // cost))
    rng = np.random.default_rng(0)
    eps3 = np.finfo(np.float64).eps ** (1 / 3)
    for b in {b for row in hessian.values() for b in row}:
        x0 = lifted[ids[b]]
        rows = [a for a in hessian if b in hessian[a]]
        if all(getattr(hessian[a][b], "diag", None) is not None for a in rows):
            # diagonal blocks: element k of grad_a moves with element k of b alone
            hb = eps3 * np.maximum(1.0, np.abs(x0))
            pts = (x0 + hb, x0 - hb, x0 + hb / 8, x0 - hb / 8)
            gs = [g_at({ids[b]: p}) for p in pts]
            hs = [np.abs(p - x0) for p in pts]
            for a in rows:
                compare("hessian", a, g0[a], [g[a] for g in gs], hs, hessian[a][b].diag,
                        lambda k, s=shape[a]: flat_index(s)(k) * 2)
                cov.add("hessian", x0.size)
            cov.note("hessian", "diagonal blocks: their diagonals are differenced; the "
                                "zeros off them follow from the program being elementwise")
            continue
        n = x0.size
        picks = np.arange(n) if n <= budget else np.sort(rng.choice(n, budget, replace=False))
        for k in picks:
            hb = eps3 * max(1.0, abs(float(x0.flat[k])))
            gs = []
            for p in (hb, -hb, hb / 8, -hb / 8):
                x = x0.copy()
                x.flat[k] += p
                gs.append(g_at({ids[b]: x}))
            for a in rows:
                col = _entries(hessian[a][b], np.arange(hessian[a][b].size // n) * n + k)
                compare("hessian", a, g0[a].reshape(-1), [g[a].reshape(-1) for g in gs],
                        (hb, hb, hb / 8, hb / 8), col,
                        lambda r, sa=shape[a], kk=int(k): flat_index(sa)(r)
                        + flat_index(shape[b])(kk))
                cov.add("hessian", col.size)
        if len(picks) < n:
            cov.note("hessian", f"a seeded sample of {len(picks):,} of {n:,} columns per leaf "
                                "(finite differences of the gradient)")
