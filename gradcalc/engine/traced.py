"""The backward pass as a program: VJP rules traced into equations of table ops.

A `Tracer` is an array stand-in that numpy hands back to us through its dispatch protocols
(`__array_ufunc__`, `__array_function__`, the arithmetic dunders): running a table rule,
unchanged, on tracers records each numpy call it makes as an equation of the op that
computes it, in a new compiled `Graph`, with the concrete value at hand: computed when a
rule's data-dependent branch (prod's zero count, max's ties) reads it, so the branch is
decided at this point, as torch's double backward decides it at run time, and nothing else
is computed while recording. `Traced` replays a graph on tracers and runs the plain backward
(plain.backward, the same loop) over them. It never evaluates anything a rule did not ask
for and never changes the direct (numpy) path.
"""
from __future__ import annotations

import numpy as np

from ..compile import Compiler, Graph
from ..errors import GradcalcError, Limits
from ..ops import OPS
from . import plain


def _ufunc_table() -> dict:
    """numpy ufunc -> table op: each entry's forward when it is a ufunc, and its `ufuncs`."""
    table = {}
    for op in OPS.values():
        if isinstance(op.forward, np.ufunc):
            table[op.forward] = op.name
        for f in op.ufuncs:
            table[f] = op.name
    return table


UFUNCS = _ufunc_table()


class Untraceable(GradcalcError):
    def __init__(self, what: str):
        super().__init__("call", f"this derivative of higher order is not available: a "
                                 f"backward rule uses {what}, which the op table cannot "
                                 "record (only the first derivative is)")


