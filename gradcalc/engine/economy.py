"""The engine's economies, none of which may change a number: each gives what plain.py gives,
bit for bit (tests/test_perf_equivalence.py holds each to the plain path on every op).

- a *plan* per compiled program: which values the backward rules read (found in the rules'
  own code, as PyTorch's codegen finds saved tensors in derivatives.yaml), so a lean forward
  drops every intermediate nobody will read again and writes ufunc results into such dead
  buffers instead of fresh pages;
- cotangents accumulated in place when the engine owns the buffer, and values freed as soon
  as no rule will read them;
- a pointwise program run block by block: each block of elements goes through the plain
  forward and backward while its arrays are in cache (issue 15: the backward's passes over
  memory become passes over cache, and no whole-array intermediate is allocated); when
  every rule is elementwise ufunc calls, their recording (fused.py) is replayed into a few
  block buffers, kept from one run to the next, instead (as one block on mid-sized arrays);
  or the forward alone for several outputs (a recorded second-order program's,
  engine/higher.py); on small arrays the recording is replayed once on the whole arrays,
  a Jacobian's batch of cotangents through the same calls;
- structured Jacobians: an elementwise program's Jacobian is diagonal (plus one value per
  column off the diagonal, 0 unless a rule makes 0*inf), computed with two cotangents and
  expanded at the end, or together with the grads in one pass; an identity batch through a
  matrix product is the matrix itself, pulled back through pointwise rules as wide rows.
The engine calls `run` alone; the other public functions are the parts the equivalence tests
hold to the plain path one by one.
"""
from __future__ import annotations

import copy
import math
import sys
from collections import Counter
from itertools import chain
from operator import itemgetter

import numpy as np

from . import fused
from .plain import forward as plain_forward
from .plain import schedule, sum_to, walk
from .sizes import elements, largest, remembered

# below this many elements in the output, the Jacobian is one dense batched pass (cheaper
# than finding structure); tests force either path on every op
STRUCTURE_MIN = 64
# a forward is lean (drops dead intermediates, reuses buffers) above this many elements in
# all, when some value has LEAN_NODE_MIN elements or more: many tiny arrays gain nothing
# from dropping and the lean bookkeeping costs (issue 15: 31 % slower for 10^5 values of 8)
LEAN_MIN = 1 << 16
LEAN_NODE_MIN = 1 << 12
# dead buffers a lean forward keeps for later ufunc results
POOL = 2
# a pointwise program whose output has this many elements runs block by block, BLOCK
# elements at a time (a multiple of every SIMD width, so each block takes numpy's loops at
# the same alignment as the whole array): every pass then reads and writes cache, not memory
BLOCK_MIN = 1 << 16
BLOCK = 1 << 14
# a pointwise program whose output has fewer elements than this replays its recording once on
# the whole arrays (fresh ones, as the walk makes them); larger ones replay it as one block
# into kept buffers when values may be dropped (below BLOCK_MIN; the seed at n = 10^4 about
# 127 -> 99 us, 3 * 10^4 about 740 -> 190 us, compute() in process on the loaded 2-core
# machine), else walk the rules, whose in-place sums and freed values keep fewer arrays
# alive at once: the tape's dozen live arrays of 64 KB or more made the allocator hand pages
# back and fault them in again on every call (the seed at n = 4,000 about 90 us taped vs
# 115 us walked, at 8,000 about 770 vs 280)
TAPE_MAX = 1 << 12
# a recorded (fused) program's blocks: its buffers are reused, so larger blocks only cut
# the Python per call (16,384 -> 65,536: the seed at n = 10^6 about 1.2x -> 1.0x the floor
# that reuses its buffers, in process on the loaded 2-core machine)
FUSED_BLOCK = 1 << 16


def run(request):
    """The economic way through one request (engine.Request): (values, grads, Jacobians or
    None). Values are dropped (a blocked or lean forward, a backward that frees) only when
    the request allows it and the program is large enough for that to pay. One remembered
    record answers every per-program question, and numpy's error state is set once (issue
    15: a request on tiny arrays is mostly such per-call Python)."""
    graph, out, cot, leaves = request.graph, request.output, request.cotangent, request.leaves
    # the thresholds are part of the key: a test that lowers them meets a program anew
    way = remembered(graph, ("way", out, BLOCK_MIN, LEAN_MIN, LEAN_NODE_MIN, TAPE_MAX),
                     lambda: Way(graph, out))
    if request.drop_values and not request.jacobian and way.blocks():
        done = run_blocked(graph, out, cot, BLOCK, FUSED_BLOCK, rules=way.blocked)
        if done is not None:
            return Values(done[0], graph, out), done[1], None
    tape = way.whole_tape(graph, out)
    if tape is not None and type(cot) is np.ndarray and cot.dtype == graph.dtype and \
            cot.shape == graph.nodes[out].shape:
        with np.errstate(all="ignore"):
            return _run_taped(tape, graph, out, cot, leaves, request.jacobian)
    lean = request.drop_values and way.lean
    with np.errstate(all="ignore"):
        values = forward_lean(graph, out) if lean and way.drops else \
            _forward(way.ops, graph, out)
        both = vjp_and_jacobian(graph, values, cot, out, leaves) if request.jacobian else None
        if both is None:
            dead = plan(graph, out).bw_dead if lean and not request.jacobian else None
            grads = _backward(graph, values, cot, out, (), dead, None, way.steps)
            jac = jacobian(graph, values, out, leaves) if request.jacobian else None
        else:
            grads, jac = both
    return (Values(values, graph, out) if lean else values), grads, jac


