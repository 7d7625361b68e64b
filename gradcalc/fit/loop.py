"""The training loop of `gradcalc fit` (SPEC 10): a compiled loss, its data, an optimizer.

`fit(FitRequest)` compiles the program once per batch shape (the short last batch has its
own), rebinds each batch's rows and the current parameters to it, runs the engine for the
parameters' grads and steps the optimizer, epoch after epoch; or, for `lm`, hands the
residual vector and its exact Jacobian (one backward pass when the parameters are numbers
and the program pointwise, which gives the residuals too, else forward mode, one pass per
parameter element, when there are fewer of those than residuals) to Levenberg–Marquardt.
It reports through callbacks (progress, one history entry per epoch) and never prints. A
non-finite loss stops the fit and names where it arose; Ctrl-C stops it with the
parameters so far.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..engine import Request, describe_nonfinite, differentiate, forward
from ..engine.economy import blockable
from ..errors import GradcalcError, Limits
from ..programs import ProgramCache, rebind
from ..settings import Settings
from .batches import plan_batches
from .optimizers import make_optimizer

if TYPE_CHECKING:       # lm's module (five dataclasses, ~3 ms) loads for an lm fit only
    from .lm import Layout

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "lm")
# False: lm's Jacobian is always the reverse batched one (tests compare the routes)
LM_FORWARD_MODE = True
# False: never the one backward pass over parameters spread to the residuals' shape
LM_POINTWISE = True
# False: lm's residuals at every point from the forward alone and its Jacobian, at a point
# it takes, from a pass of its own; tests/test_fit_equivalence.py holds the one pass that
# gives both to that route bit for bit
LM_ONE_PASS = True
# False: every step's program comes through the program cache (key, rebound copy, Request);
# tests/test_fit_equivalence.py holds the in-place rebinding to that path bit for bit
STEP_IN_PLACE = True


class FitRequest:
    """One fit: the program, its leaves' values (data and start values, already read), the
    parameters to optimise in order, and how. Plain classes here and in batches.py: a
    dataclass costs 0.3-0.7 ms to define, at every start-up of `gradcalc fit` (issue 15,
    figure 17a)."""

    __slots__ = ("text", "values", "params", "optimizer", "hyper", "epochs", "batch_size",
                 "shuffle", "seed", "tol", "dtype", "limits", "externs")

    def __init__(self, text: str, values: dict, params: list, optimizer: str = "adam",
                 hyper: dict | None = None, epochs: int = 10, batch_size: int | None = None,
                 shuffle: bool = False, seed: int = 0, tol: float | None = None,
                 dtype: str = "float64", limits: Limits | None = None,
                 externs: dict | None = None):
        self.text = text
        self.values = values            # name -> ndarray of every bound leaf
        self.params = params            # names of the leaves to optimise, in --params order
        self.optimizer = optimizer
        self.hyper = {} if hyper is None else hyper     # torch's names: lr, betas, ...
        self.epochs, self.batch_size, self.shuffle, self.seed = epochs, batch_size, shuffle, seed
        self.tol, self.dtype = tol, dtype
        self.limits = Limits() if limits is None else limits
        self.externs = externs          # name -> Op of the run's opaque functions (--extern)


class Epoch:
    __slots__ = ("epoch", "loss")

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "loss": _num(self.loss)}


class FitResult:
    """The fitted parameters (name -> ndarray); the loss over all the data at them (lm: the
    SSR); the Epoch records; the optimizer ({"name": ..., every hyper-parameter used}); the
    epochs (lm: iterations) run; how it stopped (epochs | tol | nonfinite | interrupted);
    the dtype; where a non-finite loss arose; lm's standard errors (name -> array of the
    parameter's shape), correlation and stopping reason."""

    __slots__ = ("params", "loss", "history", "optimizer", "epochs", "stopped", "dtype",
                 "nonfinite", "stderr", "correlation", "reason")

    def __init__(self, params: dict, loss: float, history: list, optimizer: dict, epochs: int,
                 stopped: str, dtype: str, nonfinite: dict | None = None,
                 stderr: dict | None = None, correlation: np.ndarray | None = None,
                 reason: str = ""):
        self.params, self.loss, self.history, self.optimizer = params, loss, history, optimizer
        self.epochs, self.stopped, self.dtype, self.nonfinite = epochs, stopped, dtype, nonfinite
        self.stderr, self.correlation, self.reason = stderr, correlation, reason

    def to_json(self) -> dict:
        from ..result import to_plain
        obj = {"params": {k: to_plain(v) for k, v in self.params.items()},
               "loss": _num(self.loss), "history": [h.to_json() for h in self.history],
               "optimizer": {k: (list(v) if isinstance(v, tuple) else v)
                             for k, v in self.optimizer.items()},
               "epochs": self.epochs, "stopped": self.stopped, "dtype": self.dtype}
        if self.nonfinite is not None:
            obj["nonfinite"] = self.nonfinite
        if self.stderr is not None:
            obj["stderr"] = {k: to_plain(v) for k, v in self.stderr.items()}
            obj["correlation"] = to_plain(self.correlation)
        return obj