class Builder:
    """The program being recorded: a Compiler (for shape inference, limits and constant
    folding) plus a memo of equations already recorded, so a repeated subexpression is one
    node (higher orders would otherwise grow exponentially)."""

    # constants above this many elements, unless uniform, are keyed by identity
    BY_IDENTITY = 1024

    def __init__(self, source: str, dtype, limits: Limits):
        self.comp = Compiler(source, {}, dtype=dtype, limits=limits)
        self.dtype = np.dtype(dtype)
        self.values: list = []
        self.memo: dict = {}
        self.ones: dict = {}
        self.kept: list = []

    def _push(self, i, value):
        """Tracer of node `i`; its value is `value`, or (None) computed when first read."""
        while len(self.values) <= i:
            self.values.append(None)
        if value is not None:
            self.values[i] = np.asarray(value, dtype=self.dtype)
        return Tracer(self, i)

    def value(self, i):
        """Node `i`'s value, computing (by the op's own forward, as plain.forward does) the
        ones not read yet, inputs first: a trace records without computing, so only what a
        rule's branch or a caller reads is ever evaluated."""
        values, nodes = self.values, self.comp.nodes
        work = [i]
        with np.errstate(all="ignore"):
            while work:
                k = work[-1]
                if values[k] is not None:
                    work.pop()
                    continue
                eq = nodes[k]
                missing = [j for j in eq.inputs if values[j] is None]
                if missing:
                    work.extend(missing)
                    continue
                work.pop()
                out = eq.op.forward(*[values[j] for j in eq.inputs], **eq.params)
                values[k] = np.asarray(out, dtype=self.dtype)
        return values[i]

    def _ones(self, t) -> bool:
        """Whether tracer `t` is a constant of ones (remembered per node)."""
        if self.comp.nodes[t.id].kind != "const":
            return False
        if t.id not in self.ones:
            self.ones[t.id] = bool(np.all(self.values[t.id] == 1))
        return self.ones[t.id]

    def leaf(self, name, value, requires_grad=True) -> "Tracer":
        i = self.comp.leaf(name, value, None)
        self.comp.nodes[i].requires_grad = requires_grad
        return self._push(i, self.comp.nodes[i].value)

    def const(self, value) -> "Tracer":
        value = np.asarray(value, dtype=self.dtype)
        # one number repeated (a rule's zeros or ones, a broadcast cotangent) is keyed by
        # that number, without copying the array out (tobytes) to hash it (a broadcast view,
        # all strides 0, is one without looking); a large array of several (a direction) by
        # its identity, kept alive here so that its id is never another array's (the same
        # array lifted twice is still one node)
        first = value.flat[0] if value.size else None
        uniform = value.size > 1 and (not any(value.strides) or (
            value.flat[-1] == first and bool(np.all(value == first))))
        if uniform:
            key = ("const", value.shape, first.tobytes())
        elif value.size > self.BY_IDENTITY:
            key = ("const", id(value))
            self.kept.append(value)
        else:
            key = ("const", value.shape, value.tobytes())
        if key not in self.memo:
            self.memo[key] = i = self._push(self.comp.const(value, None), value).id
            if uniform:
                self.ones[i] = bool(first == 1)
        return Tracer(self, self.memo[key])

    def lift(self, a) -> "Tracer":
        if isinstance(a, Tracer):
            if a.b is not self:
                raise AssertionError("tracers of two programs mixed")
            return a
        if isinstance(a, (np.ndarray, np.generic, float, int, bool)):
            return self.const(a)
        raise Untraceable(f"a {type(a).__name__}")

    def apply(self, name, inputs, params=None, value=None) -> "Tracer":
        """Op `name` (or an Op outside the table's names: ops.recorded) on `inputs` (tracers
        or numbers), recorded (or folded, when every input is a constant); its value is
        computed by the op's own forward when first read (or is `value`, when the caller
        replays a program whose values it has)."""
        op = OPS[name] if isinstance(name, str) else name
        name = op.name
        ins = [self.lift(a) for a in inputs]
        if name == "mul":
            # x * 1 is x, bit for bit (NaN, inf and -0 included): a broadcast cotangent of
            # ones or a unit direction multiplies nothing (ones that broadcast to x's shape,
            # as a reduction's unreduced cotangent of ones, included)
            for k in (0, 1):
                if self._ones(ins[k]) and np.broadcast_shapes(
                        ins[0].shape, ins[1].shape) == ins[1 - k].shape:
                    return ins[1 - k]
        ids = tuple(t.id for t in ins)
        params = dict(params or {})
        # (an op outside the table's names, or an --extern one, never shares a table op's node)
        key = (name, op is OPS.get(name), ids, repr(sorted(params.items())))
        if key in self.memo:
            return Tracer(self, self.memo[key])
        i = self.comp.apply(op, ids, params, None)
        eq = self.comp.nodes[i]
        if eq.kind == "const":
            value = eq.value
        self.memo[key] = i
        return self._push(i, value)

    def cone(self, outputs: list) -> tuple[Graph, list]:
        """The equations `outputs` depend on, alone, recorded again in their order as a new
        program (nothing computed), and the outputs' ids in it: what a block-by-block run
        of traced results needs. Its output is the last of them."""
        nodes, need, work = self.comp.nodes, set(), list(outputs)
        while work:
            i = work.pop()
            if i not in need:
                need.add(i)
                work.extend(nodes[i].inputs)
        into = Builder(self.comp.source, self.dtype, self.comp.limits)
        new = {}
        for i in sorted(need):
            eq = nodes[i]
            if eq.kind == "leaf":
                t = into.leaf(eq.name, eq.value, eq.requires_grad)
            elif eq.kind == "const":
                t = into.const(eq.value)
            else:
                t = into.apply(eq.op, [new[j] for j in eq.inputs], eq.params)
            new[i] = t
        ids = [new[i].id for i in outputs]
        return into.graph(max(ids)), ids

    def graph(self, output: int) -> Graph:
        c = self.comp
        return Graph(c.nodes, dict(c.leaves), dict(c.leaves), output, None, c.source,
                     c.dtype, list(c.leaf_order))


def _axes(axis, ndim):
    if axis is None:
        return list(range(ndim))
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return sorted(a % ndim for a in axis)


