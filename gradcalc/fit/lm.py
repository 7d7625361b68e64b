"""Levenberg–Marquardt least squares on a residual vector, and curve_fit's uncertainty report.

The caller supplies r(p) and J(p) over a flat parameter vector (gradcalc's batched autograd
pass gives the Jacobian exactly); this module owns the damped Gauss–Newton iteration, its
stopping rules and the report: asymptotic standard errors and the correlation matrix exactly
as scipy.optimize.curve_fit computes them. It uses numpy only, never differentiates anything
itself, and never prints; progress goes to the caller's callback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.linalg import lapack_lite

from ..errors import GradcalcError

# J^T J by dot products of its columns from this many rows, up to this many columns
GRAM_DOTS_ROWS = 1 << 14
GRAM_DOTS_COLUMNS = 6

Residuals = Callable[[np.ndarray], np.ndarray]
Jacobian = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Layout:
    """Where each named parameter lives in the flat vector LM works on: the names in
    `--params` order and their shapes (row-major elements, as the correlation is ordered)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, params: dict[str, np.ndarray]) -> "Layout":
        return cls(tuple(params), tuple(np.shape(v) for v in params.values()))

    def pack(self, params: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.ravel(params[n]).astype(np.float64) for n in self.names])

    def unpack(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        sizes = [int(np.prod(s)) for s in self.shapes]
        parts = np.split(np.asarray(vector), np.cumsum(sizes)[:-1])
        return {n: part.reshape(s) for n, s, part in zip(self.names, self.shapes, parts)}


@dataclass(frozen=True)
class LMOptions:
    """When to stop. `iterations` is `--epochs` for lm (each iteration takes one step and
    evaluates one Jacobian); `tol` is `--tol`: stop when the sum of squared residuals falls
    by less than tol relative, actual and predicted; `xtol`: stop when a step moves the
    parameters by at most xtol relative (|d| <= xtol (|p| + xtol))."""

    iterations: int = 100
    tol: float = 1e-15
    xtol: float = 1e-10

    def __post_init__(self):
        if self.iterations < 1:
            raise GradcalcError("usage", f"--epochs must be at least 1, got {self.iterations}")
        if not self.tol >= 0:
            raise GradcalcError("usage", f"--tol must be 0 or more, got {self.tol}")


@dataclass(frozen=True)
class LMIteration:
    """What the callback sees after each taken step."""

    iteration: int
    ssr: float
    params: np.ndarray
    damping: float


@dataclass(frozen=True)
class LMResult:
    """The fit. `stopped` is SPEC 10's word ("tol", "epochs" or "nonfinite"); `reason` says
    which rule fired. `covariance` is curve_fit's pcov: inv(J^T J) * SSR / (n - p) at the
    final parameters; with n <= p, or J^T J singular, it is all +inf as in curve_fit, the
    standard errors are +inf and the correlation NaN (undefined); an exact fit (SSR 0) has
    standard errors 0 and, as 0/0, a NaN correlation too."""

    params: np.ndarray
    ssr: float
    iterations: int
    evaluations: int            # residual evaluations, trial steps included
    covariance: np.ndarray
    stderr: np.ndarray
    correlation: np.ndarray
    stopped: str
    reason: str


def covariance(jac: np.ndarray, ssr: float) -> np.ndarray:
    """curve_fit's pcov (absolute_sigma=False): inv(J^T J) from the QR factor R of J, as
    scipy's leastsq inverts MINPACK's R, scaled by s^2 = SSR / (n - p). J may be
    overwritten (`r_factor`)."""
    n, p = jac.shape
    if n <= p:
        return np.full((p, p), np.inf)
    r = r_factor(jac)
    try:
        inv_r = np.linalg.inv(r)
    except np.linalg.LinAlgError:
        return np.full((p, p), np.inf)
    pcov = (inv_r @ inv_r.T) * (ssr / (n - p))
    return np.full((p, p), np.inf) if np.isnan(pcov).any() else pcov


def r_factor(jac: np.ndarray) -> np.ndarray:
    """R of J = QR, bit for bit what np.linalg.qr(jac, mode="r") gives (the same LAPACK
    dgeqrf), factorised in J's own memory when J is column-major float64 (lm's columns),
    which it overwrites: numpy's qr works in two fresh copies of J, whose pages cost more
    than the factorisation (issue 15, figure 17c: about 2 ms at 10^5 x 3)."""
    n, p = jac.shape
    a = np.asfortranarray(jac, dtype=np.float64).T      # J column-major: (p, n) row-major
    tau, work = np.empty(p), np.empty(1)
    lapack_lite.dgeqrf(n, p, a, n, tau, work, -1, 0)    # asks for its workspace's size
    work = np.empty(int(work[0]))
    lapack_lite.dgeqrf(n, p, a, n, tau, work, work.size, 0)
    return np.triu(a[:, :p].T)


def uncertainty(pcov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors sqrt(diag(pcov)) and the correlation pcov_ij / (s_i s_j)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        stderr = np.sqrt(np.diag(pcov))
        return stderr, pcov / np.outer(stderr, stderr)


@dataclass
class _State:
    """The current point of the iteration: p, r(p), SSR, and J^T J and J^T r there."""

    params: np.ndarray
    res: np.ndarray
    ssr: float
    jtj: np.ndarray | None = None
    grad: np.ndarray | None = None

    def linearise(self, jac: np.ndarray) -> None:
        self.jtj, self.grad = _gram(jac), jac.T @ self.res
        self.res = None     # the caller's array, which its next call may overwrite


def _gram(jac: np.ndarray) -> np.ndarray:
    """J^T J: BLAS's syrk (what numpy calls for jac.T @ jac), except on a tall J of a few
    columns, where syrk takes several times as long as one dot product per pair of columns
    (10^5 x 3: 0.55 ms against 0.10; 10^5 x 6: 0.65 against 0.37; at 10^3 rows, or 8
    columns, syrk is as fast or faster), and an lm iteration is a few passes over J (issue
    15, figure 17c). The two round differently, in the last bits."""
    n, p = jac.shape
    if n < GRAM_DOTS_ROWS or p > GRAM_DOTS_COLUMNS:
        return jac.T @ jac
    cols = jac.T
    gram = np.empty((p, p))
    for i in range(p):
        for j in range(i, p):
            gram[i, j] = gram[j, i] = cols[i] @ cols[j]
    return gram


def _finite(x) -> bool:
    return bool(np.all(np.isfinite(x)))


def _jacobian(jacobian: Jacobian, p: np.ndarray, rows: int) -> np.ndarray:
    return np.asarray(jacobian(p), dtype=np.float64).reshape(rows, p.size)


def levenberg_marquardt(residuals: Residuals, jacobian: Jacobian, p0: np.ndarray,
                        options: LMOptions = LMOptions(),
                        on_iteration: Callable[[LMIteration], None] | None = None) -> LMResult:
    """Minimise |r(p)|^2 from p0 (in float64 whatever the caller's dtype). `jacobian(p)` is
    only called with the p of the latest `residuals(p)` call, so a caller may reuse that
    forward pass; and each array either returns is read before that function is called
    again, so a caller may write every call's result into the same array. The last
    Jacobian, when column-major float64, is overwritten by the covariance's QR (`r_factor`).

    Damping (Marquardt 1963, with Moré 1978's scaling): each trial step solves (J^T J + lam D^2)
    d = -J^T r. D^2 holds each squared column norm of J, the largest seen so far (Moré's running
    maximum, so a column that fades keeps its damping; a zero column gets 1), which makes the
    method blind to the parameters' scales. lam starts at 1e-3 and follows the gain ratio rho =
    actual / predicted reduction (Nielsen 1999): a step with rho > 0 is taken and lam *=
    max(1/3, 1 - (2 rho - 1)^3); otherwise lam grows by nu, and nu doubles, until a step
    succeeds or becomes negligible. The p-by-p normal equations keep an iteration at two
    products over a tall J, `_gram` and J^T r (numpy's QR of J costs ten times more); their
    squared condition number can only slow the iteration, as r and J^T r are evaluated
    exactly at every point. The covariance, whose accuracy is the report, comes from the QR
    factor R of J, as in scipy.
    """
    p = np.array(p0, dtype=np.float64).ravel()
    res = np.asarray(residuals(p), dtype=np.float64).ravel()
    evaluations = 1
    state = _State(p, res, float(res @ res))
    if not _finite(state.ssr):
        return _finish(state, None, 0, evaluations, "nonfinite", "residuals at the start")
    jac = _jacobian(jacobian, p, res.size)
    scale = np.zeros(p.size)
    lam, nu = 1e-3, 2.0
    for iteration in range(1, options.iterations + 1):
        if not _finite(jac):
            return _finish(state, None, iteration - 1, evaluations, "nonfinite",
                           "Jacobian at the current parameters")
        state.linearise(jac)
        scale = np.maximum(scale, np.diag(state.jtj))   # squared column norms of J
        damp = np.where(scale > 0, scale, 1.0)
        if state.ssr == 0 or not np.any(state.grad):
            return _finish(state, jac, iteration - 1, evaluations, "tol", "gradient is zero")
        while True:
            step, predicted = _damped_step(state, damp, lam)
            small = np.linalg.norm(step) <= options.xtol * (np.linalg.norm(state.params)
                                                            + options.xtol)
            trial = state.params + step
            trial_res = np.asarray(residuals(trial), dtype=np.float64).ravel()
            evaluations += 1
            trial_ssr = float(trial_res @ trial_res)
            actual = state.ssr - trial_ssr if _finite(trial_ssr) else -np.inf
            rho = actual / predicted if predicted > 0 else -np.inf
            if rho > 0:
                break
            # a step that does not lower the sum (or leaves the finite region) is refused
            lam, nu = lam * nu, nu * 2
            if small or not np.isfinite(lam):
                return _finish(state, jac, iteration - 1, evaluations, "tol",
                               "no step lowers the sum of squares")
        lam *= max(1 / 3, 1 - (2 * rho - 1) ** 3)
        nu = 2.0
        old = state.ssr
        state = _State(trial, trial_res, trial_ssr)
        jac = _jacobian(jacobian, trial, res.size)
        if on_iteration is not None:
            on_iteration(LMIteration(iteration, trial_ssr, trial.copy(), lam))
        if small:
            return _finish(state, jac, iteration, evaluations, "tol",
                           f"relative step below xtol {options.xtol:g}")
        if actual <= options.tol * old and predicted <= options.tol * old:
            return _finish(state, jac, iteration, evaluations, "tol",
                           f"relative reduction below tol {options.tol:g}")
    return _finish(state, jac, options.iterations, evaluations, "epochs",
                   f"{options.iterations} iterations")


def _damped_step(state: _State, damp: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """The step d solving (J^T J + lam D^2) d = -J^T r, and the reduction of |r|^2 that the
    linear model predicts for it, -(2 g.d + d^T J^T J d)."""
    system = state.jtj + np.diag(lam * damp)
    try:
        step = np.linalg.solve(system, -state.grad)
    except np.linalg.LinAlgError:       # only with lam underflowed: refuse, lam grows
        return np.zeros_like(state.grad), 0.0
    return step, float(-(2 * state.grad @ step + step @ state.jtj @ step))


def _finish(state: _State, jac: np.ndarray | None, iterations: int, evaluations: int,
            stopped: str, reason: str) -> LMResult:
    p = state.params.size
    pcov = (covariance(jac, state.ssr) if jac is not None
            else np.full((p, p), np.nan))
    stderr, corr = uncertainty(pcov)
    if jac is not None and not np.all(np.isfinite(pcov)):
        corr = np.full((p, p), np.nan)
    return LMResult(params=state.params, ssr=state.ssr, iterations=iterations,
                    evaluations=evaluations, covariance=pcov, stderr=stderr, correlation=corr,
                    stopped=stopped, reason=reason)
