"""Elementwise primitives: arithmetic operators and the functions of SPEC section 2.

Kinks follow PyTorch 2.13's derivatives.yaml, cited beside each rule. Rules broadcast over
leading batch axes of `g` by construction (they only multiply `g` by arrays of the
operands' shapes).
"""
from __future__ import annotations

import math

import numpy as np

from . import Kink, Op, constant, elementwise_infer, register, traced
from ..errors import GradcalcError

LN2 = math.log(2.0)
LN10 = math.log(10.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def unary(name, forward, rule, sympy, torch, domain=(-2.0, 2.0), doc="", kinks=(), ufuncs=(),
          jvp=None):
    register(Op(name, "x", forward, (rule,), elementwise_infer(name), torch, "elementwise",
                sympy=sympy, samples=((f"{name}(x)", {"x": (2, 3)}, domain),), doc=doc,
                pointwise=True, kinks=kinks, ufuncs=ufuncs, jvp=jvp))


def element_wise_jvp(rules):
    """torch's `result: auto_element_wise` (and pow's formula, written the same way): each
    input's backward formula applied to its tangent, summed; a select in the rule stays a
    select (the transposed rule would multiply a masked 0 by its NaN or inf partial)."""
    def jvp(tangents, ans, *arrays, **params):
        parts = [rule(t, ans, *arrays, **params) for rule, t in zip(rules, tangents)
                 if t is not None and rule is not None]
        total = parts[0] if parts else None
        for part in parts[1:]:
            total = total + part
        return total
    return jvp


def at_zero(words):
    """A kink where the (first) input is 0."""
    return (Kink(words, lambda x, *rest, **_: x == 0),)


# erf, vectorised (numpy has none and scipy is not a dependency): W. J. Cody's rational
# Chebyshev approximations ("Rational Chebyshev approximations for the error function",
# Math. Comp. 23, 1969), the calerf coefficient sets, accurate to about 1e-16.
_ERF_A = (3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2,
          3.20937758913846947e3, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3,
          2.84423683343917062e3)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e0, 6.61191906371416295e1,
          2.98635138197400131e2, 8.81952221241769090e2, 1.71204761263407058e3,
          2.05107837782607147e3, 1.23033935479799725e3, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2,
          1.62138957456669019e3, 3.29079923573345963e3, 4.36261909014324716e3,
          3.43936767414372164e3, 1.23033935480374942e3)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1      # 1 / sqrt(pi)