class Way:
    """What `run` asks of one program and output, found once per compiled program: whether
    a request that drops values goes block by block or lean, whether a lean forward drops
    anything (else it is the plain forward with more bookkeeping: W @ tanh(a) keeps every
    value for its rules), the forward schedule and the backward steps, and the whole tape of
    a small pointwise program that runs again."""

    def __init__(self, graph, out: int):
        size, pointwise = graph.nodes[out].size, blockable(graph, out)
        self.blocked = size >= BLOCK_MIN and pointwise
        self.replayed = TAPE_MAX <= size < BLOCK_MIN and pointwise
        self.lean = elements(graph, out)[0] >= LEAN_MIN and largest(graph, out) >= LEAN_NODE_MIN
        self.drops = self.lean and bool(plan(graph, out).fw_dead)
        self.ops = _schedule(graph, out)
        self.steps = _steps(graph, out)
        self.tape = None
        self.runs = 0

    def blocks(self) -> bool:
        """Whether a request that may drop values goes block by block: a large blockable
        program, or one of TAPE_MAX elements or more from its second run on, when its calls
        can be recorded (replayed then as one block into kept buffers; a recording costs
        about as much as the compile, the seed's about 95 us, which a program run once, as
        each of a stream of distinct programs, should not pay)."""
        return self.blocked or self.replayed and self.runs > 0

    def whole_tape(self, graph, out: int):
        """The program's whole tape (or None), recorded at its second run (as `blocks`)."""
        if self.runs < 2:
            self.runs += 1
            if self.runs == 2:
                self.tape = _whole_tape(graph, out)
        return self.tape


def _whole_tape(graph, out: int):
    """The recorded calls (fused.Program) of a small pointwise program with a 1-D output
    (under TAPE_MAX elements), replayed once on its whole arrays (issue 15: on arrays of a
    few numbers, one ufunc call per recorded step is most of a request, the walk's
    bookkeeping around each rule more than the rule); None for any other program, or one
    that cannot be recorded."""
    n = graph.nodes[out].size
    if len(graph.nodes[out].shape) != 1 or not 0 < n < TAPE_MAX or not blockable(graph, out):
        return None
    return fused.record(graph, out, _schedule(graph, out), _schedule_back(graph, out), n,
                        graph.dtype)


def _run_taped(prog, graph, out: int, cot, leaves, want_jacobian: bool):
    """`run` of a program that has a whole tape: the same numbers as the walk, from the
    recorded calls (the Jacobian's batch of cotangents through the same calls)."""
    nodes = graph.nodes
    if not want_jacobian:
        regs = prog.forward(nodes, cot)
        return prog.values(regs) + [None] * (len(nodes) - out - 1), prog.grads(regs), None
    regs = prog.forward(nodes)
    values = prog.values(regs) + [None] * (len(nodes) - out - 1)
    # (a blockable program is elementwise: vjp_and_jacobian answers)
    grads, jac = vjp_and_jacobian(graph, values, cot, out, leaves,
                                  pull=lambda g, batch: prog.backward(regs, g))
    return values, grads, jac


# ------------------------------------------------------------------ what rules read
_READS = {}
_CO_VARARGS = 0x04


def rule_reads(rule):
    """The positions (0 = g, 1 = ans, 2.. = the op's arrays) a VJP rule reads, found in its
    code; None when it cannot be told (then every value is kept)."""
    key = id(rule)
    hit = _READS.get(key)
    if hit is not None and hit[0] is rule:
        return hit[1]
    reads = None
    code = getattr(rule, "__code__", None)
    if code is not None and not code.co_flags & _CO_VARARGS:
        import dis
        params = code.co_varnames[: code.co_argcount]
        used = set()
        for ins in dis.get_instructions(code):
            if ins.opname.startswith("STORE"):
                continue
            val = ins.argval
            if isinstance(val, str):
                used.add(val)
            elif isinstance(val, tuple):
                used.update(x for x in val if isinstance(x, str))
        reads = frozenset(k for k, name in enumerate(params) if name in used)
    _READS[key] = (rule, reads)
    return reads


def read_ids(eq, rule) -> list:
    """The ids of the values (node eq's own, its inputs') that `rule`, a VJP rule of eq,
    reads: all of them when that cannot be told."""
    reads = rule_reads(rule)
    if reads is None:
        return [eq.id, *eq.inputs]
    return [eq.id if k == 1 else eq.inputs[k - 2] for k in reads if 1 <= k < len(eq.inputs) + 2]


class Plan:
    """Liveness of one program's values for one output: what backward reads, when forward
    and backward use each value for the last time."""

    def __init__(self, graph, output: int):
        nodes = graph.nodes
        self.output = output
        # nodes whose backward may run: reached from the output through rules that exist
        reach = {output}
        self.needed = set()            # values some backward rule reads
        bw_last = {}                   # value id -> smallest consumer id whose rule reads it
        for eq in reversed(nodes[: output + 1]):
            if eq.id not in reach or eq.kind != "op" or not eq.requires_grad:
                continue
            for j, i in enumerate(eq.inputs):
                rule = eq.op.vjp(j)
                if rule is None or not nodes[i].requires_grad:
                    continue
                reach.add(i)
                for k in read_ids(eq, rule):
                    self.needed.add(k)
                    bw_last[k] = eq.id      # reverse order: the last one seen is the smallest
        fw_last = {}
        for eq in nodes[: output + 1]:
            for i in eq.inputs:
                fw_last[i] = eq.id
        droppable = lambda k: nodes[k].kind == "op" and k != output  # noqa: E731
        # forward: after computing node i, these inputs are dead
        self.fw_dead = {}
        for k, last in fw_last.items():
            if droppable(k) and k not in self.needed:
                self.fw_dead.setdefault(last, []).append(k)
        # never consumed, not needed: dead as soon as computed
        for eq in nodes[: output + 1]:
            if droppable(eq.id) and eq.id not in fw_last and eq.id not in self.needed:
                self.fw_dead.setdefault(eq.id, []).append(eq.id)
        # backward: after processing node i, these values are no longer read
        self.bw_dead = {}
        for k, last in bw_last.items():
            if droppable(k):
                self.bw_dead.setdefault(last, []).append(k)


