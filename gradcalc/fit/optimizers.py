"""PyTorch 2.13's SGD, Adam and AdamW update rules on numpy arrays, step for step.

Each optimizer is a record of hyper-parameters, named and defaulted as torch names
and defaults them, plus per-parameter state; `step(params, grads)` updates the arrays in
place in the order of torch's single-tensor (`foreach=False`) code, in the parameter's own
dtype, with torch's scalar arithmetic (bias corrections and step size are Python floats,
rounded to the dtype only where a kernel takes them; Adam rounds its constant ones once per
dtype, tests/test_fit_equivalence.py). torch's CPU kernels fuse some multiply-adds (FMA)
where numpy rounds twice, so trajectories agree to an ulp or so per step, not bit for bit.
It never computes gradients, never reads data and knows nothing of the command line beyond
the option names in its messages.
"""
from __future__ import annotations

import numpy as np

from ..errors import GradcalcError

# torch's name of each hyper-parameter -> the `gradcalc fit` option that sets it
OPTION = {"lr": "--lr", "momentum": "--momentum", "dampening": "--dampening",
          "weight_decay": "--weight-decay", "nesterov": "--nesterov", "betas": "--betas",
          "eps": "--eps", "amsgrad": "--amsgrad"}


def _usage(message: str) -> GradcalcError:
    return GradcalcError("usage", message)


def _require(ok: bool, name: str, rule: str, value) -> None:
    if not ok:
        raise _usage(f"{OPTION[name]} {rule}, got {value}")


def _same_dtype(name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
    # in place needs an ndarray: a numpy scalar (what arithmetic on 0-d arrays returns)
    # would be rebound, not updated
    assert isinstance(param, np.ndarray), f"parameter {name} must be an ndarray"
    if np.shape(grad) != param.shape:
        raise GradcalcError("shape", f"gradient of {name} has shape {np.shape(grad)}, "
                            f"the parameter {param.shape}")
    return np.asarray(grad, dtype=param.dtype)


class Options:
    """A record of hyper-parameters by torch's names: DEFAULTS holds every one the optimizer
    takes, in torch's order (the report's), with torch's default; `check` refuses what
    torch's __init__ refuses. The options, the optimizers and their state are plain classes:
    a dataclass costs 0.3-0.7 ms to define, at every start-up of `gradcalc fit` (issue 15,
    figure 17a)."""

    DEFAULTS: dict = {}

    def __init__(self, **given):
        for key in given:
            if key not in self.DEFAULTS:
                raise TypeError(f"{type(self).__name__} takes no option {key}")
        vars(self).update(self.DEFAULTS, **given)
        self.check()

    def check(self) -> None:
        pass

    def hyper(self) -> dict:
        """Every hyper-parameter by torch's name, defaults included."""
        return {key: getattr(self, key) for key in self.DEFAULTS}


class SGDOptions(Options):
    """torch.optim.SGD's hyper-parameters and defaults (torch 2.13: lr=1e-3)."""

    DEFAULTS = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                "nesterov": False}

    def check(self):
        # the checks and their order are torch's SGD.__init__
        _require(self.lr >= 0.0, "lr", "must be >= 0", self.lr)
        _require(self.momentum >= 0.0, "momentum", "must be >= 0", self.momentum)
        _require(self.weight_decay >= 0.0, "weight_decay", "must be >= 0", self.weight_decay)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise _usage("--nesterov needs a --momentum above 0 and --dampening 0")


class AdamOptions(Options):
    """torch.optim.Adam's hyper-parameters and defaults (betas: two floats); AdamW differs
    in weight_decay."""

    DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                "amsgrad": False}

    def check(self):
        # the checks and their order are torch's Adam.__init__
        _require(self.lr >= 0.0, "lr", "must be >= 0", self.lr)
        _require(self.eps >= 0.0, "eps", "must be >= 0", self.eps)
        _require(len(self.betas) == 2, "betas", "takes two numbers B1,B2", self.betas)
        for beta in self.betas:
            _require(0.0 <= beta < 1.0, "betas", "must each lie in [0, 1)", self.betas)
        _require(self.weight_decay >= 0.0, "weight_decay", "must be >= 0", self.weight_decay)
        self.betas = tuple(float(b) for b in self.betas)


class AdamWOptions(AdamOptions):
    """torch.optim.AdamW: Adam's options with weight_decay=1e-2 by default."""

    DEFAULTS = {**AdamOptions.DEFAULTS, "weight_decay": 1e-2}


class SGD:
    """torch.optim.SGD; state per parameter: its momentum buffer (None before the first step)."""

    __slots__ = ("options", "momentum_buffer")
    name = "sgd"

    def __init__(self, options: SGDOptions | None = None):
        self.options = SGDOptions() if options is None else options
        self.momentum_buffer: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One `optimizer.step()` of torch's `_single_tensor_sgd`, params updated in place."""
        o = self.options
        for name, param in params.items():
            grad = _same_dtype(name, param, grads[name])
            f = param.dtype.type      # a Python float as a kernel takes it: in the dtype
            if o.weight_decay != 0:
                grad = grad + f(o.weight_decay) * param          # grad.add(param, alpha=wd)
            if o.momentum != 0:
                buf = self.momentum_buffer.get(name)
                if buf is None:                                  # first step: no dampening
                    buf = self.momentum_buffer[name] = np.array(grad)   # a copy, 0-d too
                else:
                    buf *= f(o.momentum)
                    buf += f(1 - o.dampening) * grad
                grad = grad + f(o.momentum) * buf if o.nesterov else buf
            param += f(-o.lr) * grad                             # param.add_(grad, alpha=-lr)

    def hyper(self) -> dict:
        """Every hyper-parameter by torch's name, defaults included, for a JSON report."""
        return self.options.hyper()


