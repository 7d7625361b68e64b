"""Cross-checks of autograd's grads and Jacobian: symbolic (sympy, independent of the VJP
rules) and numeric (central finite differences).

A check reports {"passed", "max_abs_error", "max_rel_error", ...}; it never raises for a
disagreement (that is exit status 1, decided by the caller).
"""
from __future__ import annotations

import math

import numpy as np

NUMERIC_MAX_PERTURBATIONS = 2000


def default_tolerances(kind, dtype, rtol, atol):
    if kind == "numeric":
        r, a = (1e-5, 1e-7) if dtype == "float64" else (1e-2, 1e-3)
    else:
        r, a = (1e-7, 1e-10) if dtype == "float64" else (1e-4, 1e-6)
    return (r if rtol is None else rtol), (a if atol is None else atol)


def compare(expected, actual, rtol, atol):
    """(passed, max_abs_error, max_rel_error); two non-finite values of the same kind
    (both NaN, or infinities of one sign) agree."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    same_nonfinite = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (e == a))
    with np.errstate(all="ignore"):
        diff = np.where(same_nonfinite, 0.0, np.abs(e - a))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(same_nonfinite, 0.0, diff / np.maximum(np.abs(e), 1e-300))
        ok = diff <= atol + rtol * np.abs(np.where(same_nonfinite, 0.0, e))
    ok = bool(np.all(ok))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(np.where(diff == 0, 0.0, rel).max()) if diff.size else 0.0
    return ok, max_abs, max_rel


def run(kind, result, grads_once, *, rtol=None, atol=None, limits=None):
    if kind == "numeric":
        return numeric(result, grads_once, rtol, atol)
    from . import symbolic
    return symbolic.check(result, grads_once, rtol=rtol, atol=atol, limits=limits)


def numeric(result, grads_once, rtol, atol):
    """Central differences in float64, step cbrt(eps) * max(1, |x|), for the grads (vᵀJ) and
    the Jacobian when it was computed. At most NUMERIC_MAX_PERTURBATIONS leaf elements are
    perturbed; beyond that a seeded sample is checked and the report says how many."""
    from . import autograd
    graph, out = result.graph, result.output_id
    rtol, atol = default_tolerances("numeric", result.dtype, rtol, atol)
    cot = np.asarray(result.cotangent, dtype=np.float64)
    leaf_ids = {n: graph.leaves[n] for n in result.wrt}
    total = sum(graph.nodes[i].size for i in leaf_ids.values())
    rng = np.random.default_rng(0)
    budget = NUMERIC_MAX_PERTURBATIONS
    worst_abs, worst_rel, passed, checked = 0.0, 0.0, True, 0
    eps = np.finfo(np.float64).eps ** (1 / 3)
    for name, i in leaf_ids.items():
        x0 = np.asarray(graph.nodes[i].value, dtype=np.float64)
        n = x0.size
        share = n if total <= budget else max(1, int(budget * n / total))
        picks = np.arange(n) if share >= n else np.sort(rng.choice(n, share, replace=False))
        g = grads_once.get(name)
        g = np.zeros(x0.shape) if g is None else np.asarray(g, dtype=np.float64)
        jac = None if result.jacobian is None else np.asarray(result.jacobian[name], np.float64)
        est_g, got_g, est_j, got_j = [], [], [], []
        for k in picks:
            h = eps * max(1.0, abs(float(x0.flat[k])))
            xp, xm = x0.copy(), x0.copy()
            xp.flat[k] += h
            xm.flat[k] -= h
            fp = autograd.forward(_as64(graph), {i: xp}, upto=out)[out]
            fm = autograd.forward(_as64(graph), {i: xm}, upto=out)[out]
            col = (np.asarray(fp, np.float64) - np.asarray(fm, np.float64)) / (2 * h)
            est_g.append(float(np.sum(cot * col)))
            got_g.append(float(g.flat[k]))
            if jac is not None:
                est_j.append(col.reshape(-1))
                got_j.append(jac.reshape(col.size, n)[:, k])
        checked += len(picks)
        ok, a, r = compare(est_g, got_g, rtol, atol)
        passed &= ok
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
        if est_j:
            ok, a, r = compare(np.concatenate(est_j), np.concatenate(got_j), rtol, atol)
            passed &= ok
            worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
    report = {"passed": passed, "max_abs_error": worst_abs, "max_rel_error": worst_rel,
              "rtol": rtol, "atol": atol, "elements_checked": checked, "elements_total": total}
    return report


_AS64 = {}


def _as64(graph):
    """The graph evaluated in float64 (finite differences in float32 would be noise)."""
    if graph.dtype == np.float64:
        return graph
    key = id(graph)
    if key not in _AS64:
        import copy
        g = copy.copy(graph)
        g.dtype = np.dtype(np.float64)
        _AS64.clear()
        _AS64[key] = g
    return _AS64[key]