def plan(graph, output: int) -> Plan:
    return remembered(graph, ("plan", output), lambda: Plan(graph, output))


# ------------------------------------------------------------------ forward
def _schedule(graph, last: int) -> list:
    """(id, forward, inputs, params) of each op up to `last`, remembered per program."""
    return remembered(graph, ("forward", last), lambda: [
        (eq.id, eq.op.forward, eq.inputs, eq.params)
        for eq in graph.nodes[: last + 1] if eq.kind == "op"])


def _forward(ops, graph, last: int) -> list:
    """The plain forward over a remembered schedule `ops` (_schedule), with the common
    arities called directly (JSON Lines runs it per request), under the caller's error
    state."""
    nodes = graph.nodes
    values = [eq.value if eq.kind != "op" else None for eq in nodes[: last + 1]]
    values += [None] * (len(nodes) - len(values))
    dtype, ndarray = graph.dtype, np.ndarray
    for k, f, inputs, params in ops:
        if params:
            out = f(*[values[i] for i in inputs], **params)
        elif len(inputs) == 2:
            out = f(values[inputs[0]], values[inputs[1]])
        elif len(inputs) == 1:
            out = f(values[inputs[0]])
        else:
            out = f(*[values[i] for i in inputs])
        if type(out) is not ndarray or (out.dtype is not dtype and out.dtype != dtype):
            out = np.asarray(out, dtype=dtype)
        values[k] = out
    return values


def forward_lean(graph, last: int) -> list:
    """The forward that drops (sets to None) every intermediate that neither a later node nor
    a backward rule from `last` will read, and lets ufuncs write into those dead buffers."""
    nodes = graph.nodes
    dtype = graph.dtype
    values = [None] * len(nodes)
    p = plan(graph, last)
    owned = set()        # ids whose buffer forward allocated and nothing views
    spare = []           # dead owned buffers not yet written again (at most POOL)
    with np.errstate(all="ignore"):
        for eq in nodes[: last + 1]:
            if eq.kind != "op":
                values[eq.id] = eq.value
                continue
            args = [values[i] for i in eq.inputs]
            dead = p.fw_dead.get(eq.id, ())
            out = None
            f = eq.op.forward
            if isinstance(f, np.ufunc) and f.nout == 1 and f.nin == len(args) \
                    and not eq.params and all(a.dtype == dtype for a in args):
                # a dead input's buffer, else a spare one: the same loop on the same inputs,
                # only where the result is written changes (and no fresh page is touched)
                buf = next((k for k in dead if k in owned and k != eq.id
                            and values[k].shape == eq.shape), None)
                if buf is not None:
                    out = f(*args, out=values[buf])
                    owned.discard(buf)
                else:
                    at = next((m for m, b in enumerate(spare) if b.shape == eq.shape), None)
                    if at is not None:
                        out = f(*args, out=spare.pop(at))
                if out is not None:
                    owned.add(eq.id)
            if out is None:
                out = f(*args, **eq.params)
                if not isinstance(out, np.ndarray) or out.dtype != dtype:
                    out = np.asarray(out, dtype=dtype)
                if out.flags.owndata and out.flags.writeable and all(out is not a for a in args):
                    owned.add(eq.id)
                else:             # a view or an alias of an input: its inputs stay intact
                    owned.difference_update(eq.inputs)
            values[eq.id] = out
            for k in dead:
                if k in owned and len(spare) < POOL and k != eq.id:
                    spare.append(values[k])
                values[k] = None
                owned.discard(k)
    return values


class Values(list):
    """Node values after a lean pass dropped some intermediates: the first read of a dropped
    entry recomputes the full forward once, so a reader (a check, the graph view) never sees
    a hole. The engine itself works on plain lists."""

    def __init__(self, values, graph, upto: int):
        super().__init__(values)
        self._refill_from = (graph, upto)

    def _refill(self):
        if self._refill_from is None:
            return
        graph, upto = self._refill_from
        self._refill_from = None
        for i, v in enumerate(plain_forward(graph, upto=upto)):
            if v is not None and list.__getitem__(self, i) is None:
                list.__setitem__(self, i, v)

    def __getitem__(self, i):
        v = list.__getitem__(self, i)
        if self._refill_from is not None and (v is None or isinstance(i, slice)):
            self._refill()
            v = list.__getitem__(self, i)
        return v

    def __iter__(self):
        self._refill()
        return list.__iter__(self)


# ------------------------------------------------------------------ backward
def _schedule_back(graph, out: int):
    """plain.schedule from `out` (the shared walk's order), remembered per program."""
    return remembered(graph, ("schedule", out), lambda: schedule(graph, out))


class Steps:
    """The backward schedule of `backward` from one output, remembered per compiled program:
    plain.schedule itself (no per-edge record is rebuilt), the inputs that take more than one
    contribution (then who owns a cotangent's buffer matters; a single contribution is
    stored as it comes) and the ids other than leaves that may keep a cotangent no step
    pops (the output or an input without rules), dropped at the end instead of testing
    every entry's kind."""

    def __init__(self, graph, out: int):
        nodes = graph.nodes
        self.steps = _schedule_back(graph, out)
        into = Counter(map(itemgetter(0), chain.from_iterable(map(itemgetter(1), self.steps))))
        self.shared = {i for i, n in into.items() if n > 1}
        into[out] = 1
        for eq, _ in self.steps:
            into.pop(eq.id, None)
        self.stray = [i for i in into if nodes[i].kind != "leaf"]