class Tracer:
    """A traced array: node `id` of builder `b`. Its value is `b.value(id)`; its shape is
    the compiler's, known without the value."""

    __slots__ = ("b", "id")
    __array_priority__ = 1000

    def __init__(self, b: Builder, i: int):
        self.b, self.id = b, i

    # -- what numpy and the rules read ---------------------------------------------
    @property
    def value(self):
        return self.b.value(self.id)

    shape = property(lambda self: self.b.comp.nodes[self.id].shape)
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: self.b.comp.nodes[self.id].size)
    dtype = property(lambda self: self.b.dtype)

    def __len__(self):
        return self.shape[0]

    def __bool__(self):                 # a rule's branch: decided at this point
        return bool(self.value)

    def __float__(self):
        # a number a rule reads from a constant (pow's exponent); anything else would drop
        # its derivative silently (numpy's setitem converts this way)
        if self.b.comp.nodes[self.id].kind != "const":
            raise Untraceable("a traced value converted to a Python number")
        return float(self.value)

    def __array__(self, *args, **kwargs):
        raise Untraceable("an array conversion (np.asarray) of a traced value")

    def __repr__(self):
        return f"Tracer({self.id}, {self.shape})"

    # -- protocols -------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "reduce" and ufunc is np.add and not kwargs.get("out"):
            return inputs[0].sum(axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False))
        if method != "__call__" or kwargs.get("out") is not None:
            raise Untraceable(f"numpy's {ufunc.__name__}.{method}")
        if ufunc is np.positive:
            return self.b.lift(inputs[0])
        if ufunc is np.isnan:
            return self.b.apply("ne", [inputs[0], inputs[0]])
        if ufunc in (np.logical_not, np.invert):
            return self.b.apply("eq", [inputs[0], 0.0])
        if ufunc is np.reciprocal:
            return self.b.apply("div", [1.0, inputs[0]])
        if ufunc is np.square:
            return self.b.apply("mul", [inputs[0], inputs[0]])
        if ufunc is np.matmul:
            return self.b.apply("matmul", inputs)
        if ufunc in CONSTANT_UFUNCS:       # derivative 0 wherever defined: a constant here
            return ufunc(*[_value(a) for a in inputs], **kwargs)
        name = UFUNCS.get(ufunc)
        if name is None:
            raise Untraceable(f"numpy's {ufunc.__name__}")
        return self.b.apply(name, inputs)

    def __array_function__(self, func, types, args, kwargs):
        handler = FUNCTIONS.get(func)
        if handler is None:
            raise Untraceable(f"numpy's {func.__name__}")
        return handler(self.b, *args, **kwargs)

    __gradcalc_traced__ = True      # what ops.traced asks
    # what ops.constant asks
    __gradcalc_constant__ = property(lambda self: self.b.comp.nodes[self.id].kind == "const")

    def __gradcalc_record__(self, op, inputs, params):      # ops.recorded
        return self.b.apply(op, inputs, params)

    # -- methods ---------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, dtype=None):
        return _sum(self.b, self, axis, keepdims)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _reshape(self.b, self, shape)

    def astype(self, dtype, copy=True):
        if np.dtype(dtype) == self.b.dtype:
            return self
        if np.dtype(dtype).kind in "biu":       # indices and masks carry no derivative
            return self.value.astype(dtype)
        raise Untraceable(f"a cast to {np.dtype(dtype)}")

    def swapaxes(self, a, c):
        return _swapaxes(self.b, self, a, c)

    def transpose(self, *axes):
        return _transpose(self.b, self, axes or None)

    T = property(lambda self: _transpose(self.b, self, None))

    def __getitem__(self, key):
        return _getitem(self.b, self, key)

    # -- arithmetic ------------------------------------------------------------------
    def _bin(name, swap=False):
        if swap:
            return lambda self, other: self.b.apply(name, [other, self])
        return lambda self, other: self.b.apply(name, [self, other])

    __add__, __radd__ = _bin("add"), _bin("add", True)
    __sub__, __rsub__ = _bin("sub"), _bin("sub", True)
    __mul__, __rmul__ = _bin("mul"), _bin("mul", True)
    __truediv__, __rtruediv__ = _bin("div"), _bin("div", True)
    __pow__, __rpow__ = _bin("pow"), _bin("pow", True)
    __matmul__, __rmatmul__ = _bin("matmul"), _bin("matmul", True)
    __and__, __rand__ = _bin("mul"), _bin("mul", True)
    __or__, __ror__ = _bin("maximum"), _bin("maximum", True)
    __lt__, __le__ = _bin("lt"), _bin("le")
    __gt__, __ge__ = _bin("gt"), _bin("ge")
    __eq__, __ne__ = _bin("eq"), _bin("ne")
    __hash__ = object.__hash__
    del _bin

    def __neg__(self):
        return self.b.apply("neg", [self])

    def __invert__(self):
        return self.b.apply("eq", [self, 0.0])

    def __abs__(self):
        return self.b.apply("abs", [self])


# -- numpy functions, as compositions of table ops ------------------------------------
def _value(a):
    return a.value if isinstance(a, Tracer) else np.asarray(a)


def _sum(b, x, axis=None, keepdims=False):
    x = b.lift(x)
    axes = _axes(axis, x.ndim)
    if axis is None and not keepdims:
        return b.apply("sum", [x], {"dim": None, "keepdim": False})
    for a in reversed(axes):        # one table sum per axis, the last first
        x = b.apply("sum", [x], {"dim": a - x.ndim, "keepdim": bool(keepdims)})
    return x