class AdamScalars:
    """Adam's constant kernel arguments in one dtype: what the step would round from Python
    floats every time, rounded once. A plain class: a frozen dataclass of five fields costs
    0.6 ms to define, more than it saves in a 400-step fit (issue 15, figure 17a)."""

    __slots__ = ("decay", "one_minus_beta1", "beta2", "one_minus_beta2", "eps", "lerp_small")

    def __init__(self, o: AdamOptions, decoupled: bool, dtype: np.dtype):
        beta1, beta2 = o.betas
        decay = 1 - o.lr * o.weight_decay if decoupled else o.weight_decay  # AdamW : Adam
        for name, value in zip(self.__slots__, (decay, 1 - beta1, beta2, 1 - beta2, o.eps)):
            setattr(self, name, _scalar(value, dtype, constant=True))
        self.lerp_small = bool(abs(self.one_minus_beta1) < 0.5)    # _lerp's branch


def _scalar(value: float, dtype: np.dtype, constant: bool = False) -> np.ndarray:
    """A Python float as a kernel takes it, rounded to `dtype`: as a 0-d array, whose
    arithmetic with an array is a numpy scalar's to the bit, and which numpy's ufuncs take
    sooner (0.4 against 0.7 us on two elements). A constant is shared: read-only (a step's
    own is nobody else's, and setting the flag would cost what the 0-d array saves)."""
    out = np.array(value, dtype=dtype)
    if constant:
        out.flags.writeable = False
    return out


class AdamSlot:
    """torch's per-parameter Adam state: step count and running moments."""

    __slots__ = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, step: int, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                 max_exp_avg_sq: np.ndarray | None):
        self.step, self.exp_avg, self.exp_avg_sq = step, exp_avg, exp_avg_sq
        self.max_exp_avg_sq = max_exp_avg_sq


class Adam:
    """torch.optim.Adam (L2 weight decay added to the gradient)."""

    __slots__ = ("options", "state", "scalars")
    name = "adam"
    decoupled = False
    default = AdamOptions

    def __init__(self, options: AdamOptions | None = None):
        self.options = self.default() if options is None else options
        self.state: dict[str, AdamSlot] = {}
        self.scalars: dict[np.dtype, AdamScalars] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One `optimizer.step()` of torch's `_single_tensor_adam`, params updated in place."""
        o = self.options
        beta1, beta2 = o.betas
        for name, param in params.items():
            grad = _same_dtype(name, param, grads[name])
            dtype = param.dtype
            k = self.scalars.get(dtype)
            if k is None:
                k = self.scalars[dtype] = AdamScalars(o, self.decoupled, dtype)
            slot = self.state.get(name)
            if slot is None:
                zeros = np.zeros_like(param)
                slot = self.state[name] = AdamSlot(
                    0, zeros, zeros.copy(), zeros.copy() if o.amsgrad else None)
            slot.step += 1
            if o.weight_decay != 0:
                if self.decoupled:
                    param *= k.decay
                else:
                    grad = grad + k.decay * param
            _lerp(slot.exp_avg, grad, k.one_minus_beta1, k.lerp_small)
            slot.exp_avg_sq *= k.beta2
            slot.exp_avg_sq += k.one_minus_beta2 * grad * grad   # addcmul_: (value*t1)*t2
            # torch reads the step back as a Python float: these are double-precision
            # scalars, rounded to the dtype only as kernel arguments below
            step = float(slot.step)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = o.lr / bias_correction1
            bias_correction2_sqrt = bias_correction2 ** 0.5
            if o.amsgrad:
                np.maximum(slot.max_exp_avg_sq, slot.exp_avg_sq, out=slot.max_exp_avg_sq)
                second = slot.max_exp_avg_sq
            else:
                second = slot.exp_avg_sq
            denom = np.sqrt(second) / _scalar(bias_correction2_sqrt, dtype)
            denom += k.eps
            param += _scalar(-step_size, dtype) * slot.exp_avg / denom   # addcdiv_: (v*t1)/t2

    def hyper(self) -> dict:
        """Every hyper-parameter by torch's name, defaults included, for a JSON report."""
        hyper = self.options.hyper()
        hyper["betas"] = list(hyper["betas"])
        return hyper


class AdamW(Adam):
    """torch.optim.AdamW: Adam with the weight decay applied to the parameter first."""

    __slots__ = ()
    name = "adamw"
    decoupled = True
    default = AdamWOptions


def _lerp(start: np.ndarray, end: np.ndarray, weight, small: bool) -> None:
    """start.lerp_(end, weight) in place, with ATen's two branches (they round differently):
    `small` is abs(weight) < 0.5, told once for a constant weight."""
    if small:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (weight.dtype.type(1) - weight)


OPTIMIZERS = {"sgd": (SGD, SGDOptions), "adam": (Adam, AdamOptions),
              "adamw": (AdamW, AdamWOptions)}


def make_optimizer(name: str, **hyper) -> SGD | Adam | AdamW:
    """The optimizer `name` with the given hyper-parameters (torch's names), torch's defaults
    for the rest. A hyper-parameter the optimizer does not take is a usage error naming its
    option, as is a value torch would refuse."""
    if name not in OPTIMIZERS:
        raise _usage(f"--optimizer must be one of {', '.join([*OPTIMIZERS, 'lm'])}, got {name}")
    kind, options = OPTIMIZERS[name]
    for key in hyper:
        if key not in options.DEFAULTS:
            raise _usage(f"{OPTION.get(key, key)} does not apply to --optimizer {name}")
    return kind(options(**hyper))