def _steps(graph, out: int) -> Steps:
    return remembered(graph, ("steps", out), lambda: Steps(graph, out))


def backward(graph, values, cotangent, output: int | None = None, batch: tuple = (),
             free: bool = False, seeds: dict | None = None):
    """Cotangents of every node that requires grad, after pulling `cotangent` (shape
    batch + output shape) back from `output`. Returns a dict node id -> array of shape
    batch + node shape; leaves that the output does not reach are absent.

    `free` drops each value from `values` once no rule will read it again (a lean run that
    needs nothing after backward). `seeds` gives cotangents of the output's inputs directly
    (the structured Jacobian), instead of running the output's own rules."""
    out = graph.output if output is None else output
    dead = plan(graph, out).bw_dead if free else None
    with np.errstate(all="ignore"):
        return _backward(graph, values, cotangent, out, batch, dead, seeds, _steps(graph, out))


def _backward(graph, values, cotangent, out: int, batch: tuple, dead, seeds, sched: Steps):
    """backward's walk under the caller's error state: `dead` (node id -> values no rule
    reads after it, or None) as `free` asks, `sched` its remembered steps."""
    nodes = graph.nodes
    nb = len(batch)
    dtype = graph.dtype
    ct = {out: cotangent} if seeds is None else dict(seeds)
    own = set()           # ids whose cotangent buffer the engine allocated: add in place
    ndarray = np.ndarray
    shared = sched.shared
    for eq, edges in sched.steps:
        g = ct.pop(eq.id, None)
        if g is None or (seeds is not None and eq.id == out):
            continue
        own.discard(eq.id)
        ans = values[eq.id]
        inputs = eq.inputs      # the common arities without a comprehension's frame
        if len(inputs) == 2:
            args = (values[inputs[0]], values[inputs[1]])
        elif len(inputs) == 1:
            args = (values[inputs[0]],)
        else:
            args = tuple([values[i] for i in inputs])
        params = eq.params
        for i, rule, shape in edges:
            v = rule(g, ans, *args, **params) if params else rule(g, ans, *args)
            if v is None:
                continue
            if type(v) is not ndarray or v.shape != (batch + shape if nb else shape):
                v = sum_to(v, nb, batch, shape)
            if v.dtype is not dtype and v.dtype != dtype:
                v = v.astype(dtype)
            have = ct.get(i)
            if have is None:
                ct[i] = v
                if i in shared and v.base is None and v.flags.writeable and v is not g \
                        and v is not ans and id(v) not in map(id, args):
                    own.add(i)
                continue
            if i in own:
                np.add(have, v, out=have)
            elif v.base is None and v.flags.writeable and v is not g and \
                    v is not ans and id(v) not in map(id, args):    # v is fresh
                ct[i] = np.add(have, v, out=v)
                own.add(i)
            else:
                ct[i] = have = have + v
                if type(have) is ndarray:     # 0-d sums come back as scalars
                    own.add(i)
        del g, ans, args
        if dead is not None:
            for k in dead.get(eq.id, ()):
                values[k] = None
    if seeds is not None:         # a seed may sit on any node
        return {i: v for i, v in ct.items() if nodes[i].kind == "leaf"}
    for i in sched.stray:
        ct.pop(i, None)
    return ct


# ------------------------------------------------------------------ block by block
def blockable(graph, output: int) -> bool:
    """True when every element of the output depends on the same element of every value
    (remembered per program): each op up to `output` is pointwise, draws no random number
    and has the output's shape, and every other value has the output's shape or is one
    number (shape ()) that no gradient flows to. Then a block of elements can go through
    forward and backward alone, with the same arithmetic on each element."""
    def find():
        nodes = graph.nodes
        oshape = nodes[output].shape
        for eq in nodes[: output + 1]:
            if eq.kind == "op":
                if not eq.op.pointwise or eq.op.random or eq.shape != oshape:
                    return False
            elif eq.shape != oshape and (eq.shape != () or eq.requires_grad):
                return False
        return True
    return remembered(graph, ("blockable", output), find)


def run_blocked(graph, output: int, cotangent, block: int, fused_block: int | None = None,
                rules: bool = True):
    """(values, grads) of a blockable program, `block` elements at a time: the plain forward
    and backward on each block, written into whole arrays at the end of it; or its recorded
    calls replayed (`fused_block` elements at a time, default `block`). Values holds the
    leaves, constants and output only (Values fills in the rest when read). None when the
    blocks disagree about which leaves the output reaches (then the caller runs whole), or
    when the calls cannot be recorded and `rules` is False (the blocks would run the rules
    themselves)."""
    nodes = graph.nodes
    oshape = nodes[output].shape
    n, dtype = math.prod(oshape), graph.dtype
    flat_cot = np.asarray(cotangent)
    if flat_cot.ndim != 1:
        flat_cot = flat_cot.reshape(-1)
    fblock = fused_block or block
    progs = fused_programs(graph, output, n, fblock, flat_cot.dtype)
    if progs is None and not rules:
        return None
    values = [eq.value if eq.kind != "op" else None for eq in nodes[: output + 1]]
    values += [None] * (len(nodes) - output - 1)
    if progs is not None:
        out, grads = run_fused(progs, nodes, flat_cot, n, fblock, dtype)
    else:
        done = _run_rules(graph, output, values, flat_cot, n, block)
        if done is None:
            return None
        out, grads = done
    if len(oshape) == 1:
        values[output] = out
        return values, grads
    values[output] = out.reshape(oshape)
    return values, {i: g.reshape(oshape) for i, g in grads.items()}