class Interrupted(Exception):
    """Ctrl-C during a fit: carries the result so far."""

    def __init__(self, result: FitResult):
        super().__init__("interrupted")
        self.result = result


def _num(v):
    v = float(v)
    if math.isfinite(v):
        return v
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


class Step:
    """One batch shape's program for `Loss.step`: its Request and its bound leaf nodes (each
    with its leaf's name), whose values each step replaces. A plain class: a dataclass costs
    0.3 ms to define, at every start-up."""

    __slots__ = ("request", "bound")

    def __init__(self, request: Request, bound: list):
        self.request, self.bound = request, bound


class Loss:
    """The compiled loss with data and parameters rebound per call (one compile per batch
    shape, through the program cache; a training step's program kept per batch shape)."""

    def __init__(self, req: FitRequest):
        self.req = req
        self.dtype = np.dtype(req.dtype)
        self.cache = ProgramCache()
        self.settings = Settings(wrt=list(req.params), dtype=req.dtype, seed=req.seed)
        self.pointwise = None       # whether lm's columns come from one backward pass
        self.steps = {}             # binding shapes -> Step (None: the program draws random)

    def step(self, bindings: dict):
        """(graph, engine answer) of one optimizer step: `run` for these leaf values, with
        the program of their shapes kept in a copy of its own whose bound leaves take each
        call's values in place, and its Request kept too (the cache's key, rebound copy,
        scalar check and cotangent are paid once per batch shape). A program that draws
        random numbers goes through `run` every time, as the cache compiles it every time."""
        key = tuple([(k, v.shape) for k, v in bindings.items()])
        step = self.steps.get(key, False)
        if step is False:
            graph, answer = self.run(bindings)
            self.steps[key] = self._keep(graph, bindings) if STEP_IN_PLACE else None
            return graph, answer
        if step is None:
            return self.run(bindings)
        for node, name in step.bound:
            node.value = bindings[name]
        return step.request.graph, differentiate(step.request)

    def _keep(self, graph, bindings: dict):
        """The Step of `graph`, the program just run for `bindings` (None when random)."""
        if graph.random:
            return None
        bound = [eq.id for eq in graph.nodes if eq.kind == "leaf" and eq.name in bindings
                 and eq.value is bindings[eq.name]]
        own = rebind(graph, bound, bindings)   # its bound nodes are its own to write
        cot = np.ones((), dtype=self.dtype)
        cot.flags.writeable = False            # shared by every step: no rule may write it
        request = Request(own, own.output, cot, tuple(own.leaves[p] for p in self.req.params))
        return Step(request, [(own.nodes[i], own.nodes[i].name) for i in bound])

    def run(self, bindings: dict, *, jacobian: bool = False):
        """(graph, engine answer) for these leaf values; the param leaves' grads (or, with
        `jacobian`, the Jacobian of the output) come with it."""
        graph = self.graph(bindings)
        out = graph.output
        ids = tuple(graph.leaves[p] for p in self.req.params)
        shape = graph.nodes[out].shape
        if not jacobian and shape != ():
            raise GradcalcError("usage", f"the loss must be a scalar, but the output has shape "
                                         f"{shape}: reduce it (mean(...), mse_loss(...)), or use "
                                         "--optimizer lm for a residual vector")
        cot = np.ones(shape, dtype=self.dtype)
        answer = differentiate(Request(graph, out, cot, ids, jacobian=jacobian))
        return graph, answer

    def graph(self, bindings: dict):
        """The compiled program for these leaf values (through the program cache)."""
        return self.cache.graph(self.req.text, bindings, self.dtype, self.settings,
                                self.req.limits, self.req.externs)

    def point(self, layout: Layout, bindings: dict):
        """(graph, the output's values, the Jacobian's columns or None) of an lm point:
        residuals and every column from one pass where `one_pass` applies (lm then needs no
        second pass at a point it takes, and wastes a backward at one it refuses, the rarer
        kind), else the forward alone (the Jacobian, when lm asks, from `jacobian`)."""
        graph = self.graph(bindings)
        out = graph.nodes[graph.output]
        if LM_ONE_PASS and _few_parameters(layout, out.size):
            both = self.one_pass(layout, bindings, out.shape)
            if both is not None:
                return graph, both[0], both[1]
        return graph, forward(graph)[graph.output], None

    def jacobian(self, graph, layout: Layout, bindings: dict) -> np.ndarray:
        """d(output)/d(params) as (output elements, parameter elements), in the layout's
        order, at `bindings` (whose program is `graph`). Fewer parameter elements than
        residuals (the usual fit): every column from one backward pass when the parameters
        are numbers and the program is pointwise (`one_pass`), else one forward-mode pass
        (J·e_k) per parameter element, each O(n); else the reverse batched Jacobian (one row
        per residual)."""
        out = graph.output
        n = graph.nodes[out].size
        if _few_parameters(layout, n):
            both = self.one_pass(layout, bindings, graph.nodes[out].shape)
            if both is not None:
                return _columns(both[1])
            # forward mode (and the traced programs it builds on) only for lm: a gradient
            # fit's start-up does not load them
            from ..engine import higher
            cols = []
            for name, shape in zip(layout.names, layout.shapes):
                for k in range(math.prod(shape)):
                    e = np.zeros(math.prod(shape), dtype=self.dtype)
                    e[k] = 1
                    cols.append(np.asarray(higher.jvp(graph, out, {name: e.reshape(shape)},
                                                      self.req.limits),
                                           dtype=np.float64).reshape(n))
            return _columns(cols)
        ids = tuple(graph.leaves[p] for p in layout.names)
        cot = np.zeros(graph.nodes[out].shape, dtype=self.dtype)
        answer = differentiate(Request(graph, out, cot, ids, jacobian=True))
        return np.concatenate([np.asarray(answer.jacobians[i], dtype=np.float64).reshape(n, -1)
                               for i in ids], axis=1)

    def one_pass(self, layout: Layout, bindings: dict, oshape: tuple):
        """(residuals, columns) from one backward pass, when each parameter is one number
        and, with the parameters spread to the output's shape `oshape`, the program is
        pointwise: residual i then reads element i of each spread parameter alone, so the
        grads of sum(r) are d r_i / d p at position i, row i of the reverse batched Jacobian
        less the exact zeros the other positions add to it, and the pass's output is the
        residual vector, the forward's bit for bit (tests/test_perf_equivalence.py). The
        arrays may be the engine's result block, reused by its next pass: read them before.
        None when the program is not such (remembered for the fit)."""
        if not LM_POINTWISE or self.pointwise is False or any(layout.shapes):
            return None
        cot, spread = self._spread(layout, bindings, oshape)
        graph = self.graph({**bindings, **spread})
        out = graph.output
        self.pointwise = graph.nodes[out].shape == oshape and blockable(graph, out)
        if not self.pointwise:
            return None
        ids = tuple(graph.leaves[p] for p in layout.names)
        answer = differentiate(Request(graph, out, cot, ids, drop_values=True))
        n = math.prod(oshape)
        return answer.values[out], [answer.grads[i].reshape(n) if i in answer.grads
                                    else np.zeros(n) for i in ids]

    def _spread(self, layout: Layout, bindings: dict, oshape: tuple):
        """(the cotangent: all ones, each parameter's value) broadcast to the output's
        shape: read-only views of one number each (no memory, and nothing to fill: fresh
        10^5-element arrays at every lm evaluation cost more in page faults than the
        pass)."""
        ones = np.ones((), dtype=self.dtype)
        return np.broadcast_to(ones, oshape), {
            p: np.broadcast_to(np.asarray(bindings[p], dtype=self.dtype), oshape)
            for p in layout.names}


