"""Reductions and scans along a dim: sum mean prod cumprod max min norm logsumexp softmax
log_softmax.

`dim` is normalised to a negative axis by `infer`, so every rule works under leading batch
axes of the cotangent. A full max/min reduction splits the gradient evenly over ties
(PyTorch's evenly_distribute_backward); with `dim` it goes to the first maximal index
(max(dim).values, value_selecting_reduction_backward).
"""
from __future__ import annotations

import math

import numpy as np

from . import Kink, Op, norm_dim, recorded, register, traced
from ..errors import GradcalcError
from . import symforms as S
from .elementwise import sgn


def reduce_infer(op_name):
    def infer(shapes, params):
        (shape,) = shapes
        dim, keepdim = params.get("dim"), params.get("keepdim", False)
        if dim is None:
            out = tuple(1 for _ in shape) if keepdim else ()
        else:
            dim = norm_dim(op_name, dim, len(shape))
            if len(shape) == 0:
                out = ()
                dim = None
            else:
                axis = len(shape) + dim
                out = shape[:axis] + ((1,) if keepdim else ()) + shape[axis + 1:]
        return out, dict(params, dim=dim, keepdim=bool(keepdim))
    return infer


def unreduce(g, ans, x, dim, keepdim):
    """`g` (batch + ans.shape) reshaped so it broadcasts against batch + x.shape."""
    nb = g.ndim - ans.ndim
    if keepdim:
        return g
    if dim is None:
        return g.reshape(g.shape[:nb] + (1,) * x.ndim)
    return np.expand_dims(g, dim)


def _kd(ans, x, dim, keepdim):
    """`ans` with the reduced axes kept, to broadcast against x."""
    if keepdim:
        return ans
    if dim is None:
        return np.reshape(ans, (1,) * x.ndim)
    return np.expand_dims(ans, dim)


def _axis(dim):
    return None if dim is None else dim


def _count(x, dim):
    return x.size if dim is None else x.shape[dim]


def _sample(expr_full, expr_dim, domain=(-2.0, 2.0)):
    return ((expr_full, {"x": (2, 3)}, domain), (expr_dim, {"x": (2, 3)}, domain))


def by_dim(without, with_dim):
    """Node name that depends on whether a dim was given (sum() vs sum(dim=...))."""
    return lambda site: without if site.params.get("dim") is None else with_dim


# --- sympy forward forms, on object arrays (see symforms). A shift by a constant (the finite
# max of the input at the check's point, `_at`) keeps exp() finite and changes no derivative.
def _shift(_at, dim):
    if _at is None:
        return 0.0
    a = np.asarray(_at[0], dtype=np.float64)
    if a.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        m = np.max(a, axis=dim, keepdims=True)
    return np.where(np.isfinite(m), m, 0.0)


def _drop(out, dim, keepdim):
    out = S.obj(out)                  # numpy hands back a bare object for 0-d arithmetic
    if keepdim:
        return out
    return out.reshape(()) if dim is None else np.squeeze(out, axis=dim)


def logsumexp_form(sp, x, dim, keepdim, _at):
    m = _shift(_at, dim)
    s = S.osum(sp, S.omap(sp.exp, np.exp, x - m), dim, keepdims=True)
    return _drop(S.omap(sp.log, np.log, s) + m, dim, keepdim)


def norm_form(sp, x, p, dim, keepdim, _at):
    if p == 0:      # the count of nonzero entries: piecewise constant
        nz = S.omap(lambda v: sp.Piecewise((0, sp.Eq(v, 0)), (1, True)),
                    lambda v: (v != 0) * 1.0, x)
        return S.osum(sp, nz, dim, keepdim)
    if p == 2:
        return S.omap(sp.sqrt, np.sqrt, S.osum(sp, x * x, dim, keepdim))
    a = S.omap(sp.Abs, np.abs, x)
    if p == 1:
        return S.osum(sp, a, dim, keepdim)
    if p == np.inf:
        return S.omax(sp, a, dim, keepdim)
    if p == -np.inf:
        return S.omin(sp, a, dim, keepdim)
    pe = sp.Integer(int(p)) if float(p).is_integer() else sp.Float(p)
    s = S.osum(sp, S.omap(lambda v: v ** pe, lambda v: v ** p, a), dim, keepdim)
    return S.omap(lambda v: v ** (1 / pe), lambda v: v ** (1.0 / p), s)