def _run_rules(graph, output: int, values: list, flat_cot, n: int, block: int):
    """run_blocked's (flat output, {leaf: flat grad}) from the plain forward and the rules on
    each block; None when the blocks disagree about which leaves the output reaches."""
    nodes = graph.nodes
    oshape = nodes[output].shape
    dtype, ndarray = graph.dtype, np.ndarray
    ops, steps = _schedule(graph, output), _schedule_back(graph, output)
    sliced = {eq.id: eq.value.reshape(-1) for eq in nodes[: output + 1]
              if eq.kind != "op" and eq.shape == oshape}   # id -> the flat array a block slices
    out = np.empty(n, dtype=dtype)
    grads, reached = {}, None
    part = None

    def take(eq, shape, v):         # every value of a block has the block's shape
        if type(v) is not ndarray or v.shape != part:
            v = sum_to(v, 0, (), part)
        return v if v.dtype == dtype else v.astype(dtype)

    with np.errstate(all="ignore"):
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            part = (hi - lo,)
            vals = list(values)
            for i, flat in sliced.items():
                vals[i] = flat[lo:hi]
            _forward_block(ops, vals, dtype)
            out[lo:hi] = vals[output]
            ct = walk(steps, vals, {output: flat_cot[lo:hi]}, take)
            leaves = {i for i in ct if nodes[i].kind == "leaf"}
            if reached is None:
                reached = leaves
                grads = {i: np.empty(n, dtype=dtype) for i in leaves}
            elif leaves != reached:
                return None
            for i in leaves:
                grads[i][lo:hi] = ct[i]
    return out, grads


def fused_programs(graph, output: int, n: int, block: int, cot_dtype):
    """{block length: fused.Program} for the blocks of an n-element run (the last block may
    be shorter, and is recorded apart), remembered per program; None when a forward or
    rule cannot be recorded (then the blocks run the rules themselves)."""
    def make(length):
        return fused.record(graph, output, _schedule(graph, output),
                            _schedule_back(graph, output),
                            length, cot_dtype) or False

    def find():
        lengths = {min(block, n), n % block or min(block, n)}
        progs = {m: remembered(graph, ("fused", output, m, cot_dtype.str), lambda: make(m))
                 for m in lengths}
        if not all(progs.values()) or len({(p.leaves, tuple(p.input_keys))
                                           for p in progs.values()}) != 1:
            return None
        return progs
    return remembered(graph, ("fused run", output, n, block, cot_dtype.str), find)


# the last result block of a run (a fused run's output and grads, an elementwise program's
# Jacobians), kept (up to KEEP_MAX bytes) so that the next run of that size, once nothing
# refers to the old results, writes into pages already mapped: fresh pages cost more than
# the run (four 8 MB arrays fault in for about 18 ms on this machine, the whole seed run at
# n = 10^6 computes in about 12 ms; two 1000 x 1000 Jacobians, mapped only along their
# diagonals, about 2.5 ms, cleared when kept about 0.5 ms; the seed run's 320 MB of results
# at n = 10^7 about a third of that run). The price: a process holds its last result block,
# at most KEEP_MAX bytes, until its next run (or its exit).
KEEP_MAX = 1 << 29
_KEPT = []


def result_block(shape: tuple, dtype, zeroed: bool = False):
    """An array for the results of a run: the kept block when its shape and dtype fit and no
    one else holds it (its views were all dropped), else a new one (kept in turn when small
    enough). Uninitialised, or all zeros when `zeroed` (a new one from calloc, whose pages
    are mapped only where written; a kept one cleared)."""
    try:
        kept = _KEPT.pop()          # atomic: two threads never get the same block
    except IndexError:
        kept = None
    # references: `kept` and getrefcount's argument; any view of it adds one
    if kept is not None and kept.shape == shape and kept.dtype == dtype and \
            sys.getrefcount(kept) == 2:
        block = kept
        if zeroed:
            block.fill(0)
    else:
        block = (np.zeros if zeroed else np.empty)(shape, dtype=dtype)
    del kept
    if block.nbytes <= KEEP_MAX:
        _KEPT.append(block)
    return block


def run_fused(progs, nodes, flat_cot, n: int, block: int, dtype):
    """(output, grads) as flat arrays: the recorded calls, block after block, each block's
    intermediates in the same few buffers (kept for the next run), its output and grads
    written into one result block."""
    first = next(iter(progs.values()))
    sources = [flat_cot if i is None else nodes[i].value for i in first.reads]
    if len(nodes[first.output].shape) != 1:     # the flat arrays a block slices
        sources = [v.reshape(-1) if c else v for v, c in zip(sources, first.cut)]
    kept = block_buffers(progs)
    buffers = kept[1]
    whole = result_block((1 + len(first.order), n), dtype)
    rows = list(whole)                          # (its rows, as views)
    with np.errstate(all="ignore"):
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            prog = progs[hi - lo]
            if hi - lo == n:
                prog.run(sources + prog.consts + buffers[n] + rows)
            else:
                prog.run([v[lo:hi] if c else v for v, c in zip(sources, first.cut)] +
                         prog.consts + buffers[hi - lo] + [r[lo:hi] for r in rows])
    if not _BUFFERS:
        _BUFFERS.append(kept)
    return rows[0], dict(zip(first.order, rows[1:]))