def _few_parameters(layout: Layout, n: int) -> bool:
    """Whether lm's Jacobian goes by columns (fewer parameter elements than residuals)."""
    return LM_FORWARD_MODE and sum(math.prod(s) for s in layout.shapes) < n


def _columns(cols: list, out: np.ndarray | None = None) -> np.ndarray:
    """The Jacobian (rows, columns) in float64 with each column contiguous (Fortran order):
    J^T J, J^T r and the QR factor of lm then read it in the order LAPACK and BLAS want,
    with no copy. Written into `out` (columns, rows) when given."""
    return (np.stack(cols, dtype=np.float64) if out is None else np.stack(cols, out=out)).T


def _kept(arrays: dict, key: str, shape: tuple) -> np.ndarray:
    """arrays[key], a float64 array of `shape` made once and reused: a fresh 10^5-row
    Jacobian at every lm iteration faulted its pages in again (issue 15, figure 17c)."""
    a = arrays.get(key)
    if a is None or a.shape != shape:
        a = arrays[key] = np.empty(shape)
    return a


def fit(req: FitRequest, *, on_epoch: Callable[[Epoch], None] | None = None,
        on_step: Callable[[int, int, float], None] | None = None) -> FitResult:
    """Run the fit. `on_step(epoch, batch, loss)` after every optimizer step (progress);
    `on_epoch(Epoch)` after every epoch (history). Ctrl-C raises Interrupted."""
    _check(req)
    if req.optimizer == "lm":
        return _fit_lm(req, on_epoch)
    return _fit_gradient(req, on_epoch, on_step)


