"""Reductions: sum mean prod max min norm logsumexp softmax log_softmax.

`dim` is normalised to a negative axis by `infer`, so every rule works under leading batch
axes of the cotangent. A full max/min reduction splits the gradient evenly over ties
(PyTorch's evenly_distribute_backward); with `dim` it goes to the first maximal index
(max(dim).values, value_selecting_reduction_backward).
"""
from __future__ import annotations

import math

import numpy as np

from . import Kink, Op, norm_dim, register, traced
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


def _exclusive_prod(x, axis):
    """Product of all other elements along `axis` (exact with zeros, like prod_backward)."""
    ones = np.ones_like(np.take(x, [0], axis=axis))
    before = np.cumprod(np.concatenate([ones, np.take(x, range(x.shape[axis] - 1), axis=axis)],
                                       axis=axis), axis=axis)
    rev = np.flip(x, axis=axis)
    after = np.cumprod(np.concatenate([ones, np.take(rev, range(x.shape[axis] - 1), axis=axis)],
                                      axis=axis), axis=axis)
    return before * np.flip(after, axis=axis)


def _exclusive_scan(x, axis):
    """_exclusive_prod as table ops a traced rule can record (there is no cumprod op): the
    products before and after each element by doubling (log2(n) steps of a product with a
    shifted copy), only multiplications, slices and concatenations with ones. Exact with
    zeros like the cumprods, and so is its derivative (the product of the others but one,
    which torch's cumprod_backward computes under GradMode too); O(n log n) at every order."""
    n = x.shape[axis]

    def part(a, start, stop):
        return a[(slice(None),) * axis + (slice(start, stop),)]

    def ones(k):
        return np.ones(x.shape[:axis] + (k,) + x.shape[axis + 1:])
    before = np.concatenate([ones(1), part(x, 0, n - 1)], axis=axis)
    after = np.concatenate([part(x, 1, n), ones(1)], axis=axis)
    step = 1
    while step < n:
        before = before * np.concatenate([ones(step), part(before, 0, n - step)], axis=axis)
        after = after * np.concatenate([part(after, step, n), ones(step)], axis=axis)
        step *= 2
    return before * after


def prod_vjp(g, ans, x, dim=None, keepdim=False):
    # prod_backward, case by case as PyTorch: a 0-d input passes grad; with no zero in the
    # input, grad * result / input (so an infinite element gives NaN); a full product with
    # two or more zeros, exactly 0 (whatever grad is) unless GradMode is on (a traced rule:
    # then the double backward differentiates the exclusive products, whose mixed
    # derivatives are not 0); otherwise the exclusive products (prod_safe_zeros_backward),
    # for every slice when any slice holds a zero
    batch = g.shape[: g.ndim - ans.ndim]
    if x.size == 0:
        return np.zeros(batch + x.shape)
    if x.ndim == 0:
        return g
    gu = unreduce(g, ans, x, dim, keepdim)
    zeros = np.count_nonzero(x == 0)
    if zeros == 0:
        return gu * (_kd(ans, x, dim, keepdim) / x)
    exclusive = _exclusive_scan if traced(x) else _exclusive_prod
    if dim is None:
        if zeros > 1 and not traced(x):
            return np.zeros(batch + x.shape, dtype=np.result_type(g, x))
        others = exclusive(x.reshape(-1), 0).reshape(x.shape)
    else:
        others = exclusive(x, x.ndim + dim)
    return gu * others


def prod_jvp(tangents, ans, x, dim=None, keepdim=False):
    # (prod_backward(ones, self_p, result) * self_t).sum(dim): under torch.func the input is
    # subclass-like, so prod_backward always takes prod_safe_zeros_backward, the exclusive
    # products (no result / input, so an infinite element does not give inf / inf = NaN)
    (t,) = tangents
    if x.ndim == 0:
        return t
    if x.size == 0:         # prod_safe_zeros_backward passes grad (ones) for no element
        return np.sum(t, axis=_axis(dim), keepdims=keepdim)
    if dim is None:
        others = np.reshape(_exclusive_scan(np.reshape(x, (-1,)), 0), x.shape)
    else:
        others = _exclusive_scan(x, x.ndim + dim)
    return np.sum(others * t, axis=_axis(dim), keepdims=keepdim)


reduction("prod", lambda x, dim=None, keepdim=False: np.prod(x, axis=_axis(dim), keepdims=keepdim),
          prod_vjp, by_dim("ProdBackward0", "ProdBackward1"),
          lambda sp, x, dim=None, keepdim=False, **_: S.oprod(sp, x, dim, keepdim),
          _sample("prod(x)", "prod(x, dim=0)"), jvp=prod_jvp)


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


def softmax_infer(op_name):
    def infer(shapes, params):
        (shape,) = shapes
        return shape, dict(params, dim=norm_dim(op_name, params.get("dim", -1), len(shape)))
    return infer


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
            softmax_infer("softmax"), "SoftmaxBackward0", "reduction",
            sympy=lambda sp, x, dim=-1, _at=None: softmax_form(sp, x, dim, _at),
            samples=(("softmax(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("softmax(x, dim=0)", {"x": (2, 3)}, (-2.0, 2.0)))))
register(Op("log_softmax", "x, dim:int=-1", log_softmax,
            # log_softmax_backward_data: g - exp(y) * sum(g, dim)
            (lambda g, ans, x, dim=-1: g - np.exp(ans) * _dimsum(g, dim, x),),
            softmax_infer("log_softmax"), "LogSoftmaxBackward0", "reduction",
            sympy=lambda sp, x, dim=-1, _at=None: log_softmax_form(sp, x, dim, _at),
            samples=(("log_softmax(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("log_softmax(x, dim=0)", {"x": (2, 3)}, (-2.0, 2.0)))))
