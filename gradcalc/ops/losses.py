"""Losses with PyTorch's signatures and mean reduction.

binary_cross_entropy clamps its logs at -100 as PyTorch does; a class-index target of
cross_entropy is never differentiated (its rule is None).
"""
from __future__ import annotations

import math

import numpy as np

from . import Kink, Op, broadcast, elementwise_infer, recorded, register, traced
from . import symforms as S
from ..errors import GradcalcError
from .elementwise import sigmoid
from .reductions import log_softmax

# PyTorch's binary_cross_entropy_backward clamps (1 - x) x at a float 1e-12, which is
# 9.99999996e-13 as a double: the grad at x = 0, t = 1 is -1 / (4 * this), to the last digit
EPSILON = float(np.float32(1e-12))


def _g(g, ndim):
    """A scalar-output cotangent (batch + ()) shaped to broadcast against an operand."""
    return g.reshape(g.shape + (1,) * ndim)


def pair_infer(name, same_shape=False):
    """mse_loss broadcasts input and target (PyTorch warns and does); the binary cross
    entropies require the target to have the input's shape (PyTorch raises)."""
    def infer(shapes, params):
        if same_shape and tuple(shapes[0]) != tuple(shapes[1]):
            raise GradcalcError("shape", f"{name}: target shape {tuple(shapes[1])} differs from "
                                         f"input shape {tuple(shapes[0])}; they must be the same, "
                                         "as in PyTorch")
        return (), dict(params, _n=math.prod(broadcast(name, *shapes)))
    return infer


def mse(x, t, _n=1):
    d = x - t
    d = d * d
    if type(d) is np.ndarray and d.size and d.dtype.kind == "f" and d.dtype.itemsize >= 4:
        # np.mean's own arithmetic (numpy/_core/_methods.py, _mean) without its Python
        # layers, 5 -> 2 us on a batch of 10 (issue 15, figure 17a): the sum in the dtype,
        # divided by the count in double precision (numpy divides by an intp), the quotient
        # rounded back to the dtype
        return np.asarray(float(np.add.reduce(d, axis=None)) / d.size, dtype=d.dtype)
    return np.asarray(np.mean(d))


def _mse_rules():
    # mse_loss_backward: norm * (input - target) * grad, norm = 2 / numel, in that order: at
    # 1e308 the gradient is finite where 2 * (input - target) would overflow (an empty input
    # has norm inf and multiplies nothing)
    def rx(g, ans, x, t, _n=1):
        norm = 2.0 / _n if _n else math.inf
        d = x - t
        return norm * d * _g(g, np.ndim(d))

    def rt(g, ans, x, t, _n=1):
        norm = 2.0 / _n if _n else math.inf
        return norm * (t - x) * _g(g, np.ndim(x - t))
    return rx, rt


def mse_form(sp, x, t, _n=1, **_):
    d = x - t
    return S.osum(sp, d * d) / _n


def mse_jvp(tangents, ans, x, t, _n=1):
    # apply_loss_reduction(mse_loss_backward(self_t, x, t, None) + mse_loss_backward(
    # target_t, t, x, None), Mean): 2 * (x - t) * tangent, then the mean (so a huge
    # difference overflows to inf here where the backward's 2 / numel came first)
    tx, tt = tangents
    parts = ([2.0 * (x - t) * tx] if tx is not None else []) + (
        [2.0 * (t - x) * tt] if tt is not None else [])
    total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    return np.sum(total) / np.size(total)


register(Op("mse_loss", "input, target", mse, _mse_rules(), pair_infer("mse_loss"),
            "MseLossBackward0", "loss", sympy=mse_form, jvp=mse_jvp,
            samples=(("mse_loss(x, y)", {"x": (2, 3), "y": (2, 3)}, (-2.0, 2.0)),)))


def _unit_interval(what, v):
    # binary_cross_entropy's kernel checks 0 <= v <= 1 for input and target (NaN fails it)
    if not np.all((v >= 0) & (v <= 1)):
        raise GradcalcError("value", f"binary_cross_entropy: all elements of {what} should be "
                                     "between 0 and 1 (torch raises)")


