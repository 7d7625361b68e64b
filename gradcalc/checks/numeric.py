"""The numeric check: central finite differences of the program's forward, in float64.

It owns the step (cbrt(eps) * max(1, |x|), and 8 times smaller to tell a kink, a jump or a
slow convergence from a smooth slope), the perturbation of leaves (a whole leaf at once in
elementwise programs, one element at a time, sampled, otherwise) and the recomputation of
only what depends on the perturbed leaf. What it finds goes to verdict.py as Partials; it
never imports sympy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import GradcalcError
from .context import Context, Leaf
from .verdict import Partials, Verdict

LOST = ("the finite difference is lost here: the input is not finite, or the function's "
        "rounding near the largest float hides the step")

# At most this many leaf elements are perturbed one at a time (programs that mix elements),
# and at most NUMERIC_MAX_WORK element-evaluations are spent on them; beyond, a seeded sample
# is checked and the report says how many. Elementwise programs perturb a whole leaf at
# once, so they are checked in full.
NUMERIC_MAX_PERTURBATIONS = 2000
NUMERIC_MAX_WORK = 50_000_000


def _step(x0):
    """Steps cbrt(eps) * max(1, |x|) and 8 times smaller, as actually taken after rounding:
    (x + h, x - h, x + h/8, x - h/8) and (h+, h-, h+/8, h-/8)."""
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1.0, np.abs(x0))
    with np.errstate(all="ignore"):
        pts = (x0 + h, x0 - h, x0 + h / 8, x0 - h / 8)
        steps = (pts[0] - x0, x0 - pts[1], pts[2] - x0, x0 - pts[3])
    return pts, steps


def classify(f0, fs, hs):
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
    at 0) the central difference converges only linearly. Last, the mask of the points where
    the difference is lost (LOST): no finite step, or an error bound beyond float64."""
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
        # lost: no step could be taken (the input is not finite), or the rounding of f
        # around x is beyond float64 (f near the largest float): no difference to compare
        lost = ~(np.isfinite(hp) & np.isfinite(hm)) | (~flag & ~np.isfinite(slack))
        slack = np.where(np.isfinite(slack), slack, 0.0)
    return central, slack, flag, lo, hi, singular, lost


@dataclass
class _Probe:
    """f at the inputs (`f0`), f with one leaf replaced (`f_at`), and the output elements
    where two kinks meet (`stacked`)."""

    f0: np.ndarray
    f_at: Callable
    stacked: np.ndarray