def _check(req: FitRequest):
    if req.optimizer not in OPTIMIZER_NAMES:
        raise GradcalcError("usage", f"--optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, "
                                     f"got '{req.optimizer}'")
    if not req.params:
        raise GradcalcError("usage", "--params names the leaves to optimise, e.g. --params w "
                                     "or --params w=0,0")
    for p in req.params:
        if p not in req.values:
            raise GradcalcError("usage", f"--params: no value for '{p}': give it as "
                                         f"--params {p}=VALUE or {p}=VALUE")
    if req.epochs < 1:
        raise GradcalcError("usage", f"--epochs must be at least 1, got {req.epochs}")
    if req.tol is not None and not req.tol >= 0:
        raise GradcalcError("usage", f"--tol must be 0 or more, got {req.tol}")


def _start(req: FitRequest):
    dtype = np.dtype(req.dtype)
    params = {p: np.array(req.values[p], dtype=dtype) for p in req.params}
    data = {k: np.asarray(v, dtype=dtype) for k, v in req.values.items() if k not in params}
    return params, data


def _fit_gradient(req, on_epoch, on_step) -> FitResult:
    training = _Training(req)
    try:
        training.run(on_epoch, on_step)
    except KeyboardInterrupt:
        training.stopped = "interrupted"
        raise Interrupted(training.result()) from None
    return training.result()


class _Training:
    """A gradient fit under way: the parameters (the optimizer updates their arrays in
    place), the data, the optimizer, the compiled loss, and what the epochs so far gave:
    their history, the epoch reached, how it stopped and where a non-finite loss arose."""

    __slots__ = ("req", "params", "data", "opt", "loss_fn", "history", "epoch", "stopped",
                 "nonfinite")

    def __init__(self, req: FitRequest):
        self.req = req
        self.params, self.data = _start(req)
        self.opt = make_optimizer(req.optimizer, **req.hyper)
        self.loss_fn = Loss(req)
        self.history, self.epoch, self.stopped, self.nonfinite = [], 0, "epochs", None

    def run(self, on_epoch, on_step):
        """Epoch after epoch until the last, --tol, or a non-finite loss."""
        req, params, data, opt, loss_fn = self.req, self.params, self.data, self.opt, \
            self.loss_fn
        plan = plan_batches(data, req.batch_size, shuffle=req.shuffle, seed=req.seed)
        # unshuffled, every epoch's batches and their bindings are the first epoch's
        same = None if plan.shuffle else list(_bindings(plan, data, params, 1))
        history = self.history
        for epoch in range(1, req.epochs + 1):
            self.epoch = epoch
            total, rows = 0.0, 0
            for batch, bindings in same or _bindings(plan, data, params, epoch):
                graph, answer = loss_fn.step(bindings)
                loss = float(answer.values[graph.output])
                if not math.isfinite(loss):
                    self.stopped = "nonfinite"
                    self.nonfinite = _where(graph, answer, epoch, batch.number)
                    return
                opt.step(params, {p: _grad(answer, graph.leaves[p], params[p])
                                  for p in req.params})
                total += loss * batch.rows
                rows += batch.rows
                if on_step is not None:
                    on_step(epoch, batch.number, loss)
            history.append(Epoch(epoch, total / rows))
            if on_epoch is not None:
                on_epoch(history[-1])
            if req.tol is not None and len(history) > 1 and abs(
                    history[-1].loss - history[-2].loss) <= req.tol * abs(history[-2].loss):
                self.stopped = "tol"
                return

    def result(self) -> FitResult:
        """The parameters so far (copies), with the loss over all the data at them."""
        req, params = self.req, self.params
        loss = float("nan")
        if self.stopped != "nonfinite":
            graph, answer = self.loss_fn.run({**self.data, **params})
            loss = float(answer.values[graph.output])
        return FitResult(params={k: v.copy() for k, v in params.items()}, loss=loss,
                         history=list(self.history),
                         optimizer={"name": req.optimizer, **self.opt.hyper()},
                         epochs=self.epoch, stopped=self.stopped, dtype=req.dtype,
                         nonfinite=self.nonfinite)