def bce(x, t, _n=1):
    _unit_interval("input", x)
    _unit_interval("target", t)
    # torch's kernel: (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100)
    lx = np.maximum(np.log(x), -100.0)
    l1x = np.maximum(np.log1p(-x), -100.0)
    return np.asarray(np.mean((t - 1.0) * l1x - t * lx))


# torch's binary_cross_entropy_backward is an op of its own, with a derivatives.yaml entry
# whose formulas are not the derivatives of its own (at the clamp they differ by 1e12 and
# more): an Op here, outside the table's names (ops.recorded), the bce rule's one equation
# when traced. Its grad_output is the loss's cotangent, shaped to broadcast against the input.
def bce_backward(grad, x, t, _n=1):
    # binary_cross_entropy_backward: grad * (x - t) / max((1 - x) * x, EPSILON); the mean's
    # division by numel comes last, as torch's div_
    d = x - t
    return grad * d / np.maximum((1.0 - x) * x, EPSILON) / _n


def _bce_backward_rules():
    eps = 1e-12         # the double backward's own eps, a double (the forward's is a float)

    def grad_output(gg, ans, grad, x, t, _n=1):
        # it is linear in grad_output: its derivative there is itself applied to gg, as
        # torch's forward formula of binary_cross_entropy applies it to the tangent
        return recorded(BCE_BACKWARD, gg, x, t, _n=_n)

    def input(gg, ans, grad, x, t, _n=1):
        # binary_cross_entropy_double_backward: (x² - 2xt + t) / ((x + eps)² (1 - x + eps)²)
        # * (grad * grad_output) / numel
        gi = (x * x - 2.0 * x * t + t) / ((x + eps) ** 2 * (1.0 - x + eps) ** 2)
        return gi * (gg * grad) / _n

    def target(gg, ans, grad, x, t, _n=1):
        # binary_cross_entropy_double_backward_target: -grad * grad_output
        # / clamp_min((1 - x) * x, eps) / numel
        return -gg * grad / np.maximum((1.0 - x) * x, eps) / _n
    return grad_output, input, target


BCE_BACKWARD = Op("binary_cross_entropy_backward", "grad, input, target", bce_backward,
                  _bce_backward_rules(), elementwise_infer("binary_cross_entropy_backward"),
                  "BinaryCrossEntropyBackwardBackward0", "loss", pointwise=True, named=False,
                  doc="torch's backward of binary_cross_entropy, with its double backward")


def logit(x):
    # torch.logit without eps: log(x / (1 - x))
    with np.errstate(divide="ignore"):
        return np.log(x / (1.0 - x))


def logit_vjp(g, ans, x):
    if traced(x):
        # under GradMode, infinitely_differentiable_logit_backward (eps None):
        # where(0 <= x <= 1, grad / (x * (1 - x)), NaN)
        return np.where((x >= 0.0) & (x <= 1.0), g / (x * (1.0 - x)), np.nan)
    # logit_backward's kernel without eps: NaN outside [0, 1], grad * inf at 0 and 1,
    # grad / (x * (1 - x)) inside
    edge = np.where((x == 0.0) | (x == 1.0), g * np.inf, g / (x * (1.0 - x)))
    return np.where((x < 0.0) | (x > 1.0), np.nan, edge)


# torch.logit, which binary_cross_entropy_target_backward calls: outside the table's names
LOGIT = Op("logit", "x", logit, (logit_vjp,), elementwise_infer("logit"), "LogitBackward0",
           "elementwise", pointwise=True, named=False, doc="torch.logit, for bce's target rule")


def _bce_rules():
    def rx(g, ans, x, t, _n=1):
        return recorded(BCE_BACKWARD, _g(g, np.ndim(x)), x, t, _n=_n)

    def rt(g, ans, x, t, _n=1):
        # binary_cross_entropy_target_backward: -logit(x) * grad
        d = -recorded(LOGIT, x)         # t has x's shape (pair_infer)
        return d * _g(g, d.ndim) / _n
    return rx, rt