def check(context: Context, second: Callable | None = None):
    """Central differences in float64, step cbrt(eps) * max(1, |x|), for the grads (vᵀJ) and
    the Jacobian when it was computed; `second(context, verdict)` adds the second-order
    answers' comparisons (second.py, which builds on this module) and returns their
    coverage."""
    if context.cotangent is None:         # only J·u or Taylor was asked for
        verdict = Verdict("numeric", context, "the one-sided differences disagree")
        return verdict.report(second_order=second(context, verdict))
    graph, out, ids = context.graph, context.output_id, context.ids
    verdict = Verdict("numeric", context, "the one-sided differences disagree")
    f0 = np.asarray(context.vals[out], dtype=np.float64)
    oshape = f0.shape
    # where two kinks meet (a maximum tie feeding a clamp at its bound), PyTorch's
    # conventions compose and may leave the one-sided range: finite differences then have
    # nothing to say
    if context.elementwise:
        stacked = sum((np.broadcast_to(m, oshape).astype(np.int64)
                       for _, m, _, _ in verdict.sites), np.zeros(oshape, np.int64)) >= 2
    else:
        stacked = np.full(oshape, len(verdict.sites) >= 2)
    probe = _Probe(f0, Perturbed(graph, context.vals, out, ids), stacked)
    total = context.leaves_total
    cost = 4 * max(1, sum(_work(graph, graph.nodes[i]) for i in ids))  # 4 evaluations each
    budget = min(NUMERIC_MAX_PERTURBATIONS, max(16, NUMERIC_MAX_WORK // cost))
    rng = np.random.default_rng(0)
    checked = jac_checked = jac_total = 0
    skipped = []
    for name in context.wrt:
        leaf = context.leaf(name)
        n = leaf.eq.size
        if leaf.jac is not None:
            jac_total += f0.size * n
        if leaf.eq.id not in ids:             # no path: every derivative is exactly 0
            verdict.no_path(leaf)
            checked += n
            jac_checked += 0 if leaf.jac is None else f0.size * n
            continue
        if context.elementwise:
            picks = np.arange(n)
        else:
            share = n if total <= budget else max(1, int(budget * n / total))
            picks = np.arange(n) if share >= n else np.sort(rng.choice(n, share, replace=False))
        try:
            verdict.feed(_elementwise(leaf, probe) if context.elementwise
                         else _columns(leaf, probe, picks))
        except GradcalcError as err:          # e.g. a class-index target moved off a whole number
            skipped.append({"leaf": name, "reason": err.message})
            continue
        checked += len(picks)
        if leaf.jac is not None:
            jac_checked += f0.size * len(picks)
    has_jac = context.jacobian is not None
    extra = {"elements_checked": checked, "elements_total": total,
             "jacobian_entries_checked": jac_checked if has_jac else None,
             "jacobian_entries_total": jac_total if has_jac else None}
    if skipped:
        extra["leaves_not_checked"] = skipped
    if context.higher is not None:
        extra["second_order"] = second(context, verdict)
    return verdict.report(**extra)


def _work(graph, eq):
    """Rough element-operations of one node's forward (a matmul's are m*k*n)."""
    if eq.kind != "op":
        return eq.size
    return eq.op.work(eq.size, [graph.nodes[i].shape for i in eq.inputs])


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


def _elementwise(leaf: Leaf, probe: _Probe) -> Partials:
    """Every element of the leaf moved at once: in an elementwise program output element o
    reads one element of the leaf, so each evaluation gives every partial."""
    oshape = probe.f0.shape
    pts, steps = _step(np.asarray(leaf.eq.value, dtype=np.float64))
    fs = [probe.f_at(leaf.eq.id, p) for p in pts]
    hs = [np.broadcast_to(h, oshape) for h in steps]
    d, slack, flag, lo, hi, quiet, lost = classify(probe.f0, fs, hs)
    lo, hi, flag, quiet = _unsettled(lo, hi, flag, quiet, probe.stacked)
    return Partials(leaf, d, flag, lo, hi, slack=slack, quiet=quiet,
                    unverifiable=np.broadcast_to(lost, oshape), reason=LOST)


def _columns(leaf: Leaf, probe: _Probe, picks) -> Partials:
    """One leaf element at a time: columns of the Jacobian, and vᵀ times each."""
    oshape = probe.f0.shape
    x0 = np.asarray(leaf.eq.value, dtype=np.float64)
    rows = [[], [], [], [], [], [], []]
    for k in picks:
        pts, hs = _step(np.float64(x0.flat[k]))
        fs = []
        for p in pts:
            x = x0.copy()
            x.flat[k] = p
            fs.append(probe.f_at(leaf.eq.id, x))
        d, slack, flag, lo, hi, quiet, lost = classify(probe.f0, fs, hs)
        lo, hi, flag, quiet = _unsettled(lo, hi, flag, quiet, probe.stacked)
        for row, v in zip(rows, (d, slack, flag, lo, hi, quiet, lost)):
            row.append(np.broadcast_to(v, oshape).reshape(-1))
    cols, slack, flags, los, his, quiet, lost = (np.array(r).reshape(len(picks), -1)
                                                 for r in rows)
    return Partials(leaf, cols, flags.astype(bool), los, his, slack=slack,
                    quiet=quiet.astype(bool), picks=picks, unverifiable=lost.astype(bool),
                    reason=LOST)