def _reshape(b, x, shape):
    x = b.lift(x)
    shape = tuple(int(d) for d in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
    if shape == x.shape:
        return x
    if shape == ():         # the table's reshape wants a shape; one element's sum is itself
        return b.apply("sum", [x], {"dim": None, "keepdim": False})
    return b.apply("reshape", [x], {"shape": shape})


def _expand_dims(b, x, axis):
    x = b.lift(x)
    shape = list(x.shape)
    for a in sorted(_axes(axis, x.ndim + len(axis) if isinstance(axis, tuple) else x.ndim + 1)):
        shape.insert(a, 1)
    return _reshape(b, x, tuple(shape))


def _squeeze(b, x, axis=None):
    x = b.lift(x)
    return _reshape(b, x, np.squeeze(np.empty(x.shape, dtype=bool), axis=axis).shape)


def _broadcast_to(b, x, shape):
    # x + 0 of the target shape: the table's add broadcasts, and its rule sums back
    x = b.lift(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return b.apply("add", [x, _zeros(b, shape)])


def _transpose(b, x, axes=None):
    x = b.lift(x)
    n = x.ndim
    axes = None if axes is None else tuple(a % max(n, 1) for a in axes)
    if axes is None or axes == tuple(reversed(range(n))):
        return b.apply("transpose", [x])
    if axes == tuple(range(n)):
        return x
    if axes == tuple(range(n - 2)) + (n - 1, n - 2):
        # a batch of matrices transposed: each matrix by the table's transpose, stacked
        lead = x.shape[:-2]
        flat = _reshape(b, x, (-1,) + x.shape[-2:]) if len(lead) != 1 else x
        mats = [b.apply("transpose", [_getitem(b, flat, (k,))]) for k in range(flat.shape[0])]
        if not mats:
            raise Untraceable("a transpose of an empty batch")
        out = b.apply("stack", mats, {"dim": -3})
        return _reshape(b, out, lead + (x.shape[-1], x.shape[-2]))
    raise Untraceable(f"a permutation {axes} of a {n}-D array")


def _swapaxes(b, x, a, c):
    x = b.lift(x)
    perm = list(range(x.ndim))
    perm[a], perm[c] = perm[c], perm[a]
    return _transpose(b, x, tuple(perm))


def _getitem(b, x, key):
    x = b.lift(x)
    key = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, (np.ndarray, list, Tracer)) for k in key):
        raise Untraceable("advanced indexing")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    full = []
    for k in key:
        if k is Ellipsis:
            full.extend([slice(None)] * (x.ndim - n_real))
        else:
            full.append(k)
    idx = tuple(k for k in full if k is not None)
    out = x
    if any(not (isinstance(k, slice) and k == slice(None)) for k in idx):
        out = b.apply("index", [x], {"idx": idx})
    want = np.empty(x.shape, dtype=bool)[tuple(full)].shape
    return _reshape(b, out, want)


def _pad(b, x, pad_width, mode="constant"):
    """Zeros before and after along each axis: a table cat with zero constants."""
    x = b.lift(x)
    if mode != "constant":
        raise Untraceable(f"np.pad in mode {mode}")
    for a, (before, after) in enumerate(pad_width):
        if not before and not after:
            continue
        zeros = [np.zeros(x.shape[:a] + (n,) + x.shape[a + 1:], dtype=b.dtype)
                 for n in (before, after)]
        parts = ([zeros[0]] if before else []) + [x] + ([zeros[1]] if after else [])
        x = b.apply("cat", parts, {"dim": a - x.ndim})
    return x


def _where(b, c, x, y):
    return b.apply("where", [c, x, y])


def _take(b, x, i, axis=None):
    """np.take of one index, or of consecutive ones (a range, [0]): an index or a slice."""
    if axis is None:
        raise Untraceable("np.take without an axis")
    lead = (slice(None),) * (axis % x.ndim)
    if isinstance(i, (int, np.integer)):
        return _getitem(b, x, lead + (int(i),))
    i = list(i)
    if i != list(range(i[0], i[0] + len(i))) if i else False:
        raise Untraceable("np.take of indices that are not consecutive")
    start = i[0] if i else 0
    return _getitem(b, x, lead + (slice(start, start + len(i)),))


def _extreme(name):
    def f(b, x, axis=None, keepdims=False, **kwargs):
        if kwargs.get("initial") is not None and x.size == 0:
            raise Untraceable(f"np.{name} with an initial value of an empty array")
        if isinstance(axis, tuple):
            raise Untraceable(f"np.{name} over several axes")
        return b.apply(name, [x], {"dim": axis, "keepdim": bool(keepdims)})
    return f


def _prod(name):
    def f(b, x, axis=None, keepdims=False, **_):
        params = {"dim": axis} if name == "cumprod" else {"dim": axis, "keepdim": bool(keepdims)}
        return b.apply(name, [x], params)
    return f


def _on_value(f):
    """A function whose result carries no derivative (an index, a count, a dtype): computed
    from the values, a constant of the traced program."""
    return lambda b, *args, **kwargs: f(*[_value(a) for a in args], **kwargs)