def softmax_form(sp, x, dim, _at):
    if np.ndim(x) == 0:
        return S.constant(1.0)
    e = S.omap(sp.exp, np.exp, x - _shift(_at, dim))
    return e / S.osum(sp, e, dim, keepdims=True)


def log_softmax_form(sp, x, dim, _at):
    if np.ndim(x) == 0:
        return S.constant(0.0)
    z = x - _shift(_at, dim)
    return z - S.omap(sp.log, np.log, S.osum(sp, S.omap(sp.exp, np.exp, z), dim, keepdims=True))


def _maxmin_form(name):
    extreme = S.omax if name == "max" else S.omin
    return lambda sp, x, dim=None, keepdim=False, **_: extreme(sp, x, dim, keepdim)


def reduction(name, forward, rule, torch, sympy, samples, doc="", jvp=None):
    register(Op(name, "x, dim:int?=None, keepdim:bool=False", forward, (rule,),
                reduce_infer(name), torch, "reduction", sympy=sympy, samples=samples, doc=doc,
                jvp=jvp))


reduction("sum", lambda x, dim=None, keepdim=False: np.sum(x, axis=_axis(dim), keepdims=keepdim),
          lambda g, ans, x, dim=None, keepdim=False: unreduce(g, ans, x, dim, keepdim),
          by_dim("SumBackward0", "SumBackward1"),
          lambda sp, x, dim=None, keepdim=False, **_: S.osum(sp, x, dim, keepdim),
          _sample("sum(x)", "sum(x, dim=1)"))
reduction("mean", lambda x, dim=None, keepdim=False: np.mean(x, axis=_axis(dim), keepdims=keepdim),
          lambda g, ans, x, dim=None, keepdim=False:
              unreduce(g, ans, x, dim, keepdim) / _count(x, dim),
          by_dim("MeanBackward0", "MeanBackward1"),
          lambda sp, x, dim=None, keepdim=False, **_:
              S.osum(sp, x, dim, keepdim) / max(_count(x, dim), 1),
          _sample("mean(x)", "mean(x, dim=-1)"))


def _part(x, axis, start, stop):
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _safe_zeros(x, axis):
    """prod_safe_zeros_backward's product of all other elements along `axis` (the exclusive
    products, exact with zeros): cumprod([1, x_0 .. x_n-2]) times the reverse one, flipped.
    On traced arrays it records those cumprods, so that its derivatives are cumprod's."""
    n = x.shape[axis]
    ones = np.ones(x.shape[:axis] + (1,) + x.shape[axis + 1:], dtype=x.dtype)
    if n == 1:
        return ones
    normal = np.cumprod(np.concatenate([ones, _part(x, axis, 0, n - 1)], axis=axis), axis=axis)
    reverse = np.cumprod(np.concatenate([ones, _flip(_part(x, axis, 1, n), axis)],
                                        axis=axis), axis=axis)
    return normal * _flip(reverse, axis)


def _exclusive_scan(x, axis):
    """_safe_zeros by doubling (log2(n) steps of a product with a shifted copy), only
    multiplications, slices and concatenations with ones: the traced exclusive products
    where the input holds a zero, whose derivatives of every order are the true ones (the
    product of the others but one; torch's cumprod_jvp is not from its second order on)."""
    n = x.shape[axis]

    def ones(k):
        return np.ones(x.shape[:axis] + (k,) + x.shape[axis + 1:])
    before = np.concatenate([ones(1), _part(x, axis, 0, n - 1)], axis=axis)
    after = np.concatenate([_part(x, axis, 1, n), ones(1)], axis=axis)
    step = 1
    while step < n:
        before = before * np.concatenate([ones(step), _part(before, axis, 0, n - step)], axis=axis)
        after = after * np.concatenate([_part(after, axis, step, n), ones(step)], axis=axis)
        step *= 2
    return before * after