def _bindings(plan, data: dict, params: dict, epoch: int):
    """(batch, every leaf's value for it: its rows of the data, the parameters) of each
    batch of the epoch, one at a time (a shuffled batch is a copy)."""
    return ((batch, {**plan.take(data, batch), **params}) for batch in plan.epoch(epoch))


def _grad(answer, leaf: int, param: np.ndarray) -> np.ndarray:
    """The parameter's grad; zeros when the loss does not reach it (made only then)."""
    grad = answer.grads.get(leaf)
    return np.zeros_like(param) if grad is None else grad


def _where(graph, answer, epoch, batch) -> dict:
    found = describe_nonfinite(graph, answer.values, graph.output,
                               np.ones(graph.nodes[graph.output].shape), answer.grads) or {}
    return {"epoch": epoch, "batch": batch, "node": found.get("node"),
            "message": found.get("message", "the loss is not finite")}


def _fit_lm(req, on_epoch) -> FitResult:
    """Levenberg–Marquardt on the output as a residual vector, its Jacobian from the engine's
    batched pass; every data row at once (lm takes no batches)."""
    from .lm import Layout, LMOptions, levenberg_marquardt
    params, data = _start(req)
    layout = Layout.of(params)
    loss_fn = Loss(req)
    dtype = np.dtype(req.dtype)
    last = {}

    def bind(p):
        return {**data, **{k: v.astype(dtype) for k, v in layout.unpack(p).items()}}

    kept = {}       # lm's residuals and Jacobian, each array written again at its next call

    def residuals(p):
        last.pop("columns", None)   # the previous pass's: the engine reuses their block
        bindings = bind(p)
        graph, values, columns = loss_fn.point(layout, bindings)
        last["p"], last["graph"], last["bindings"] = p, graph, bindings
        if columns is not None:     # if lm takes this point, its Jacobian is ready
            last["columns"] = columns
        values = np.asarray(values).reshape(-1)
        res = _kept(kept, "residuals", values.shape)
        res[...] = values
        return res

    def jacobian(p):        # lm asks for it at the point whose residuals it just took
        columns = last.pop("columns", None)
        if columns is None:
            return loss_fn.jacobian(last["graph"], layout, last["bindings"])
        return _columns(columns, _kept(kept, "jacobian", (len(columns), columns[0].size)))

    history = []

    def iteration(it):
        history.append(Epoch(it.iteration, it.ssr))
        if on_epoch is not None:
            on_epoch(history[-1])

    options = LMOptions(iterations=req.epochs, **({} if req.tol is None else {"tol": req.tol}))
    try:
        out = levenberg_marquardt(residuals, jacobian, layout.pack(params), options, iteration)
    except KeyboardInterrupt:
        p = last.get("p", layout.pack(params))
        raise Interrupted(FitResult(params=layout.unpack(p), loss=float("nan"), history=history,
                                    optimizer={"name": "lm"}, epochs=len(history),
                                    stopped="interrupted", dtype=req.dtype)) from None
    fitted = {k: v.astype(dtype) for k, v in layout.unpack(out.params).items()}
    stderr = {k: v for k, v in layout.unpack(out.stderr).items()}
    nonfinite = {"epoch": out.iterations, "batch": 1, "node": None,
                 "message": out.reason} if out.stopped == "nonfinite" else None
    return FitResult(params=fitted, loss=out.ssr, history=history,
                     optimizer={"name": "lm", "max_iterations": req.epochs,
                                "tol": options.tol, "xtol": options.xtol},
                     epochs=out.iterations, stopped=out.stopped, dtype=req.dtype,
                     nonfinite=nonfinite, stderr=stderr, correlation=out.correlation,
                     reason=out.reason)