# the last fused run's block buffers, kept for the next run of the same programs (as the
# result block): fresh ones of 64 KB or more made the allocator hand their pages back and
# fault them in again on every call (the seed at n = 10^5 about 1,100 us with fresh
# buffers, 430 us kept, compute() in process on one core)
_BUFFERS = []


def block_buffers(progs: dict):
    """(programs, {block length: its buffers}) for a fused run of `progs`: the kept ones
    when they were made for these programs (taken: a run in another thread makes its own),
    else new ones; run_fused gives them back."""
    try:
        kept = _BUFFERS.pop()       # atomic: two threads never get the same buffers
    except IndexError:
        kept = None
    key = tuple(progs.values())
    if kept is not None and kept[0] == key:
        return kept
    return key, {m: [np.empty(m, dt) for dt in p.buffers] for m, p in progs.items()}


def _forward_block(ops, vals: list, dtype):
    """The plain forward of one block: each scheduled op into `vals`, in the program's dtype."""
    ndarray = np.ndarray
    for k, f, inputs, params in ops:
        v = f(*[vals[i] for i in inputs], **params)
        vals[k] = v if type(v) is ndarray and v.dtype == dtype else np.asarray(v, dtype=dtype)


def forward_blocked(graph, outputs: list, block: int) -> list | None:
    """The values of `outputs` (ids of one shape) of a program that is blockable up to its
    last node, block by block: what plain.forward gives for them, bit for bit, with no
    whole-array intermediate. None when the program is not blockable."""
    last = max(outputs)
    if not blockable(graph, last) or any(graph.nodes[i].shape != graph.nodes[last].shape
                                         for i in outputs):
        return None
    nodes = graph.nodes
    oshape = nodes[last].shape
    n, dtype, ops = math.prod(oshape), graph.dtype, _schedule(graph, last)
    values = [eq.value if eq.kind != "op" else None for eq in nodes[: last + 1]]
    sliced = {eq.id: eq.value.reshape(-1) for eq in nodes[: last + 1]
              if eq.kind != "op" and eq.shape == oshape}
    outs = [np.empty(n, dtype=dtype) for _ in outputs]
    with np.errstate(all="ignore"):
        for lo in range(0, n, block):
            vals = list(values)
            for i, flat in sliced.items():
                vals[i] = flat[lo:lo + block]
            _forward_block(ops, vals, dtype)
            for o, i in zip(outs, outputs):
                o[lo:lo + block] = vals[i]
    return [o.reshape(oshape) for o in outs]


# ------------------------------------------------------------------ Jacobians
def elementwise_path(graph, output: int) -> bool:
    """True when every node between the output and the leaves that backward reaches is an
    elementwise op of the output's shape: then row i of the Jacobian is the cotangent e_i
    pulled back position by position, nonzero only at i (up to 0*inf)."""
    return pointwise_below(graph, output) is not None


def pointwise_below(graph, node: int) -> list | None:
    """The op nodes that backward reaches from `node` (itself included), when each is an
    elementwise op of node's shape whose inputs that take a gradient have that shape too;
    else None."""
    nodes = graph.nodes
    shape = nodes[node].shape
    need, found = {node}, []
    for eq in reversed(nodes[: node + 1]):
        if eq.id not in need or eq.kind != "op":
            continue
        if not eq.op.pointwise or eq.shape != shape:
            return None
        found.append(eq)
        for j, i in enumerate(eq.inputs):
            if not nodes[i].requires_grad or eq.op.vjp(j) is None:
                continue
            if nodes[i].shape != shape:
                return None
            need.add(i)
    return found


def _expand_diagonal(J, d, o):
    """Fill the n x n matrix J (all zeros) as the dense Jacobian whose diagonal is d and
    whose off-diagonal entries of column j are o[j] (what a zero cotangent became at j: 0,
    -0.0 or NaN)."""
    n = d.size
    o = o.reshape(-1)
    if o.any() or np.signbit(o).any():
        J[...] = o
    J.reshape(-1)[:: n + 1] = d.reshape(-1)


def _exact_matrix(m, product=None, other=None):
    """`m` as the identity batch through a product gives it (sums of one exact term and
    exact zeros, which start from +0.0): None when m holds a non-finite value (0*inf makes
    NaN there), m itself when it has no -0.0, else m + 0.0 (-0.0 becomes +0.0).

    `product` = m times the vector `other` (the forward value): when both are finite and
    `other` has no zero, every term m[i,j]*other[j] was finite, so m is, with no pass over m
    (an inf or NaN in m makes a non-finite term, and no sum loses one)."""
    if m.size == 0:
        return m
    # (sums under the caller's error state: one that overflows only sends m to the scan)
    known = product is not None and math.isfinite(float(np.add.reduce(product, axis=None))) \
        and math.isfinite(float(np.add.reduce(other, axis=None))) and bool(other.all())
    if not known:
        lo, hi = float(m.min()), float(m.max())      # NaN-propagating, vectorised
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        if lo > 0 or hi < 0:
            return m
    # m is finite here: m + 0.0 changes -0.0 alone
    return m + 0.0 if has_negative_zero(m) else m


# -0.0 read as a signed integer, by float size: (that integer type, its smallest value)
_NEGATIVE_ZERO = {k: (np.dtype(f"i{k}"), int(np.iinfo(f"i{k}").min)) for k in (4, 8)}


def has_negative_zero(m) -> bool:
    """Whether the float array m holds -0.0: its bits read as a signed integer are the
    smallest integer of that size, and no other float's are, so one vectorised integer min
    tells (about twice as fast as m.all(), a test per element)."""
    as_int, bits = _NEGATIVE_ZERO[m.dtype.itemsize]
    return int(np.minimum.reduce(m.view(as_int), axis=None, initial=0)) == bits