def prod_vjp(g, ans, x, dim=None, keepdim=False):
    # prod_backward, case by case as PyTorch: a 0-d input passes grad; with no zero in the
    # input, grad * result / input (so an infinite element gives NaN); a full product with
    # two or more zeros, exactly 0 (whatever grad is) unless GradMode is on (a traced rule:
    # then the double backward differentiates the exclusive products, whose mixed
    # derivatives are not 0); otherwise the exclusive products (prod_safe_zeros_backward),
    # for every slice when any slice holds a zero, as torch by two cumprods; traced, by the
    # scan of products (deliberately: torch's double backward runs cumprod's GradMode
    # backward, O(n^2) omitted products, where the scan stays O(n log n) per order; README)
    batch = g.shape[: g.ndim - ans.ndim]
    if x.size == 0:
        return np.zeros(batch + x.shape)
    if x.ndim == 0:
        return g
    gu = unreduce(g, ans, x, dim, keepdim)
    zeros = np.count_nonzero(x == 0)
    if zeros == 0:
        return gu * (_kd(ans, x, dim, keepdim) / x)
    if dim is None and zeros > 1 and not traced(x):
        return np.zeros(batch + x.shape, dtype=np.result_type(g, x))
    return gu * _others(_exclusive_scan if traced(x) else _safe_zeros, x, dim)


def _others(exclusive, x, dim):
    """The exclusive products along `dim`, or over every element when dim is None."""
    if dim is None:
        return np.reshape(exclusive(np.reshape(x, (-1,)), 0), x.shape)
    return exclusive(x, x.ndim + dim)


def prod_jvp(tangents, ans, x, dim=None, keepdim=False):
    # (prod_backward(ones, self_p, result) * self_t).sum(dim): under torch.func the input is
    # subclass-like, so prod_backward always takes prod_safe_zeros_backward, the exclusive
    # products (no result / input, so an infinite element does not give inf / inf = NaN)
    (t,) = tangents
    if x.ndim == 0:
        return t
    if x.size == 0:         # prod_safe_zeros_backward passes grad (ones) for no element
        return np.sum(t, axis=_axis(dim), keepdims=keepdim)
    # over a zero, deliberately, the exclusive products by a scan of products, whose
    # derivatives of every order are the true ones (torch's, through cumprod_jvp, are not
    # from order 3 on: README)
    others = _others(_exclusive_scan if np.any(x == 0) else _safe_zeros, x, dim)
    return np.sum(others * t, axis=_axis(dim), keepdims=keepdim)


reduction("prod", lambda x, dim=None, keepdim=False: np.prod(x, axis=_axis(dim), keepdims=keepdim),
          prod_vjp, by_dim("ProdBackward0", "ProdBackward1"),
          lambda sp, x, dim=None, keepdim=False, **_: S.oprod(sp, x, dim, keepdim),
          _sample("prod(x)", "prod(x, dim=0)"), jvp=prod_jvp)


def along_infer(op_name):
    def infer(shapes, params):
        (shape,) = shapes
        return shape, dict(params, dim=norm_dim(op_name, params.get("dim", -1), len(shape)))
    return infer


def _flip(x, dim):
    """torch.flip along `dim`: on traced arrays one equation of FLIP (the table's index
    refuses a negative step, as torch, and n slices in a cat would cost O(n) equations)."""
    return recorded(FLIP, x, dim=dim)


# torch.flip, which prod_safe_zeros_backward and cumprod_backward call: outside the
# table's names (ops.recorded); its own rule is the flip of the cotangent
FLIP = Op("flip", "x, dim:int", lambda x, dim: np.flip(x, axis=dim),
          (lambda g, ans, x, dim: _flip(g, dim),), along_infer("flip"), "FlipBackward0",
          "shape", named=False, doc="torch.flip, for prod's and cumprod's rules")


# cumprod(x, dim): torch.cumprod, its cumprod_backward and cumprod_jvp
def cumprod(x, dim):
    return np.cumprod(np.reshape(x, x.shape or (1,)), axis=dim).reshape(x.shape)


def _cumsum(w, dim):
    """torch's cumsum as table adds (there is no cumsum op), the same program on numpy and
    traced arrays: a doubling scan, log2(n) steps of an add with a copy shifted by zeros.
    Rounds otherwise than a running sum, with the same non-finite results (a sum holding
    inf and -inf, or a NaN, is NaN in any order); + 0 as torch's sum starts at +0 (no -0)."""
    axis, n = w.ndim + dim, w.shape[dim]
    step = 1
    while step < n:
        zeros = np.zeros(w.shape[:axis] + (step,) + w.shape[axis + 1:], dtype=w.dtype)
        w = w + np.concatenate([zeros, _part(w, axis, 0, n - step)], axis=axis)
        step *= 2
    return w + 0.0


def _reversed_cumsum(w, dim):
    return _flip(_cumsum(_flip(w, dim), dim), dim)