def _zeros(b, shape):
    """Zeros of `shape` as a read-only broadcast view: no memory, and uniform at a glance."""
    return np.broadcast_to(np.zeros((), dtype=b.dtype), shape)


def _like(f):
    """np.zeros_like and its kind: of a tracer's shape and dtype, without computing its value."""
    def like(b, a, *args, **kwargs):
        return f(_zeros(b, a.shape) if isinstance(a, Tracer) else a, *args, **kwargs)
    return like


def _concat(name):
    def f(b, xs, axis=0):
        return b.apply(name, list(xs), {"dim": axis})
    return f


FUNCTIONS = {
    np.sum: _sum, np.reshape: _reshape, np.expand_dims: _expand_dims, np.squeeze: _squeeze,
    np.broadcast_to: _broadcast_to, np.transpose: _transpose, np.swapaxes: _swapaxes,
    np.where: _where, np.take: _take, np.max: _extreme("max"), np.min: _extreme("min"),
    np.amax: _extreme("max"), np.amin: _extreme("min"),
    np.prod: _prod("prod"), np.cumprod: _prod("cumprod"),
    np.pad: _pad, np.concatenate: _concat("cat"), np.stack: _concat("stack"),
    np.zeros_like: _like(np.zeros_like), np.ones_like: _like(np.ones_like),
    np.count_nonzero: _on_value(np.count_nonzero), np.argmax: _on_value(np.argmax),
    np.argmin: _on_value(np.argmin), np.ndim: _on_value(np.ndim), np.shape: _on_value(np.shape),
    np.result_type: _on_value(np.result_type), np.any: _on_value(np.any),
    np.all: _on_value(np.all), np.size: _on_value(np.size), np.round: _on_value(np.round),
}


# ufuncs whose derivative is 0 wherever it is defined: computed from the values
CONSTANT_UFUNCS = {np.isfinite, np.isinf, np.rint, np.floor, np.ceil, np.trunc, np.signbit}


# -- programs --------------------------------------------------------------------------
class Traced:
    """A graph replayed on tracers: `b` the builder, `nodes` the tracer of each node id of
    the source graph (leaves keep their names). `wrt`: the names of the only leaves that
    keep requiring grad (None: as in the source), so that a backward over the replay does
    no work on paths that reach none of them."""

    def __init__(self, graph: Graph, limits: Limits, values: list | None = None,
                 wrt: set | None = None):
        self.source = graph
        self.b = Builder(graph.source, graph.dtype, limits)
        self.wrt = wrt
        self.nodes: list = []
        # a value already known is taken over; the others are computed if a rule reads them
        known = getattr(values, "known", values)
        for eq in graph.nodes:
            self.nodes.append(self._replay(eq, None if values is None else known[eq.id]))

    def _replay(self, eq, value):
        if eq.kind == "leaf":
            return self.b.leaf(eq.name, eq.value,
                               eq.requires_grad and (self.wrt is None or eq.name in self.wrt))
        if eq.kind == "const":
            return self.b.const(eq.value)
        return self.b.apply(eq.op, [self.nodes[i] for i in eq.inputs], eq.params, value)

    def leaf(self, name, value, requires_grad=True) -> Tracer:
        return self.b.leaf(name, value, requires_grad)

    def backward(self, cotangent, output: int | None = None) -> dict:
        """Leaf name -> traced cotangent of that leaf (plain.backward run on tracers)."""
        src = self.source
        out = src.output if output is None else output
        grads = plain.backward(src, self.nodes, self.b.lift(cotangent), out)
        return {src.nodes[i].name: g for i, g in grads.items()}

    def program(self, output: Tracer) -> tuple[Graph, "Values"]:
        """The recorded program with `output` as its output, and its values (each computed
        when first read)."""
        return self.b.graph(output.id), Values(self.b)


class Values:
    """The values of a recorded program by node id, each computed when first read; `known`
    holds those computed so far (None for the others)."""

    __slots__ = ("b",)

    def __init__(self, b: Builder):
        self.b = b

    def __getitem__(self, i):
        return self.b.value(i)

    def __len__(self):
        return len(self.b.values)

    known = property(lambda self: self.b.values)


def dot(b: Builder, pairs) -> Tracer:
    """sum over pairs (a, u) of sum(a * u): the scalar whose gradient is a VJP/HVP."""
    total = None
    for a, u in pairs:
        term = b.apply("sum", [b.apply("mul", [a, u])], {"dim": None, "keepdim": False})
        total = term if total is None else b.apply("add", [total, term])
    return total if total is not None else b.const(0.0)