def identity_seeds(graph, values, output: int):
    """Cotangents of the output's inputs when the identity batch goes through a matrix
    product at the output: the op's matrix itself, without multiplying by the identity.
    None when the output is not such a product (or one input cannot take the shortcut)."""
    eq = graph.nodes[output]
    if eq.kind != "op" or eq.op.name != "matmul":
        return None
    (ia, ib), nodes = eq.inputs, graph.nodes
    A, B = values[ia], values[ib]
    seeds = {}
    if A.ndim == 2 and B.ndim == 1:              # (m,k) @ (k,) -> (m,)
        if nodes[ia].requires_grad:
            return None
        if nodes[ib].requires_grad:
            m = _exact_matrix(A, values[output], B)
            if m is None:
                return None
            seeds[ib] = m
    elif A.ndim == 1 and B.ndim == 2:            # (k,) @ (k,n) -> (n,)
        if nodes[ib].requires_grad:
            return None
        if nodes[ia].requires_grad:
            m = _exact_matrix(B.T, values[output], A)
            if m is None:
                return None
            seeds[ia] = m
    elif A.ndim == 2 and B.ndim == 2:            # (m,k) @ (k,n) -> (m,n)
        (m_, k), n = A.shape, B.shape[1]
        if nodes[ia].requires_grad:             # J[i,j,p,q] = δ_ip B[q,j]
            Bt = _exact_matrix(B.T)
            if Bt is None:
                return None
            Ja = np.zeros((m_, n, m_, k), dtype=graph.dtype)
            r = np.arange(m_)
            Ja[r, :, r, :] = Bt
            seeds[ia] = Ja
        if nodes[ib].requires_grad:             # J[i,j,p,q] = A[i,p] δ_jq
            Am = _exact_matrix(A)
            if Am is None:
                return None
            Jb = np.zeros((m_, n, k, n), dtype=graph.dtype)
            c = np.arange(n)
            Jb[:, c, :, c] = Am
            seeds[ib] = Jb
    else:
        return None
    return seeds