def _erfc_tail(y):
    """erfc(y) for y > 0.46875 (Cody's second and third intervals)."""
    mid = y <= 4.0
    r = np.empty_like(y)
    t = y[mid]
    num, den = _ERF_C[8] * t, t
    for i in range(7):
        num = (num + _ERF_C[i]) * t
        den = (den + _ERF_D[i]) * t
    r[mid] = (num + _ERF_C[7]) / (den + _ERF_D[7])
    t = y[~mid]
    z = 1.0 / (t * t)
    num, den = _ERF_P[5] * z, z
    for i in range(4):
        num = (num + _ERF_P[i]) * z
        den = (den + _ERF_Q[i]) * z
    r[~mid] = (_SQRPI - z * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / t
    # exp(-y*y) split as Cody does, so the rounding of y*y does not cost digits
    ysq = np.trunc(y * 16.0) / 16.0
    return np.exp(-ysq * ysq) * np.exp(-(y - ysq) * (y + ysq)) * r


def erf(x):
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    xf = x.astype(np.float64)
    y = np.abs(xf)
    out = np.empty_like(xf)
    with np.errstate(all="ignore"):
        small = y <= 0.46875
        t = xf[small]
        z = t * t
        num, den = _ERF_A[4] * z, z
        for i in range(3):
            num = (num + _ERF_A[i]) * z
            den = (den + _ERF_B[i]) * z
        out[small] = t * (num + _ERF_A[3]) / (den + _ERF_B[3])
        big = ~small & np.isfinite(y)
        # erfc underflows to 0 past 26.6 (Cody's XBIG), and the tail's y * 16 overflows near
        # DBL_MAX/16: past 27, erf is +-1, as torch's is
        out[big] = np.copysign(1.0 - _erfc_tail(np.minimum(y[big], 27.0)), xf[big])
        out[np.isinf(y)] = np.sign(xf[np.isinf(y)])
        out[np.isnan(y)] = np.nan
    return out.astype(dtype, copy=False)


def softplus(x, beta=1.0, threshold=20.0):
    # PyTorch: x where beta*x > threshold, else log1p(exp(beta*x)) / beta
    bx = x * beta
    return np.where(bx > threshold, x, np.log1p(np.exp(np.minimum(bx, threshold))) / beta)


def softplus_vjp(g, ans, x, beta=1.0, threshold=20.0):
    # softplus_backward: z = exp(x*beta); (grad * z) / (z + 1), or grad where x*beta > threshold
    # (min(bx, threshold) as a select: differentiated again, the threshold side is a
    # constant, so softplus''(threshold) = 0 as torch's double backward gives)
    bx = x * beta
    z = np.exp(np.where(bx >= threshold, threshold, bx))
    return np.where(bx > threshold, g, g * z / (z + 1.0))


def sgn(x):
    """PyTorch's sign/sgn on reals: (0 < x) - (x < 0), so NaN gives 0 (numpy's sign gives NaN)."""
    return np.where(np.isnan(x), 0.0, np.sign(x))


def sigmoid(x):
    # torch's kernel, 1 / (1 + exp(-x)): where exp(-x) overflows the result is 0, not the
    # subnormal a stabler formula gives (float32 sigmoid(-100) is 0 in torch)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


# --- unary functions ------------------------------------------------------------------
unary("exp", np.exp, lambda g, ans, x: g * ans, lambda sp, x: sp.exp(x), "ExpBackward0")
unary("log", np.log, lambda g, ans, x: g / x,   # log'(0) = +inf, as grad.div(self)
      lambda sp, x: sp.log(x), "LogBackward0", (0.2, 3.0),
      kinks=at_zero("log'(0) = +inf (grad / x)"))
unary("log2", np.log2, lambda g, ans, x: g / (x * LN2),
      lambda sp, x: sp.log(x, 2), "Log2Backward0", (0.2, 3.0), kinks=at_zero("log2'(0) = +inf"))
unary("log10", np.log10, lambda g, ans, x: g / (x * LN10),
      lambda sp, x: sp.log(x, 10), "Log10Backward0", (0.2, 3.0),
      kinks=at_zero("log10'(0) = +inf"))
unary("log1p", np.log1p, lambda g, ans, x: g / (x + 1.0),
      lambda sp, x: sp.log(1 + x), "Log1PBackward0", (-0.8, 3.0),
      kinks=(Kink("log1p'(-1) = +inf", lambda x, **_: x == -1),))
unary("expm1", np.expm1, lambda g, ans, x: g * (ans + 1.0),
      lambda sp, x: sp.exp(x) - 1, "Expm1Backward0")
# sqrt'(0) = +inf: PyTorch computes grad / (2 * result)
unary("sqrt", np.sqrt, lambda g, ans, x: g / (2.0 * ans),
      lambda sp, x: sp.sqrt(x), "SqrtBackward0", (0.2, 3.0),
      kinks=at_zero("sqrt'(0) = +inf (grad / (2 * result))"))
# abs'(0) = 0: PyTorch computes grad * self.sgn() (and sgn(NaN) = 0)
unary("abs", np.abs, lambda g, ans, x: g * sgn(x),
      lambda sp, x: sp.Abs(x), "AbsBackward0", kinks=at_zero("abs'(0) = 0 (grad * sgn(x))"))
# sign has zero gradient everywhere (PyTorch: zeros_like(grad), so 0 even where grad is NaN)
unary("sign", sgn, lambda g, ans, x: np.zeros_like(g),
      # sympy form H(x) - H(-x): the same function, 0 at 0, and differentiable by sympy
      # even where it cannot prove the argument real (sign(log(x)) stays unevaluated)
      lambda sp, x: sp.Heaviside(x) - sp.Heaviside(-x), "SignBackward0",
      kinks=at_zero("sign' = 0 everywhere, also at 0"), ufuncs=(np.sign,),
      # auto_element_wise: a tangent of zeros that exists (0 * a NaN beyond it is NaN)
      jvp=lambda tangents, ans, x: np.zeros_like(ans))
unary("sin", np.sin, lambda g, ans, x: g * np.cos(x), lambda sp, x: sp.sin(x), "SinBackward0")
unary("cos", np.cos, lambda g, ans, x: g * -np.sin(x), lambda sp, x: sp.cos(x), "CosBackward0")
unary("tan", np.tan, lambda g, ans, x: g * (1.0 + ans * ans),
      lambda sp, x: sp.tan(x), "TanBackward0", (-1.2, 1.2))
# asin/acos: grad * (1 - x^2).rsqrt(), so +-inf at +-1
unary("asin", np.arcsin, lambda g, ans, x: g * (1.0 / np.sqrt(1.0 - x * x)),
      lambda sp, x: sp.asin(x), "AsinBackward0", (-0.9, 0.9),
      kinks=(Kink("asin'(+-1) = +inf ((1 - x^2).rsqrt())", lambda x, **_: np.abs(x) == 1),))
unary("acos", np.arccos, lambda g, ans, x: g * -(1.0 / np.sqrt(1.0 - x * x)),
      lambda sp, x: sp.acos(x), "AcosBackward0", (-0.9, 0.9),
      kinks=(Kink("acos'(+-1) = -inf (-(1 - x^2).rsqrt())", lambda x, **_: np.abs(x) == 1),))
unary("atan", np.arctan, lambda g, ans, x: g / (1.0 + x * x),
      lambda sp, x: sp.atan(x), "AtanBackward0")
unary("sinh", np.sinh, lambda g, ans, x: g * np.cosh(x), lambda sp, x: sp.sinh(x), "SinhBackward0")
unary("cosh", np.cosh, lambda g, ans, x: g * np.sinh(x), lambda sp, x: sp.cosh(x), "CoshBackward0")
unary("tanh", np.tanh, lambda g, ans, x: g * (1.0 - ans * ans),
      lambda sp, x: sp.tanh(x), "TanhBackward0")
# sigmoid_backward: grad * (1 - result) * result, in that order
unary("sigmoid", sigmoid, lambda g, ans, x: g * (1.0 - ans) * ans,
      lambda sp, x: 1 / (1 + sp.exp(-x)), "SigmoidBackward0")
# relu is clamp_min(x, 0), which keeps x unless x < 0: relu(-0.0) = -0.0, relu(NaN) = NaN.
# relu'(0) = 0: threshold_backward(grad, result, 0) is `result <= 0 ? 0 : grad`, a select,
# not a product: a NaN/inf grad stays out of masked elements, and a NaN result passes grad
unary("relu", lambda x: np.where(x < 0, 0.0, x), lambda g, ans, x: np.where(ans <= 0, 0.0, g),
      lambda sp, x: sp.Max(x, 0), "ReluBackward0",
      kinks=at_zero("relu'(0) = 0 (threshold_backward passes the gradient where the result > 0)"))
unary("erf", erf, lambda g, ans, x: g * (TWO_OVER_SQRT_PI * np.exp(-x * x)),
      lambda sp, x: sp.erf(x), "ErfBackward0")
register(Op("neg", "x", np.negative, (lambda g, ans, x: -g,), elementwise_infer("neg"),
            "NegBackward0", "elementwise", sympy=lambda sp, x: -x, pointwise=True, syntax="-x",
            samples=(("neg(x)", {"x": (2, 3)}, (-2.0, 2.0)),)))

register(Op("softplus", "x, beta:number=1.0, threshold:number=20.0", softplus, (softplus_vjp,),
            elementwise_infer("softplus"), "SoftplusBackward0", "elementwise", pointwise=True,
            kinks=(Kink("gradient 1 where beta*x > threshold, sigmoid(beta*x) at and below it",
                        lambda x, beta=1.0, threshold=20.0, **_: x * beta == threshold),),
            sympy=lambda sp, x, beta=1.0, threshold=20.0: sp.Piecewise(
                (x, x * beta > threshold), (sp.log(1 + sp.exp(beta * x)) / beta, True)),
            samples=(("softplus(x)", {"x": (2, 3)}, (-3.0, 3.0)),
                     ("softplus(x, beta=2)", {"x": (4,)}, (-2.0, 2.0))),
            doc="PyTorch's threshold: linear where beta*x > threshold (default 20)"))

# leaky_relu: leaky_relu_backward is `self > 0 ? grad : grad * negative_slope`, so at 0 the
# derivative is the slope
register(Op("leaky_relu", "x, negative_slope:number=0.01",
            lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
            (lambda g, ans, x, negative_slope=0.01: g * np.where(x > 0, 1.0, negative_slope),),
            elementwise_infer("leaky_relu"), "LeakyReluBackward0", "elementwise",
            sympy=lambda sp, x, negative_slope=0.01: sp.Piecewise(
                (x, x > 0), (negative_slope * x, True)),
            samples=(("leaky_relu(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("leaky_relu(x, negative_slope=0.2)", {"x": (4,)}, (-2.0, 2.0))),
            pointwise=True, doc="PyTorch's default slope 0.01",
            kinks=(Kink("leaky_relu'(0) = negative_slope (the slope of the x <= 0 side)",
                        lambda x, negative_slope=0.01, **_: (x == 0) & (negative_slope != 1)),)))
# elu: `x <= 0 ? expm1(x) * alpha : x`, so elu(-0.0) = -0.0 and elu(NaN) = NaN;
# elu_backward(grad, alpha, 1, 1, is_result=false, self) is
# `x <= 0 ? grad * alpha * exp(x) : grad`, so at 0 the derivative is alpha (and at NaN, grad)
register(Op("elu", "x, alpha:number=1.0",
            lambda x, alpha=1.0: np.where(x <= 0, np.expm1(np.where(x <= 0, x, 0.0)) * alpha, x),
            # (exp of where(x < 0, x, 0): the same numbers, and differentiated again it gives
            # torch's elu_double_backward, which masks with x < 0, so elu''(0) = 0)
            (lambda g, ans, x, alpha=1.0:
                np.where(x <= 0, g * alpha * np.exp(np.where(x < 0, x, 0.0)), g),),
            elementwise_infer("elu"), "EluBackward0", "elementwise",
            sympy=lambda sp, x, alpha=1.0: sp.Piecewise((x, x > 0), (alpha * (sp.exp(x) - 1), True)),
            samples=(("elu(x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("elu(x, alpha=0.5)", {"x": (4,)}, (-2.0, 2.0))),
            pointwise=True, doc="alpha * (exp(x) - 1) for x <= 0",
            kinks=(Kink("elu'(0) = alpha (the x <= 0 side's slope)",
                        lambda x, alpha=1.0, **_: (x == 0) & (alpha != 1)),)))


# --- binary arithmetic --------------------------------------------------------------
def binary(name, sig, forward, rules, sympy, torch, samples, syntax="", doc="", kinks=(),
           at_site=None, ufuncs=(), sympy_terms=None, jvp=None, keeps_zero=False,
           nested_jvp=None):
    register(Op(name, sig, forward, rules, elementwise_infer(name), torch, "elementwise",
                sympy=sympy, samples=samples, doc=doc, pointwise=True, syntax=syntax,
                kinks=kinks, at_site=at_site, ufuncs=ufuncs, sympy_terms=sympy_terms, jvp=jvp,
                keeps_zero=keeps_zero, nested_jvp=nested_jvp))


_XY = {"x": (2, 3), "y": (3,)}
binary("add", "x, y", np.add, (lambda g, ans, x, y: g, lambda g, ans, x, y: g),
       lambda sp, x, y: x + y, "AddBackward0", (("x + y", _XY, (-2.0, 2.0)),), syntax="+",
       sympy_terms=lambda sp, x, y: (x, y), keeps_zero=True)
binary("sub", "x, y", np.subtract, (lambda g, ans, x, y: g, lambda g, ans, x, y: -g),
       lambda sp, x, y: x - y,
       lambda site: "RsubBackward1" if site.consts and site.consts[0] else "SubBackward0",
       (("x - y", _XY, (-2.0, 2.0)),), syntax="-", sympy_terms=lambda sp, x, y: (x, -y),
       keeps_zero=True)
binary("mul", "x, y", np.multiply, (lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x),
       lambda sp, x, y: x * y, "MulBackward0", (("x * y", _XY, (-2.0, 2.0)),), syntax="*",
       ufuncs=(np.logical_and, np.bitwise_and), keeps_zero=True)   # `&` of 0/1 masks: product
def _div_nested(tangents, ans, x, y):
    """A number over y is torch's reciprocal(y) * number (`1 / x` in Python): its tangent is
    reciprocal's auto_element_wise, -y_t * (r * r), times the number, and the `-` is a real
    op (neg has no ZeroTensor kernel), so 1/x at 0 is NaN from order 2 as in torch (a rule's
    1 / sqrt, torch's rsqrt, takes it too: asin and acos at 1 still agree). None (the
    transposed rule) for any other div: torch's (self_t - other_t * result) / other_p
    would suit `s / s` at 1e-300, but taken for every div it breaks asin and acos at 1,
    whose chain gradcalc writes with divs where torch runs rsqrt, and a div node cannot
    tell where it came from (README)."""
    tx, ty = tangents
    if tx is not None or ty is None or not constant(x):
        return None
    r = 1.0 / y
    return (-ty * (r * r)) * x


# div: div_tensor_self_backward is grad / other; div_tensor_other_backward is
# -grad * ((self / other) / other), an order that neither overflows nor underflows where the
# gradient is a float (s/s at 1e-300 has grad 0, not -grad * s / s^2 = -inf)
binary("div", "x, y", np.divide,
       (lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ((x / y) / y)),
       lambda sp, x, y: x / y,
       # torch computes number / tensor as reciprocal(tensor) * number: MulBackward0
       lambda site: "MulBackward0" if site.consts and site.consts[0] else "DivBackward0",
       (("x / y", _XY, (0.5, 2.0)),), syntax="/",
       kinks=(Kink("x / 0 in IEEE arithmetic: grad / y and -grad * ((x / y) / y)",
                   lambda x, y, **_: y == 0),), keeps_zero=True, nested_jvp=_div_nested)


def pow_number(x, e: float):
    """x ** e for a number e as torch's pow.Tensor_Scalar computes it (Pow.cpp, PowKernel.cpp):
    0 fills ones, 1 copies, 0.5 is sqrt, -0.5 rsqrt (1 / sqrt), -1 reciprocal, 2 x*x, 3 x*x*x,
    -2 1 / (x*x), anything else pow(). They differ from pow() at -0.0 and -inf (sqrt(-0.0) is
    -0.0, rsqrt(-inf) NaN) and in rounding. A traced x records the table's pow with this
    number exponent, whose forward is this function: torch differentiates pow.Tensor_Scalar
    as one op (pow_backward), never its kernel's 1 / (x*x)."""
    if traced(x):
        return x ** e
    with np.errstate(all="ignore"):
        if e == 0:
            return np.ones_like(x)
        if e == 1:
            return np.positive(x)           # a copy (a ufunc, so a traced rule records it)
        if e == 0.5:
            return np.sqrt(x)
        if e == -0.5:
            return 1.0 / np.sqrt(x)
        if e == -1:
            return 1.0 / x
        if e == 2:
            return x * x
        if e == 3:
            return x * x * x
        if e == -2:
            return 1.0 / (x * x)
        return np.power(x, e)


def pow_forward(x, y, _number_exponent=False):
    return pow_number(x, float(y)) if _number_exponent else np.power(x, y)


def pow_vjp_base(g, ans, x, y, _number_exponent=False):
    if _number_exponent:
        # pow_backward: zeros where exponent == 0, else grad * (exponent * self.pow(exponent - 1)),
        # that pow by the same kernel (so x**0.5 at -0.0 has grad -inf, through rsqrt)
        # (x ** 1 is torch's copy of x: x itself gives the same numbers without the pass)
        e = float(y)
        if e == 0:
            return np.zeros_like(x)
        return g * (e * (x if e == 2 and not traced(x) else pow_number(x, e - 1.0)))
    # pow_backward_self: where(exponent == 0, 0, grad * exponent * self ** (exponent - 1))
    return np.where(y == 0.0, 0.0, g * (y * np.power(x, y - 1.0)))


def pow_vjp_exponent(g, ans, x, y, _number_exponent=False):
    # pow_backward_exponent: grad * where(self == 0 & exponent >= 0, 0, result * log(self));
    # grad multiplies the select, so a NaN grad stays NaN even where the partial is 0
    return g * np.where((x == 0.0) & (y >= 0.0), 0.0, ans * np.log(x))


def _pow_torch(site):
    if site.consts and site.consts[1]:
        return "PowBackward0"
    if site.consts and site.consts[0]:
        return "PowBackward2"
    return "PowBackward1"


def _pow_site(site):
    # a number exponent (a 0-d constant) is torch's pow.Tensor_Scalar, with its own kernel
    return {"_number_exponent": bool(site.consts and site.consts[1] and site.ranks[1] == 0)}


binary("pow", "x, y", pow_forward, (pow_vjp_base, pow_vjp_exponent),
       lambda sp, x, y, **_: x ** y, _pow_torch,
       (("x ** y", _XY, (0.5, 2.0)), ("pow(x, 3)", {"x": (4,)}, (-2.0, 2.0))), syntax="**",
       doc="x**y at (0, 0) has both partials 0, as PyTorch defines",
       kinks=(Kink("x**y at x = 0: the base's partial is 0 where y == 0, grad*y*x**(y-1) "
                   "elsewhere; the exponent's partial is 0 where y >= 0",
                   lambda x, y, **_: x == 0),),
       at_site=_pow_site, ufuncs=(np.power,),
       # pow_backward_self(self_t) + pow_backward_exponent(exponent_t): where-masked, so 0
       # at (0, 0); pow.Tensor_Scalar's auto_element_wise is pow_backward(self_t) alike
       jvp=element_wise_jvp((pow_vjp_base, pow_vjp_exponent)))


# atan2(y, x): grad * x / (x^2 + y^2), grad * -y / (x^2 + y^2); PyTorch 2.13 gives 0 for
# both partials at (0, 0) (its atan2_backward masks the zero denominator)
def _atan2_rules():
    def _recip(y, x):
        d = y * y + x * x
        # the zero denominator masked after the division, unguarded as torch's: the double
        # backward at (0, 0) is NaN (0 * -1/d^2), as torch's
        return np.where(d == 0, 0.0, 1.0 / d)

    def dy(g, ans, y, x):
        return g * x * _recip(y, x)         # grad * other * recip, in that order

    def dx(g, ans, y, x):
        return g * -y * _recip(y, x)        # grad * -self * recip
    return dy, dx


def _atan2_jvp(tangents, ans, y, x):
    # (-self_p * other_t + other_p * self_t) / (self_p^2 + other_p^2): 0/0 = NaN at (0, 0)
    ty, tx = (0.0 if t is None else t for t in tangents)
    return (-y * tx + x * ty) / (y ** 2 + x ** 2)


binary("atan2", "y, x", np.arctan2, _atan2_rules(), lambda sp, y, x: sp.atan2(y, x),
       "Atan2Backward0", (("atan2(x, y)", _XY, (0.5, 2.0)),), jvp=_atan2_jvp,
       kinks=(Kink("both partials 0 at (0, 0)", lambda y, x, **_: (y == 0) & (x == 0)),))
# hypot: grad * self / result, grad * other / result, in that order
binary("hypot", "x, y", np.hypot,
       (lambda g, ans, x, y: g * x / ans, lambda g, ans, x, y: g * y / ans),
       lambda sp, x, y: sp.sqrt(x * x + y * y), "HypotBackward0",
       (("hypot(x, y)", _XY, (0.5, 2.0)),),
       kinks=(Kink("grad * x / result: NaN at (0, 0)", lambda x, y, **_: (x == 0) & (y == 0)),))


# maximum/minimum as torch's scalar loop computes them: NaN if either is NaN, else
# std::max(x, y) = (x < y) ? y : x and std::min(x, y) = (y < x) ? y : x, so a tie keeps x:
# maximum(-0.0, 0.0) is -0.0. (torch's SIMD loop, which takes blocks of 8 or 16 elements
# depending on the CPU, keeps y there instead: on a tie of signed zeros in a longer array,
# torch's sign depends on the machine; under 8 elements it is the scalar loop's everywhere.)
def maximum(x, y):
    return np.where(np.isnan(y) | (x < y), y, x)


def minimum(x, y):
    return np.where(np.isnan(y) | (y < x), y, x)


# maximum/minimum: where(self == other, grad / 2, grad).masked_fill_(self < other, 0) (for
# maximum; `>` for minimum). masked_fill, not a product: the losing side gets exactly 0 even
# when grad is NaN/inf, and at a NaN (every comparison false) both sides get the whole grad.
def _maxmin_rules(loses):
    def rx(g, ans, x, y):
        return np.where(loses(x, y), 0.0, np.where(x == y, g / 2, g))

    def ry(g, ans, x, y):
        return np.where(loses(y, x), 0.0, np.where(x == y, g / 2, g))
    return rx, ry


def _maxmin_jvp(wins):
    # maximum: other_t + where(self == other, 0.5, self > other) * (self_t - other_t)
    # (minimum: self < other), so at a NaN the tangent is other's, whichever side is NaN
    def jvp(tangents, ans, x, y):
        tx, ty = (0.0 if t is None else t for t in tangents)
        return ty + np.where(x == y, 0.5, wins(x, y)) * (tx - ty)
    return jvp


binary("maximum", "x, y", maximum, _maxmin_rules(np.less),
       lambda sp, x, y: sp.Max(x, y), "MaximumBackward0",
       (("maximum(x, y)", _XY, (-2.0, 2.0)),), doc="a tie gives half the gradient to each side",
       kinks=(Kink("a tie gives half the gradient to each side", lambda x, y, **_: x == y),),
       ufuncs=(np.maximum, np.logical_or, np.bitwise_or),   # `|` of 0/1 masks is their max
       jvp=_maxmin_jvp(np.greater))
binary("minimum", "x, y", minimum, _maxmin_rules(np.greater),
       lambda sp, x, y: sp.Min(x, y), "MinimumBackward0",
       (("minimum(x, y)", _XY, (-2.0, 2.0)),), doc="a tie gives half the gradient to each side",
       kinks=(Kink("a tie gives half the gradient to each side", lambda x, y, **_: x == y),),
       ufuncs=(np.minimum,), jvp=_maxmin_jvp(np.less))


# clamp(x, min, max): the bounds are inputs too (constants +-inf when left out, and then
# listed in `_absent`). PyTorch 2.13's clamp_backward / clamp_backward_min_max, with one bound:
# x gets grad where x >= min (x <= max), the bound where x < min (x > max); with both: x gets
# grad where min <= x <= max (1 at the bounds), min where x < min and min < max, max where
# x > max or max < min. All select with where(mask, grad, 0), so a NaN grad stays out of
# masked elements.
def clamp(x, lo, hi, _absent=()):
    # std::min(std::max(x, min), max), torch's scalar loop: x is kept on a tie (clamp(-0.0,
    # min=0) is -0.0, as torch's number-bound kernel gives in every loop), a NaN bound is NaN
    return minimum(maximum(x, lo), hi)


def clamp_infer(shapes, params):
    if len(params.get("_absent", ())) == 2:
        raise GradcalcError("call", "clamp(): at least one of 'min' or 'max' must be given "
                                    "(torch.clamp raises)")
    return elementwise_infer("clamp")(shapes, params)


def _clamp_rules():
    def rx(g, ans, x, lo, hi, _absent=()):
        return np.where((x >= lo) & (x <= hi), g, 0.0)

    def rlo(g, ans, x, lo, hi, _absent=()):
        one_bound = "max" in _absent
        return np.where((x < lo) & (one_bound | (lo < hi)), g, 0.0)

    def rhi(g, ans, x, lo, hi, _absent=()):
        one_bound = "min" in _absent
        return np.where((x > hi) | (~one_bound & (hi < lo)), g, 0.0)
    return rx, rlo, rhi


def _clamp_jvp(tangents, ans, x, lo, hi, _absent=()):
    tx, tlo, thi = tangents
    if tlo is None and thi is None:
        # number bounds, clamp.Scalar: auto_element_wise, clamp_backward of the tangent
        return _clamp_rules()[0](tx, ans, x, lo, hi, _absent)
    # clamp.Tensor's clamp_jvp: with both bounds where(min > max, max_t, where(x < min,
    # min_t, where(x > max, max_t, x_t))); with one, x_t only strictly inside (a tie or a
    # NaN takes the bound's tangent)
    tx, tlo, thi = (0.0 if t is None else t for t in tangents)
    if "max" in _absent:
        return np.where(x > lo, tx, tlo)
    if "min" in _absent:
        return np.where(x < hi, tx, thi)
    return np.where(lo > hi, thi, np.where(x < lo, tlo, np.where(x > hi, thi, tx)))


register(Op(
    "clamp", "x, min:array?=-inf, max:array?=inf", clamp, _clamp_rules(), clamp_infer,
    # torch: number bounds are clamp.Scalar (ClampBackward1), tensor bounds clamp.Tensor
    lambda site: "ClampBackward1" if all(site.consts[1:]) else "ClampBackward0",
    "elementwise", pointwise=True,
    # clamp with min == max == x passes gradient 1 to x although the function is constant
    kinks=(Kink("clamp passes gradient 1 to x at its bounds",
                lambda x, lo, hi, **_: (x == lo) | (x == hi),
                whole=lambda x, lo, hi, **_: (x == lo) & (lo == hi)),),
    sympy=lambda sp, x, lo, hi, **_: sp.Min(sp.Max(x, lo), hi),
    samples=(("clamp(x, min=-0.5, max=0.5)", {"x": (2, 3)}, (-2.0, 2.0)),
             ("clamp(x, y, 1)", {"x": (2, 3), "y": (3,)}, (-2.0, 2.0))),
    doc="bounds positional or by keyword (at least one); the gradient passes at the bounds",
    jvp=_clamp_jvp))


def identity(x):
    return x


# detach: the value passes, no gradient flows
register(Op("detach", "x", identity, (None,), elementwise_infer("detach"), "DetachBackward",
            "elementwise", sympy=lambda sp, x: x, pointwise=True,
            samples=(("detach(x) * x", {"x": (3,)}, (-2.0, 2.0)),)))


# --- comparisons and selection (PyTorch's semantics) -----------------------------------
# A comparison gives 0/1 in the program's dtype and has no gradient: derivatives.yaml marks
# lt/le/gt/ge/eq/ne `output_differentiability: [False]`, so torch records no node for them
# (the name below is only what that node would be called). The backward rules of other ops
# use them for their masks, so that a traced backward program selects as the direct one does.
def comparison(name, syntax, ufunc, sympy):
    def forward(x, y):
        return ufunc(x, y).astype(np.result_type(x, y, np.float32))
    binary(name, "x, y", forward, (None, None), sympy, f"{name.capitalize()}Backward0",
           ((f"where(x {syntax} y, x, y)", _XY, (-2.0, 2.0)), (f"x {syntax} y", _XY, (-2.0, 2.0))),
           syntax=syntax, ufuncs=(ufunc,),
           doc=f"x {syntax} y as 0.0 or 1.0; no gradient flows through a comparison")


comparison("lt", "<", np.less, lambda sp, x, y: sp.Piecewise((1, x < y), (0, True)))
comparison("le", "<=", np.less_equal, lambda sp, x, y: sp.Piecewise((1, x <= y), (0, True)))
comparison("gt", ">", np.greater, lambda sp, x, y: sp.Piecewise((1, x > y), (0, True)))
comparison("ge", ">=", np.greater_equal, lambda sp, x, y: sp.Piecewise((1, x >= y), (0, True)))
comparison("eq", "==", np.equal, lambda sp, x, y: sp.Piecewise((1, sp.Eq(x, y)), (0, True)))
comparison("ne", "!=", np.not_equal, lambda sp, x, y: sp.Piecewise((1, sp.Ne(x, y)), (0, True)))


# where(condition, x, y): x where condition is nonzero, else y; where_backward sends the
# cotangent to the selected branch and zeros (a select, not a product: a NaN cotangent stays
# out of the other branch); the condition gets none
def where(c, x, y):
    return np.where(c != 0, x, y)


register(Op("where", "condition, input, other", where,
            (None, lambda g, ans, c, x, y: np.where(c != 0, g, 0.0),
             lambda g, ans, c, x, y: np.where(c != 0, 0.0, g)),
            elementwise_infer("where"), "WhereBackward0", "elementwise", pointwise=True,
            sympy=lambda sp, c, x, y: sp.Piecewise((x, sp.Ne(c, 0)), (y, True)),
            samples=(("where(x > 0, x * x, -x)", {"x": (2, 3)}, (-2.0, 2.0)),
                     ("where(c, x, y)", {"c": (3,), "x": (2, 3), "y": (3,)}, (-1.0, 1.0))),
            doc="x where condition is nonzero (true), else y; the cotangent goes to the "
                "selected branch"))