def bce_form(sp, x, t, _n=1, **_):
    lx = S.omap(lambda v: sp.Max(sp.log(v), -100),
                lambda v: np.maximum(np.log(v), -100.0), x)
    l1x = S.omap(lambda v: sp.Max(sp.log(1 - v), -100),
                 lambda v: np.maximum(np.log1p(-v), -100.0), x)
    return S.osum(sp, -(t * lx + (1 - t) * l1x)) / _n


register(Op("binary_cross_entropy", "input, target", bce, _bce_rules(),
            pair_infer("binary_cross_entropy", same_shape=True), "BinaryCrossEntropyBackward0", "loss",
            sympy=bce_form,
            # the target's grad is -logit(x), unclamped, while the forward clamps the log at
            # -100: at x in {0, 1} the convention defines every derivative through the node
            kinks=(Kink("log clamped at -100; backward divides by max((1 - x) * x, 1e-12)",
                        lambda x, t, **_: (x <= 0) | (x >= 1),
                        whole=lambda x, t, **_: (x <= 0) | (x >= 1)),),
            samples=(("binary_cross_entropy(x, y)", {"x": (2, 3), "y": (2, 3)}, (0.1, 0.9)),)))


def bce_logits(x, t, _n=1):
    # (1 - t) * x - log_sigmoid(x), with a stable log_sigmoid
    log_sig = -(np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x))))
    return np.asarray(np.mean((1.0 - t) * x - log_sig))


def bce_logits_form(sp, x, t, _n=1, _at=None, **_):
    # (1 - t) * x + log(1 + exp(-x)); where x < 0 at the check's point, log(1 + exp(-x)) is
    # written as the same function log(1 + exp(x)) - x, so that exp() stays finite
    sign = 1.0 if _at is None else np.sign(np.asarray(_at[0], dtype=np.float64))
    soft = S.omap(lambda v, s: sp.log(1 + sp.exp(v)) - v if s < 0 else sp.log(1 + sp.exp(-v)),
                  lambda v, s: np.log1p(np.exp(-np.abs(v))) + np.maximum(-v, 0.0), x, sign)
    return S.osum(sp, (1 - t) * x + soft) / _n


register(Op("binary_cross_entropy_with_logits", "input, target", bce_logits,
            # binary_cross_entropy_with_logits_backward: (sigmoid(x) - t) * grad, and
            # -(x * grad) for the target, each then divided by numel (the mean); negated
            # after the product, so that in forward mode x's tangent meets the target's by a
            # product, as in torch's (1 - t) * x under torch.func (a zero tangent passes a
            # product as zero, not a neg: forward_mode.Nested)
            (lambda g, ans, x, t, _n=1: (sigmoid(x) - t) * _g(g, np.ndim(x)) / _n,
             lambda g, ans, x, t, _n=1: -(x * _g(g, np.ndim(x))) / _n),   # t has x's shape
            pair_infer("binary_cross_entropy_with_logits", same_shape=True),
            "BinaryCrossEntropyWithLogitsBackward0", "loss", sympy=bce_logits_form,
            samples=(("binary_cross_entropy_with_logits(x, y)", {"x": (2, 3), "y": (2, 3)},
                      (-2.0, 2.0)),)))