def seeded_backward(graph, values, output: int, batch: tuple, seeds: dict) -> dict:
    """The leaves' cotangents from identity_seeds' `seeds`, under the caller's error state.
    A seed on a vector whose rules below are all pointwise (W @ tanh(a): tanh's) goes as
    wide rows: k rows of the batch side by side in one row of WIDE or more elements, each
    vector those rules read repeated k times, so that numpy's loops run over k*m elements at
    a time instead of m. The same operations on the same numbers, element by element."""
    wide = _wide_rows(graph, values, output, seeds)
    if wide is None:
        return _backward(graph, values, None, output, batch, None, seeds, _steps(graph, output))
    node, k, read, steps = wide
    rows, m = seeds[node].shape
    tiled = list(values)
    for i in read:
        tiled[i] = values[i][None].repeat(k, 0).reshape(-1)
    ct = _backward(graph, tiled, None, output, (rows // k,), None,
                   {node: seeds[node].reshape(rows // k, k * m)}, steps)
    return {i: v.reshape(rows, m) for i, v in ct.items()}


# wide rows have at least this many elements: a (1000, 1000) batch times a vector of values
# runs 1000 of numpy's inner loops, whose calls cost about as much again as the arithmetic
# (figure 6b's W * (1 - tanh(a)**2) about 430 us; as 50 rows of 20,000 about 300 us)
WIDE = 1 << 14


def _wide_rows(graph, values, output: int, seeds: dict):
    """(seeded node, k rows to a wide row, ids of the vectors to repeat, the backward steps
    with wide rows) when the seeded backward can go as wide rows (_wide_way), its seed is
    C-contiguous (else regrouping it copies it) and so are the vectors read (numpy then takes
    the same loops on them repeated); else None."""
    if len(seeds) != 1:
        return None
    ((node, seed),) = seeds.items()
    wide = remembered(graph, ("wide rows", output, node, seed.shape, WIDE),
                      lambda: _wide_way(graph, output, node, seed.shape))
    if not wide or not seed.flags.c_contiguous or \
            not all(values[i].flags.c_contiguous for i in wide[2]):
        return None
    return wide


def _wide_way(graph, out: int, node: int, shape: tuple):
    """_wide_rows' answer for a seed of `shape` (rows, m) on `node`, found once per program:
    node is a 1-D op with only pointwise ops below it (pointwise_below), m < WIDE and a k in
    [WIDE / m, 4 WIDE / m] divides the rows; else False."""
    nodes = graph.nodes
    if len(shape) != 2 or len(nodes[node].shape) != 1 or nodes[node].kind != "op" or \
            not 0 < shape[1] < WIDE:
        return False
    rows, m = shape
    least = -(-WIDE // m)
    k = next((k for k in range(least, min(rows, 4 * least) + 1) if rows % k == 0), None)
    below = pointwise_below(graph, node)
    if below is None or k is None:
        return False
    read = set()
    for eq in below:
        for j, i in enumerate(eq.inputs):
            rule = eq.op.vjp(j)
            if rule is not None and nodes[i].requires_grad:
                read.update(r for r in read_ids(eq, rule) if nodes[r].shape == (m,))
    steps = copy.copy(_steps(graph, out))
    steps.steps = [(eq, [(i, rule, (k * m,) if s == (m,) else s) for i, rule, s in edges])
                   for eq, edges in steps.steps]
    return node, k, sorted(read), steps


def is_elementwise(graph, output: int) -> bool:
    """elementwise_path, remembered per compiled program."""
    return remembered(graph, ("elementwise", output), lambda: elementwise_path(graph, output))


_EYES = {}


def _eye_below(n, dtype):
    """A zero row above the n x n identity (read-only; copied for each use)."""
    key = (n, dtype)
    hit = _EYES.get(key)
    if hit is None:
        hit = np.zeros((n + 1, n), dtype=dtype)
        hit[1:] = np.eye(n, dtype=dtype)
        hit.flags.writeable = False
        if len(_EYES) < 64:
            _EYES[key] = hit
    return hit


def vjp_and_jacobian(graph, values, cotangent, output: int, leaf_ids, pull=None):
    """(backward(cotangent), jacobian) in one pass when the program is elementwise: the batch
    [v, ones, zeros] gives v's grads, the diagonal and the off-diagonal columns (small
    outputs: [v, identity] gives the rows themselves), each position computed exactly as the
    separate passes compute it. None otherwise. `pull(g, batch)` is the backward of the
    batch (default `backward`; a whole tape's replay)."""
    if not is_elementwise(graph, output):
        return None
    if pull is None:
        pull = lambda g, batch: backward(graph, values, g, output, batch=batch)  # noqa: E731
    oshape = graph.nodes[output].shape
    dtype = graph.dtype
    n = math.prod(oshape)
    if n < STRUCTURE_MIN:       # small: the batch [v, e_1, ..., e_n] gives J's rows as they are
        g = _eye_below(n, dtype).copy()
        g[0] = cotangent.reshape(-1)
        if len(oshape) != 1:
            g = g.reshape((n + 1,) + oshape)
        rows = pull(g, (n + 1,))
        grads, J, jshape = {}, {}, oshape + oshape
        for i, v in rows.items():
            grads[i] = v[0]
        for i in leaf_ids:
            v = rows.get(i)
            if v is None:
                J[i] = np.zeros(oshape + graph.nodes[i].shape, dtype=dtype)
            else:
                v = v[1:]
                J[i] = v if v.shape == jshape else v.reshape(jshape)
        return grads, J
    g = np.empty((3,) + oshape, dtype=dtype)
    g[0] = cotangent
    g[1] = 1
    g[2] = 0
    three = pull(g, (3,))
    grads = {i: v[0] for i, v in three.items()}
    return grads, _diagonal_jacobians(graph, three, 1, leaf_ids, oshape)


def _diagonal_jacobians(graph, rows, k: int, leaf_ids, oshape):
    """Dense Jacobians of an elementwise program from a batched backward whose rows k and
    k + 1 were seeded with ones and zeros (the diagonal, and what 0 * inf makes of the rest),
    all in one zeroed result block (a kept one: no fresh page to fault in)."""
    dtype = graph.dtype
    n = math.prod(oshape)
    reached = [i for i in dict.fromkeys(leaf_ids) if i in rows]
    block = result_block((len(reached), n, n), dtype, zeroed=True)
    out = {}
    for J, i in zip(block, reached):
        _expand_diagonal(J, rows[i][k], rows[i][k + 1])
        out[i] = J.reshape(oshape + oshape)
    for i in leaf_ids:
        if i not in out:
            out[i] = np.zeros(oshape + graph.nodes[i].shape, dtype=dtype)
    return out


def jacobian(graph, values, output: int, leaf_ids, structure: bool | None = None):
    """Every leaf's Jacobian. Layout output.shape + leaf.shape, as
    torch.autograd.functional.jacobian, rows the VJPs with the basis vectors. Dense: the
    identity as a batch of cotangents, one pass. Structured (default for larger outputs,
    the same numbers): diagonal for elementwise programs; the matrix itself for an
    identity batch through a matrix product at the output."""
    oshape = graph.nodes[output].shape
    n = math.prod(oshape)
    dtype = graph.dtype
    if structure is None:
        structure = n >= STRUCTURE_MIN
    grads = None
    if structure and n > 1:
        if is_elementwise(graph, output):
            g = np.zeros((2,) + oshape, dtype=dtype)
            g[0] = 1
            two = backward(graph, values, g, output, batch=(2,))
            return _diagonal_jacobians(graph, two, 0, leaf_ids, oshape)
        with np.errstate(all="ignore"):
            seeds = identity_seeds(graph, values, output)
            if seeds is not None:
                grads = seeded_backward(graph, values, output, oshape, seeds)
    if grads is None:
        eye = np.eye(n, dtype=dtype).reshape(oshape + oshape)
        grads = backward(graph, values, eye, output, batch=oshape)
    out = {}
    for i in leaf_ids:
        shape = oshape + graph.nodes[i].shape
        out[i] = grads[i] if i in grads else np.zeros(shape, dtype=dtype)
    return out


# ------------------------------------------------------------------ non-finite values
def all_finite(a) -> bool:
    """np.isfinite(a).all() of a number or an array, without a temporary as large as `a`: a
    few numbers as Python floats (no numpy call, no warnings); up to 4,096 by the largest
    magnitude (NaN if any is NaN: two calls, no warning to silence); more by their sum,
    finite only when every term is (NaN and inf propagate), an overflowing sum falling back
    to the exact test."""
    if type(a) is not np.ndarray:
        if type(a) is float:
            return math.isfinite(a)
        a = np.asarray(a)
    if a.dtype.kind != "f":
        return True
    if a.size <= 32:
        return all(map(math.isfinite, a.tolist() if a.ndim == 1 else a.ravel().tolist()))
    if a.size < 4096:
        return math.isfinite(np.maximum.reduce(np.abs(a), axis=None))
    with np.errstate(all="ignore"):
        if math.isfinite(float(np.add.reduce(a, axis=None))):
            return True
        return bool(np.isfinite(a).all())