def cumprod_vjp(g, ans, x, dim):
    # cumprod_backward: with no zero, reversed_cumsum(result * grad) / input; with zeros,
    # the masked O(n) formula, or under GradMode (a traced rule) the omitted products,
    # whose derivative is cumprod's second derivative
    if x.size <= 1 or x.shape[dim] == 1:
        return g
    if not np.any(x == 0):
        return _reversed_cumsum(ans * g, dim) / x
    if traced(x):
        return _omitted_products(g, x, dim)
    return _masked_cumprod_vjp(g, ans, x, dim)


def _masked_cumprod_vjp(g, ans, x, dim):
    """cumprod_backward's O(n) path over zeros: up to the first zero z1 the formula without
    zeros; at z1, prod(x[:z1]) * sum(grad[z1:z2] * cumprod(x[z1+1:z2])) (z2 the second zero
    or the end); 0 after it, whatever the grad there (a NaN there is dropped)."""
    count = np.cumsum(x == 0, axis=dim)
    before, span = count == 0, count == 1
    with np.errstate(all="ignore"):
        head = _reversed_cumsum(np.where(before, ans * g, 0.0), dim) / x
    pos = np.arange(x.shape[dim]).reshape((-1,) + (1,) * (-dim - 1))
    z1 = np.argmax(span, axis=dim, keepdims=True)
    first = (pos == z1) & span
    inner = np.cumprod(np.where(span & ~first, x, 1.0), axis=dim)
    at_z1 = np.sum(inner * np.where(span, g, 0.0), axis=dim, keepdims=True)
    lead = np.take_along_axis(ans, np.maximum(z1 - 1, 0), axis=dim)
    at_z1 = at_z1 * np.where(z1 == 0, 1.0, lead)
    return np.where(first, at_z1, np.where(before, head, 0.0))


def _omitted_products(g, x, dim):
    """cumprod_backward under GradMode: for each k, sum over j >= k of grad_j times the
    product of x_0 .. x_j but x_k, as table ops (prod, cumprod, cat), stacked along dim."""
    axis, n = x.ndim + dim, x.shape[dim]
    slices = []
    for k in range(n):
        after = np.cumprod(_part(x, axis, k + 1, n), axis=axis) if k < n - 1 else None
        if k == 0:
            ones = np.ones(x.shape[:axis] + (1,) + x.shape[axis + 1:], dtype=x.dtype)
            omitted = np.concatenate([ones, after], axis=axis)
        else:
            until = np.prod(_part(x, axis, 0, k), axis=axis, keepdims=True)
            omitted = until if after is None else np.concatenate([until, until * after],
                                                                 axis=axis)
        tail = g[(Ellipsis, slice(k, None)) + (slice(None),) * (-dim - 1)]
        slices.append(np.sum(tail * omitted, axis=dim))
    return np.stack(slices, axis=dim)


def cumprod_jvp(tangents, ans, x, dim):
    # cumprod_jvp: (self_t / self_p).cumsum(dim) * result; from each slice's first zero on,
    # cumprod(where(first zero, self_t, self_p)) (a 0-d zero: self_t)
    (t,) = tangents
    with np.errstate(all="ignore"):
        gradient = (t / x if x.ndim == 0 else _cumsum(t / x, dim)) * ans
    zeros = x == 0
    if not np.any(zeros):
        return gradient
    if x.ndim == 0:
        return np.where(zeros, t, gradient)
    pos = np.arange(x.shape[dim]).reshape((-1,) + (1,) * (-dim - 1))
    z1 = np.argmax(zeros, axis=dim, keepdims=True)
    seen = np.any(zeros, axis=dim, keepdims=True)
    new = np.cumprod(np.where((pos == z1) & seen, t, x), axis=dim)
    return np.where((pos >= z1) & seen, new, gradient)


def cumprod_form(sp, x, dim, **_):
    if np.ndim(x) == 0:
        return S.obj(x)
    axis = np.ndim(x) + dim
    parts = [S.oprod(sp, _part(S.obj(x), axis, 0, k + 1), axis, keepdims=True)
             for k in range(x.shape[axis])]
    return np.concatenate(parts, axis=axis)


