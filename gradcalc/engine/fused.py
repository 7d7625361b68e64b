"""A pointwise program's forward and backward recorded once as a list of ufunc calls, then
replayed block by block into buffers that every block reuses (issue 15 item 5), or, on
small arrays, once on the whole arrays, each call's result a fresh array.

Recording runs the program's own forwards and VJP rules, unchanged, on `Rec` stand-ins that
numpy hands every ufunc call to; replaying makes the same calls with the same operands, so
each element gets the same arithmetic as in the plain path, only written into a reused
buffer (or straight into the result) instead of a fresh array. A rule that does anything
but call elementwise ufuncs on its arrays (a Python branch on a value, np.where, `**`,
a method) refuses the recording, and the caller runs the program its other way.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .plain import walk


class Refused(Exception):
    """The recording met something it cannot replay exactly."""


class Rec(NDArrayOperatorsMixin):
    """One array of a block while recording: its register, its dtype and a one-element
    sample (what the ufunc's type resolution sees). Every numpy ufunc call on it is recorded;
    anything that would read a value or go around the ufuncs refuses."""

    __slots__ = ("tape", "reg", "sample", "shape", "dtype")

    def __init__(self, tape, reg, sample, shape):
        self.tape, self.reg, self.sample, self.shape = tape, reg, sample, shape
        self.dtype = sample.dtype

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: self.shape[0])

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # (the replays make unary and binary calls: no rule calls a ufunc of more operands)
        if method != "__call__" or kwargs or ufunc.nout != 1 or ufunc.nin > 2 or \
                ufunc.signature is not None:
            raise Refused(ufunc.__name__)
        return self.tape.call(ufunc, inputs)

    def __array_function__(self, func, types, args, kwargs):
        raise Refused(getattr(func, "__name__", "a numpy function"))

    def __array__(self, *args, **kwargs):
        raise Refused("a value was read")

    def _refuse(self, *args):
        # ndarray's ** takes shortcuts (x ** 2 is square, x ** 0.5 sqrt) that np.power does not
        raise Refused("a value or ** was used")

    __bool__ = __float__ = __int__ = __index__ = __len__ = __iter__ = _refuse
    __pow__ = __rpow__ = __ipow__ = __getitem__ = _refuse


class Tape:
    """The calls of one recording: `steps` are (ufunc, argument registers, result register).
    A register holds an input of the block (`inputs`, in register order), a constant of a
    rule (`regs`), or a call's result (its dtype in `dtypes`)."""

    def __init__(self, length: int):
        self.length = length
        self.regs = []          # register -> constant operand, None for inputs and results
        self.inputs = []        # (register, key) of each input; key[2]: sliced per block
        self.dtypes = {}        # result register -> dtype
        self.steps = []
        self.forward_calls = 0  # how many of the steps the forward made

    def _new(self, sample):
        rec = Rec(self, len(self.regs), sample, (self.length,))
        self.regs.append(None)
        return rec

    def input(self, key, sample):
        rec = self._new(sample)
        self.inputs.append((rec.reg, key))
        return rec

    def call(self, ufunc, args):
        refs, samples = [], []
        for a in args:
            if isinstance(a, Rec):
                if a.tape is not self:
                    raise Refused("another recording")
                refs.append(a.reg)
                samples.append(a.sample)
            elif isinstance(a, (float, int)) or \
                    isinstance(a, (np.ndarray, np.generic)) and np.ndim(a) == 0:
                refs.append(len(self.regs))
                self.regs.append(a)
                samples.append(a)
            else:
                raise Refused("an operand that is not one number")
        with np.errstate(all="ignore"):
            out = ufunc(*samples)
        if not isinstance(out, np.ndarray) or out.shape != (1,):
            raise Refused("a result that is not one element per element")
        rec = self._new(out)
        self.dtypes[rec.reg] = out.dtype
        self.steps.append((ufunc, tuple(refs), rec.reg))
        return rec


def record(graph, output: int, ops, steps, length: int, cot_dtype):
    """The Program of a blockable program's forward and backward on blocks of `length`
    elements (ops, steps: economy's forward schedule and backward steps), or None when a
    forward or rule cannot be recorded exactly."""
    nodes = graph.nodes
    oshape = nodes[output].shape
    dtype = graph.dtype
    tape = Tape(length)
    vals = {}

    def take(eq, shape, v):     # a block's values all have its shape: a contribution as it is
        if not isinstance(v, Rec) or v.dtype != dtype:
            raise Refused("a contribution not recorded, or not in the program's dtype")
        return v

    try:
        for eq in nodes[: output + 1]:
            if eq.kind != "op":     # leaves and constants: inputs (rebinding changes them)
                if type(eq.value) is not np.ndarray:
                    return None
                whole = eq.shape == oshape
                vals[eq.id] = tape.input(("value", eq.id, whole), eq.value.reshape(-1)[:1]
                                         if whole else eq.value.reshape(1))
        for k, f, inputs, params in ops:
            v = f(*[vals[i] for i in inputs], **params)
            if not isinstance(v, Rec) or v.dtype != dtype:
                return None
            vals[k] = v
        tape.forward_calls = len(tape.steps)
        ct = walk(steps, vals, {output: tape.input(("cotangent", None, True),
                                                   np.zeros(1, cot_dtype))}, take)
    except (Refused, AttributeError, TypeError, ValueError):
        return None
    return Program(tape, output, vals[output].reg,
                   {i: v.reg for i, v in ct.items() if nodes[i].kind == "leaf"},
                   {i: v.reg for i, v in vals.items()})


class Program:
    """A recorded tape with its buffers planned: each call writes into a buffer of a value no
    later call reads (in place where an operand dies at that call), or straight into the
    output's or a leaf grad's block when its result is that final value."""

    def __init__(self, tape: Tape, output: int, out_reg: int, leaf_regs: dict,
                 node_regs: dict):
        self.length = tape.length
        self.output = output
        self.leaves = frozenset(leaf_regs)
        # for a replay on whole arrays: the calls of the forward, then of the backward (every
        # forward call comes before the first backward one), the node each value input
        # reads, the cotangent's register, and the registers of the leaves' grads and of
        # every node's value (ids 0 to the output's)
        self._regs = tape.regs
        self._forward = _calls(tape.steps[: tape.forward_calls])
        self._backward = _calls(tape.steps[tape.forward_calls:])
        self._both = self._forward + self._backward
        self._reads = [(reg, key[1]) for reg, key in tape.inputs if key[0] == "value"]
        self._cot = [reg for reg, key in tape.inputs if key[0] == "cotangent"]
        self._grads = leaf_regs
        self._values = [node_regs[i] for i in range(len(node_regs))]
        # the finals: target -1 is the output, a leaf id its grad; each is written by the
        # call that computes it, unless that result is an input or another final's too
        finals = [(out_reg, -1)] + [(r, i) for i, r in leaf_regs.items()]
        direct, copies = {}, []
        for reg, target in finals:
            if reg in tape.dtypes and reg not in direct:
                direct[reg] = target
            else:
                copies.append((reg, target))
        last = {}                        # register -> index of the last call that reads it
        for s, (_, args, _) in enumerate(tape.steps):
            for a in args:
                last[a] = s
        for reg, _ in finals:
            last[reg] = len(tape.steps)
        self.buffers = []                # dtype of each block buffer
        free = {}                        # dtype -> buffers no live value holds
        owner = {}                       # register -> its buffer
        targets = []                     # each call's: a buffer, or a final's target
        for s, (fn, args, dst) in enumerate(tape.steps):
            dying = [owner.pop(a) for a in dict.fromkeys(args) if a in owner and last[a] == s]
            for b in dying:              # an operand that dies here may take the result
                free.setdefault(self.buffers[b], []).append(b)
            if dst in direct:
                targets.append(("final", direct[dst]))
                continue
            dt = tape.dtypes[dst]
            pool = free.get(dt)
            if pool:
                where = pool.pop()
            else:
                self.buffers.append(dt)
                where = len(self.buffers) - 1
            if dst in last:
                owner[dst] = where
            else:                        # never read: its buffer is free again at once
                free.setdefault(dt, []).append(where)
            targets.append(("buffer", where))
        self._slots(tape, targets, copies)

    def _slots(self, tape: Tape, targets: list, copies: list):
        """A block's arrays as one list of slots, [inputs (in `input_keys`' order), constants,
        buffers, output, grads (in `order`'s)], and the calls and copies over them: each call
        (ufunc, operand, operand or None, where its result goes)."""
        self.input_keys = [key for _, key in tape.inputs]
        # each input's node (None: the cotangent), and whether a block slices it
        self.reads = [None if kind == "cotangent" else i for kind, i, _ in self.input_keys]
        self.cut = [whole for _, _, whole in self.input_keys]
        self.order = sorted(self.leaves)
        slot = {reg: k for k, (reg, _) in enumerate(tape.inputs)}
        self.consts = []
        for reg, c in enumerate(tape.regs):
            if c is not None:
                slot[reg] = len(slot)
                self.consts.append(c)
        base = len(slot)
        finals = base + len(self.buffers)
        place = lambda target: finals + (0 if target == -1 else  # noqa: E731
                                         1 + self.order.index(target))
        self.calls = []
        for (fn, args, dst), (kind, where) in zip(tape.steps, targets):
            slot[dst] = base + where if kind == "buffer" else place(where)
            ops = [slot[a] for a in args]
            self.calls.append((fn, ops[0], ops[1], slot[dst]) if len(ops) == 2 else
                              (fn, ops[0], slot[dst], None))
        self.copies = [(slot[reg], place(target)) for reg, target in copies]

    def run(self, s: list):
        """One block: `s` holds its arrays in slot order (`_slots`), the output's and the
        grads' slots views of the flat results, which the calls and copies write."""
        for fn, x, y, z in self.calls:
            if z is None:
                fn(s[x], s[y])
            else:
                fn(s[x], s[y], s[z])
        for src, dst in self.copies:
            s[dst][...] = s[src]

    def forward(self, nodes, cotangent=None) -> list:
        """The registers after the recorded forward calls, made once on the whole arrays of
        the graph's `nodes` (no blocks, no buffers: each result a fresh array, as the plain
        forward makes it); with a `cotangent` of the output's shape, after the backward
        calls too (`grads` reads them)."""
        regs = list(self._regs)
        for reg, i in self._reads:
            regs[reg] = nodes[i].value
        if cotangent is None:
            _call(self._forward, regs)
            return regs
        for reg in self._cot:
            regs[reg] = cotangent
        _call(self._both, regs)
        return regs

    def grads(self, regs: list) -> dict:
        """Leaf id -> grad, from the registers after the backward calls."""
        return {i: regs[r] for i, r in self._grads.items()}

    def values(self, regs: list) -> list:
        """The value of every node up to the output, by id, from `forward`'s registers."""
        return [regs[r] for r in self._values]

    def backward(self, regs: list, cotangent) -> dict:
        """Leaf id -> grad: the recorded backward calls on whole arrays after `forward`.
        The cotangent may carry batch axes in front of the output's shape (a Jacobian's
        batch of cotangents), which every call broadcasts, as the plain batched backward
        does."""
        regs = list(regs)
        for reg in self._cot:
            regs[reg] = cotangent
        _call(self._backward, regs)
        return self.grads(regs)


def _calls(steps) -> list:
    """Recorded steps as _call runs them: (ufunc, operand, operand or None, result)."""
    return [(fn, args[0], args[1] if len(args) == 2 else None, dst) for fn, args, dst in steps]


def _call(calls, regs: list):
    for fn, a, b, dst in calls:
        regs[dst] = fn(regs[a]) if b is None else fn(regs[a], regs[b])