# cross_entropy(logits, target): class dim is 1 (0 for 1-D logits). A target of the logits'
# shape holds class probabilities; one without the class dim holds class indices.
def ce_infer(shapes, params):
    xs, ts = tuple(shapes[0]), tuple(shapes[1])
    if len(xs) == 0:
        raise GradcalcError("shape", "cross_entropy: logits must be at least 1-D (classes)")
    cdim = 1 if len(xs) >= 2 else 0
    if ts == xs:
        # torch's mean divides by numel / classes: with no classes that is 0 / 0, NaN
        n = math.prod(xs) // xs[cdim] if xs[cdim] else math.nan
        return (), dict(params, _probs=True, _n=n, _cdim=cdim)
    if ts == xs[:cdim] + xs[cdim + 1:]:
        return (), dict(params, _probs=False, _n=math.prod(ts), _cdim=cdim)
    raise GradcalcError("shape", f"cross_entropy: target shape {ts} fits neither class indices "
                                 f"{xs[:cdim] + xs[cdim + 1:]} nor probabilities {xs}")


def _onehot(x, t, cdim):
    if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
        raise GradcalcError("value", "cross_entropy: class-index targets must be whole numbers")
    k = x.shape[cdim]
    if np.any((t < 0) | (t >= k)):
        raise GradcalcError("value", f"cross_entropy: class index out of range 0..{k - 1}")
    ti = np.expand_dims(t.astype(np.int64), cdim)
    shape = [1] * x.ndim
    shape[cdim] = k
    return (np.arange(k).reshape(shape) == ti).astype(x.dtype)


def ce(x, t, _probs=False, _n=1, _cdim=0):
    ls = log_softmax(x, dim=_cdim)
    if _probs:
        return np.asarray(-np.sum(t * ls) / _n)
    # nll_loss picks the target's log-probability: a select, so a -inf log-probability of
    # another class does not become 0 * -inf = NaN
    picked = np.where(_onehot(x, t, _cdim) != 0, ls, 0.0)
    return np.asarray(-np.sum(picked) / _n)


def _filled(g, x):
    # cross_entropy_loss_prob_target's mean of an empty input is sum().fill_(NAN), and
    # fill_'s derivative is 0: no gradient (the same empty arrays), no J·u, no Hessian
    return np.zeros(g.shape + x.shape)       # g: batch + (), the loss is a scalar


def _ce_x(g, ans, x, t, _probs=False, _n=1, _cdim=0):
    # torch's composition, step by step (it decides where an infinite grad gives NaN):
    # nll_loss_backward scatters -grad/n into the target class (indices), or -(grad/N) * t
    # flows back through the product (probabilities); then log_softmax_backward_data:
    # gl - exp(log_softmax) * sum(gl, class dim)
    if _probs and x.size == 0:
        return _filled(g, x)
    gn = -(_g(g, x.ndim) / _n)
    if _probs:
        gl = gn * t
    else:
        gl = np.where(_onehot(x, t, _cdim) != 0, gn, 0.0)
    ls = log_softmax(x, dim=_cdim)
    return gl - np.exp(ls) * np.sum(gl, axis=_cdim - x.ndim, keepdims=True)


def _ce_t(g, ans, x, t, _probs=False, _n=1, _cdim=0):
    if not _probs:
        return None             # class indices are never differentiated
    if x.size == 0:
        return _filled(g, x)
    return -(_g(g, x.ndim) / _n) * log_softmax(x, dim=_cdim)


def ce_form(sp, x, t, _probs=False, _n=1, _cdim=0, _at=None, **_):
    from .reductions import log_softmax_form
    xa = None if _at is None else (_at[0],)
    ls = log_softmax_form(sp, x, _cdim - np.ndim(x), xa)
    if _probs:
        w = t
    else:       # class indices are constants: the one-hot weights at the check's point
        w = S.constant(_onehot(np.asarray(_at[0], dtype=np.float64),
                               np.asarray(_at[1], dtype=np.float64), _cdim))
    return -S.osum(sp, w * ls) / _n


register(Op("cross_entropy", "input, target", ce, (_ce_x, _ce_t), ce_infer,
            # class probabilities: torch ends with the mean's division (DivBackward1)
            lambda site: "DivBackward1" if site.params.get("_probs") else "NllLossBackward0",
            "loss", sympy=ce_form,
            samples=(("cross_entropy(x, y)", {"x": (2, 3), "y": (2, 3)}, (0.1, 2.0)),)))