register(Op("cumprod", "x, dim:int", cumprod, (cumprod_vjp,), along_infer("cumprod"),
            "CumprodBackward0", "reduction", sympy=cumprod_form,
            samples=(("cumprod(x, 0)", {"x": (4,)}, (-2.0, 2.0)),
                     ("cumprod(x, dim=1)", {"x": (2, 3)}, (-2.0, 2.0))),
            doc="torch.cumprod: the products of x's elements up to each along dim",
            jvp=cumprod_jvp))


def nonempty_infer(op_name, what):
    """reduce_infer, refusing as torch does a reduction with no identity over no element: a
    full one of an empty array, or one along a dim of size 0 (max(c[3:], dim=1) of a (0, 3)
    slice is an empty result, as in torch)."""
    base = reduce_infer(op_name)

    def infer(shapes, params):
        out, params = base(shapes, params)
        (shape,) = shapes
        dim = params["dim"]
        if math.prod(shape) == 0 and (dim is None or shape[dim] == 0):
            where = "an empty array" if dim is None else f"dim {dim + len(shape)} of size 0"
            raise GradcalcError("call", f"{op_name}(): cannot compute {what} over {where}: "
                                        "it has no identity (torch raises)")
        return out, params
    return infer


def _maxmin(name, npf, argf):
    def forward(x, dim=None, keepdim=False):
        return npf(x, axis=_axis(dim), keepdims=keepdim)

    def rule(g, ans, x, dim=None, keepdim=False):
        gu = unreduce(g, ans, x, dim, keepdim)
        if dim is None:
            # evenly_distribute_backward: mask = isnan(x) if the result is nan else x == result;
            # zeros.masked_fill_(mask, grad / mask.sum()), so a NaN grad stays off the others
            a = np.reshape(ans, ())
            mask = np.isnan(x) if np.isnan(a) else (x == a)
            return np.where(mask, gu / mask.sum(), 0.0)
        # value_selecting_reduction_backward: all of it to the first extreme index (a
        # scatter into zeros, so the other elements get exactly 0)
        axis = x.ndim + dim
        idx = np.expand_dims(argf(x, axis=axis), axis)
        hot = np.arange(x.shape[axis]).reshape((-1,) + (1,) * (-dim - 1)) == idx
        return np.where(hot, gu, 0.0)
    return forward, rule


def _maxmin_jvp(rule):
    def jvp(tangents, ans, x, dim=None, keepdim=False):
        (t,) = tangents
        if dim is None:
            # evenly_read_jvp: mask = input == result, with no NaN exception (a NaN result
            # equals no element: (t / 0) * 0 = NaN), then sum(mask * (t / count))
            mask = x == np.reshape(ans, (1,) * x.ndim)
            return np.sum(mask * (t / np.sum(mask)))
        # gather_with_keepdimed_indices: the tangent at the index the backward chose (the
        # backward's one-hot select of it, summed over the dim)
        hot = rule(np.ones_like(ans), ans, x, dim, keepdim)
        return np.sum(np.where(hot != 0, t, 0.0), axis=dim, keepdims=keepdim)
    return jvp


def _extreme_ties(npf):
    def pred(x, dim=None, keepdim=False, **_):
        if x.size == 0:
            return False
        m = npf(x, axis=dim, keepdims=True)
        return np.sum(x == m, axis=dim, keepdims=keepdim) > 1
    return pred


for _name, _npf, _argf, _torch in (("max", np.max, np.argmax, "Max"),
                                   ("min", np.min, np.argmin, "Min")):
    _f, _r = _maxmin(_name, _npf, _argf)
    # dim by keyword only: SPEC 2 makes a second positional argument an error, since
    # max(x, 0) written for an elementwise maximum would otherwise reduce over dim 0
    register(Op(_name, "x, *, dim:int?=None, keepdim:bool=False", _f, (_r,),
                nonempty_infer(_name, f"the {_name}imum"),
                by_dim(f"{_torch}Backward1", f"{_torch}Backward0"), "reduction",
                sympy=_maxmin_form(_name),
                samples=_sample(f"{_name}(x)", f"{_name}(x, dim=1)"),
                hint=f"{_name}(x) reduces; for the elementwise {_name}imum of two arrays use "
                     f"{_name}imum(x, y)",
                doc="full reduction: ties share the gradient evenly; with dim: first index",
                kinks=(Kink(f"a full {_name} splits the gradient evenly over ties; {_name}(dim=) "
                            f"gives it all to the first {_name}imal index",
                            _extreme_ties(_npf)),),
                jvp=_maxmin_jvp(_r)))


def logsumexp(x, dim=None, keepdim=False):
    m = np.max(x, axis=_axis(dim), keepdims=True) if x.size else np.zeros((1,) * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    s = np.log(np.sum(np.exp(x - m), axis=_axis(dim), keepdims=True)) + m
    if not keepdim:
        s = np.squeeze(s, axis=_axis(dim)) if dim is not None else s.reshape(())
    return s


def logsumexp_jvp(t, x, dim, keepdim):
    # logsumexp_jvp: e = exp(x - amax(x)) (the exp-normalize trick; exp(x) of an empty x),
    # sum(e * t) / sum(e): finite where the backward's exp(x - result) is not
    e = np.exp(x - np.max(x, axis=dim, keepdims=True)) if x.size else np.exp(x)
    return np.sum(e * t, axis=dim, keepdims=keepdim) / np.sum(e, axis=dim, keepdims=keepdim)


reduction("logsumexp", logsumexp,
          # logsumexp_backward: grad * (self - result).exp()
          lambda g, ans, x, dim=None, keepdim=False:
              unreduce(g, ans, x, dim, keepdim) * np.exp(x - _kd(ans, x, dim, keepdim)),
          "LogsumexpBackward0", lambda sp, x, dim=None, keepdim=False, _at=None:
              logsumexp_form(sp, x, dim, keepdim, _at),
          _sample("logsumexp(x)", "logsumexp(x, dim=1)"), jvp=lambda tangents, ans, x, dim=None,
          keepdim=False: logsumexp_jvp(tangents[0], x, dim, keepdim))


# norm(x, p=2, dim=None): torch.linalg.vector_norm and its norm_backward
def norm(x, p=2.0, dim=None, keepdim=False):
    a = np.abs(x)
    ax = _axis(dim)
    if p == 2:
        return np.sqrt(np.sum(a * a, axis=ax, keepdims=keepdim))
    if p == 1:
        return np.sum(a, axis=ax, keepdims=keepdim)
    if p == np.inf:
        return np.max(a, axis=ax, keepdims=keepdim)
    if p == -np.inf:
        return np.min(a, axis=ax, keepdims=keepdim)
    if p == 0:
        return np.sum(a != 0, axis=ax, keepdims=keepdim).astype(x.dtype)
    return np.sum(a ** p, axis=ax, keepdims=keepdim) ** (1.0 / p)


def norm_vjp(g, ans, x, p=2.0, dim=None, keepdim=False):
    if p == 0:
        # the count of nonzeros: linalg_vector_norm_backward returns zeros, whatever grad is
        return np.zeros(g.shape[: g.ndim - ans.ndim] + x.shape, dtype=np.result_type(g, x))
    gu = unreduce(g, ans, x, dim, keepdim)
    n = _kd(ans, x, dim, keepdim)
    if p == 1:
        return gu * sgn(x)             # self.sgn() * grad; sgn(NaN) = 0
    if p == 2:
        # grad * (self / norm).masked_fill_(norm == 0, 0): the division is not guarded, so
        # the double backward at the zero vector is NaN as torch's (0 * -self / norm^2)
        return gu * np.where(n == 0, 0.0, x / n)
    if np.isinf(p):
        a = np.abs(x)
        mask = (a == n) | np.isnan(a)
        cnt = np.sum(mask, axis=_axis(dim), keepdims=True)
        return sgn(x) * (gu / cnt) * mask
    a = np.abs(x)
    if p < 1:
        scaled = np.sign(x) * np.where(x == 0, 0.0, a ** (p - 1))
        return scaled * gu * n ** (1 - p)
    if p < 2:
        scaled = np.sign(x) * a ** (p - 1)
    else:
        scaled = x * a ** (p - 2)
    # scale_v = grad / norm.pow(p - 1), then masked_fill_(norm == 0, 0), unguarded as torch
    scale = np.where(n == 0, 0.0, gu / n ** (p - 1))
    return scaled * scale


def norm_jvp(tangents, ans, x, p=2.0, dim=None, keepdim=False):
    # norm_jvp, branch by branch as torch: a sum of the tangents' contributions, divided by
    # the norm only after the sum (so a huge x gives a finite tangent where the backward's
    # x / norm per element would not), masked where the norm is 0
    (t,) = tangents
    ax = _axis(dim)
    if p == 0:
        return np.zeros_like(ans)       # a tangent of zeros that exists
    if p == 1:
        return np.sum(sgn(x) * t, axis=ax, keepdims=keepdim)
    if p == 2:
        s = np.sum(x * t, axis=ax, keepdims=keepdim)
        return np.where(ans == 0, 0.0, s / ans)
    n = _kd(ans, x, dim, keepdim)
    if np.isinf(p):
        is_max = (np.abs(x) == n) | (np.isnan(x) & np.isnan(n))
        count = np.sum(is_max, axis=ax, keepdims=True)
        return np.sum(sgn(x) * t * is_max / count, axis=ax, keepdims=keepdim)
    a = np.abs(x)
    if p < 1:
        s = np.sum(np.where(x == 0, 0.0, a ** (p - 1)) * (sgn(x) * t), axis=ax, keepdims=keepdim)
        return s * ans ** (1 - p)
    if p < 2:
        s = np.sum(a ** (p - 1) * (sgn(x) * t), axis=ax, keepdims=keepdim)
    else:
        s = np.sum(a ** (p - 2) * (x * t), axis=ax, keepdims=keepdim)
    return np.where(ans == 0, 0.0, s / ans ** (p - 1))


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


def norm_infer(shapes, params):
    if np.isinf(params.get("p", 2.0)):
        return nonempty_infer("norm", "the inf-norm")(shapes, params)
    return reduce_infer("norm")(shapes, params)


register(Op("norm", "x, p:number=2.0, dim:int?=None, keepdim:bool=False", norm, (norm_vjp,),
            norm_infer, "LinalgVectorNormBackward0", "reduction",
            kinks=(Kink("gradient 0 at the zero vector (sgn(x) at zeros for p <= 1; p=inf ties "
                        "share it)", _norm_kinks),),
            sympy=lambda sp, x, p=2.0, dim=None, keepdim=False, _at=None:
                norm_form(sp, x, p, dim, keepdim, _at),
            samples=(("norm(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("norm(x, p=1, dim=0)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("norm(x, p=3)", {"x": (4,)}, (0.5, 2.0)),
                     ("norm(x, p=inf, dim=1)", {"x": (2, 3)}, (-2.0, 2.0))),
            doc="torch.linalg.vector_norm; gradient 0 at the zero vector", jvp=norm_jvp))


def _shifted(x, dim):
    """x minus its max along dim, unmasked as PyTorch subtracts it: an infinite element makes
    its slice NaN, also in a 0-d array (one slice of one element: softmax(inf) is NaN, not 1).
    An empty slice has nothing to shift."""
    x1 = x.reshape(x.shape or (1,))
    if x1.size == 0:
        return x1                   # (no max to take: a traced rule records no empty max)
    return x1 - np.max(x1, axis=dim, keepdims=True)


def softmax(x, dim=-1):
    e = np.exp(_shifted(x, dim))
    return (e / np.sum(e, axis=dim, keepdims=True)).reshape(x.shape)


def log_softmax(x, dim=-1):
    shifted = _shifted(x, dim)
    return (shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))).reshape(x.shape)


def _dimsum(v, dim, x):
    # a 0-d input is one slice of one element: its sum is the element itself, so the rules
    # below give 0, the derivative of the constants softmax = 1 and log_softmax = 0
    return v if x.ndim == 0 else np.sum(v, axis=dim, keepdims=True)


register(Op("softmax", "x, dim:int=-1", softmax,
            # softmax_backward_data: y * (g - sum(g * y, dim))
            (lambda g, ans, x, dim=-1: ans * (g - _dimsum(g * ans, dim, x)),),
            along_infer("softmax"), "SoftmaxBackward0", "reduction",
            sympy=lambda sp, x, dim=-1, _at=None: softmax_form(sp, x, dim, _at),
            samples=(("softmax(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("softmax(x, dim=0)", {"x": (2, 3)}, (-2.0, 2.0)))))
register(Op("log_softmax", "x, dim:int=-1", log_softmax,
            # log_softmax_backward_data: g - exp(y) * sum(g, dim)
            (lambda g, ans, x, dim=-1: g - np.exp(ans) * _dimsum(g, dim, x),),
            along_infer("log_softmax"), "LogSoftmaxBackward0", "reduction",
            sympy=lambda sp, x, dim=-1, _at=None: log_softmax_form(sp, x, dim, _at),
            samples=(("log_softmax(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("log_softmax(x, dim=0)", {"x": (2, 3)}, (-2.0, 2.0)))))
