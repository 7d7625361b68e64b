"""Symbolic cross-check: sympy differentiates the program's forward formulas and the
derivatives, evaluated at the inputs, are compared with autograd's grads and Jacobian.

It owns the translation of a graph into sympy (from the op table's `sympy` forward forms,
never from its VJP rules; a chain of sums in one `Add` call, and a form nested deeper than
CUT_DEPTH as a symbol of its own, so that the cost grows linearly with the program), the
elementwise path (one scalar symbol per leaf, one derivative per leaf, evaluated over every
element at once by evaluator.py; through chain.py when the program is cut; in the usual
case, nothing at a kink and every value finite, by the derivatives' tapes block by block,
the Evaluator's way taken the moment anything is not usual) and the time budget; programs
whose elements mix go to mixed.py. Symbols are internal Dummy symbols; user
text is never handed to sympy (none of its string parsers, its S converter or lambdify): leaf
names only appear in the printed formulas, as Symbols built from validated identifiers.
sympy is imported here, in the worker thread, only when a symbolic check runs.

The budget (`limits.symbolic_timeout`, default 10 s) counts the check's own CPU time: the
worker thread's `time.thread_time()`, started once sympy is imported, so neither the import
nor the load on the machine changes the verdict. The check is cooperative: every long loop
calls `Session.tick()`, and only a tick ends it; nothing is ever thrown into the thread.
Before a tree is handed to one of sympy's own walks (diff, free_symbols), `Session.afford`
ticks with that walk's least cost counted ahead (its tree size, shared subtrees counted each
time, at SYMPY_SECONDS_PER_NODE), so a derivation that cannot fit ends at that tick. Should
one sympy call still run on past the budget and a grace period without reaching a tick, the
caller stops waiting and reports the check skipped; the thread ends at its next tick. The
thread is kept for the next check; a check whose every derivative is already in the
program's memo (JSON Lines: one program, new values) runs in the caller's thread, with the
same ticks, since sympy has nothing left to do there but mpmath's refinement of a point.
The first check of a process reads a derivation an earlier process kept (stored.py) before
it imports sympy, and keeps the one it derives.
"""
from __future__ import annotations

import collections
import functools
import math
import os
import sys
import threading
import time

import numpy as np

from .chain import Chain, Terms
from .context import Context
from .evaluator import (OVERFLOW, Evaluator, Tape, Unsupported, evaluate_array, formula,
                        postorder)
from .verdict import SMALL, Partials, Verdict, reserve

DEFAULT_TIMEOUT = 10.0          # seconds of CPU (limits.symbolic_timeout, --symbolic-timeout)
GRACE = 0.5                     # seconds of CPU past the budget before the caller stops
                                # waiting for a tick (plus a tenth of the budget)
SMALL_ELEMENTS = 4096           # leaf elements a check with every derivative at hand runs
                                # in the caller's thread
IDLE = 1.0                      # seconds an idle worker thread waits for the next check
POLL = 0.05                     # seconds between the caller's looks at the worker's clock
# sympy's walks (free_symbols, diff) visit the tree, not the shared graph: measured at 0.4 us
# (free_symbols) and 5-800 us (diff) per tree node on the 2-core machine; 1 us is a lower
# bound for a diff, so a tree this costly is known not to fit before sympy starts on it
SYMPY_SECONDS_PER_NODE = 1e-6
# sympy's diff recurses through a form, and its cost grows faster than the form's depth
# (a 64-deep chain of sin and * takes 0.9 s, a 300-deep one exceeds Python's recursion
# limit): a node nested deeper than this stands as a symbol of its own, and the
# derivatives of the pieces are composed by the chain rule (chain.py). Measured on a
# 1,000-op chain: 2.0 s of CPU at 8, 2.4 s at 16, 2.9 s at 32; 40 lines of
# y = sin(y)*y + y (a tree doubling at each line) 1.1 s at 16, beyond 10 s at 32
CUT_DEPTH = 16
# False: every leaf's derivative is evaluated and compared the Evaluator's way, never by its
# tape (tests compare the two)
TAPES = True

NOT_SMOOTH = "sympy's derivative is undefined or one-sided here"


class OutOfTime(BaseException):
    """Raised by a tick once the budget is spent (BaseException: sympy's own `except
    Exception` blocks must not swallow it); caught where the check began."""


class Budget:
    """The check's own time: the worker thread's CPU time since sympy was ready. The worker
    reads it at each tick (`time.thread_time()`); the caller reads the same thread's CPU
    clock from outside to notice a worker stuck in one sympy call."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = None            # thread_time() when sympy was ready
        self.clock = None            # the worker's CPU clock, as the caller reads it
        self.clock_start = None
        self.stopped = False         # the caller stopped waiting

    def begin(self):
        """Start counting, in the worker thread, once sympy is imported."""
        self.start = time.thread_time()
        if hasattr(time, "pthread_getcpuclockid"):
            self.clock = time.pthread_getcpuclockid(threading.get_ident())
            # the same clock (this thread's CPU time), without the slow read by its id
            self.clock_start = self.start
        else:                        # no per-thread clock readable from outside: wall time
            self.clock_start = time.monotonic()
        self.spent, self.read_at = 0.0, time.perf_counter()

    def tick(self, ahead=0.0):
        """End the check (OutOfTime) if the budget is spent, or would be after `ahead`
        more seconds, or the caller stopped waiting. The thread's CPU clock costs a system
        call (8 us here, as much as a small sympy step): it is read only when the wall
        time since it was last read (a bound of the CPU time spent since) could have
        brought the check to its budget: the verdict is the same as reading it each time."""
        if self.stopped:
            raise OutOfTime()
        wall = time.perf_counter()
        if self.spent + (wall - self.read_at) + ahead <= self.seconds:
            return
        self.spent, self.read_at = time.thread_time() - self.start, wall
        if self.spent + ahead > self.seconds:
            raise OutOfTime()

    def overrun(self):
        """True, for the caller, once the worker has spent the budget and a grace period
        without reaching a tick."""
        if self.start is None:       # still importing sympy: not counted
            return False
        try:
            now = time.monotonic() if self.clock is None else time.clock_gettime(self.clock)
        except OSError:              # the thread just ended: join() will see it
            return False
        return now - self.clock_start > self.seconds * 1.1 + GRACE


class Session:
    """What the check's code is handed: sympy (`sp`), sympy with unevaluated Max/Min for
    the per-element path (`fast`), and `tick()`, the budget's checkpoint."""

    def __init__(self, sp, budget):
        self.sp, self.budget = sp, budget
        self.fast = _unevaluated_sp(sp)
        self.sizes: dict = {}        # tree sizes of the expressions seen, shared subtrees once

    def tick(self):
        self.budget.tick()

    def afford(self, *exprs):
        """A tick before sympy walks `exprs`, counting that walk's least cost ahead."""
        self.budget.tick(sum(tree_size(e, self.sizes) for e in exprs) * SYMPY_SECONDS_PER_NODE)


def tree_size(expr, sizes):
    """Nodes of `expr`'s tree with shared subtrees counted each time they occur (what a
    sympy walk visits), in time linear in the shared graph; `sizes` memoises subtrees."""
    for e in postorder(expr, sizes):
        sizes[e] = 1 + sum(sizes[a] for a in e.args)
    return sizes[expr]


def check(context: Context):
    """The symbolic check's report (SPEC section 4), or {"passed": None, "skipped": why} when
    it cannot finish within its budget. The sympy work runs in a worker thread, so that the
    caller can stop waiting for a worker stuck in one sympy call (see the module's notes);
    the thread is kept for the next check while checks follow each other (JSON Lines)."""
    seconds = getattr(context.limits, "symbolic_timeout", None)
    budget = Budget(DEFAULT_TIMEOUT if seconds is None else float(seconds))
    if _derived_and_small(context):
        # nothing left for sympy but printing: numpy on a few elements, with the same
        # ticks, here rather than a thread's hand-over (JSON Lines: one program, many values)
        return run_here(context, budget)
    first = "sympy" not in sys.modules and _keepable(context)
    if first:               # a derivation kept by an earlier process: no sympy at all
        try:
            report = _from_store(context)
        except Exception:   # noqa: BLE001 - whatever went wrong, a fresh check decides
            report = None
        if report is not None:
            return report
    if math.prod(context.out_shape) * len(context.wrt) >= SMALL:
        reserve()           # the worker's comparisons in buffers from this thread's memory
    box: dict = {}
    done = threading.Event()
    _Worker.take().jobs.put((context, budget, box, done))
    try:
        while not done.wait(POLL):
            if budget.overrun():
                budget.stopped = True           # it ends at its next tick
                break
    except BaseException:                       # Ctrl-C: nobody waits for the report any more
        budget.stopped = True
        raise
    report = box.get("report") or _out_of_time(budget)
    if first and report.get("method") == "elementwise":
        derived = context.graph.memo.get(_key(context) + (False,))
        if derived is not None and not derived.cuts:
            import sympy

            from . import stored
            stored.save(context, sympy, derived)
    return report


def _keepable(context):
    """A check whose derivation a later process may read back (stored.py): elementwise,
    first order only."""
    return context.higher is None and context.cotangent is not None and context.elementwise


def _from_store(context):
    """The report from a kept derivation, as _elementwise makes it from a fresh one (the
    same values, fed to the same verdict), or None when none is kept or one of its values
    is not finite (a fresh check flags, refines and excuses there). stored.py (and the
    hashing and JSON it needs) is loaded only here and where a derivation is kept: a
    process whose first check finds sympy loaded already never reads the store."""
    from . import stored
    memo, key = context.graph.memo, ("stored",) + _key(context)
    kept = memo.get(key) or stored.load(context)
    if kept is None:
        return None
    memo[key] = kept            # JSON Lines: the next request of this program reads no file
    verdict = Verdict("symbolic", context, NOT_SMOOTH)
    oshape = context.out_shape
    at_site = _at_site(verdict, oshape)
    leaves = {name: context.leaf(name) for name in context.wrt}
    # the usual case, as the fresh check takes it (_elementwise): every leaf's tape block
    # by block; none is fed where an input or a value is not finite or an entry disagrees
    fed = ()
    if at_site is None and context.not_finite is None:
        items = []
        for name, (tape, _) in kept.items():
            values = stored.read(tape, context)
            if values is None:
                return None
            items.append((leaves[name], _partials(tape, values, oshape)))
        fed = {leaf.name for leaf in verdict.feed_usual(items, oshape)}
    derivatives = {}
    for name, leaf in leaves.items():
        if name not in kept:
            derivatives[name] = "0"
            verdict.no_path(leaf)
            continue
        derivatives[name] = kept[name][1]
        if name in fed:
            continue
        D = stored.evaluate(kept[name][0], context)
        if D is None:
            return None
        _feed(context, verdict, leaf, at_site, D, np.zeros(oshape, bool), D, D, None)
    return verdict.report(**_summary(context, derivatives))


def _derived_and_small(context):
    """Whether the check of `context` has every derivative in the program's memo already
    (an elementwise program without cuts, whose leaves of this wrt an earlier check took:
    _taken) and at most SMALL_ELEMENTS leaf elements: then it makes no sympy call that
    could run on."""
    if context.higher is not None or context.cotangent is None or "sympy" not in sys.modules:
        return False
    derived = context.graph.memo.get(_key(context) + (False,))
    return (derived is not None and not derived.cuts and context.wrt in derived.taken
            and context.leaves_total <= SMALL_ELEMENTS)


class _Jobs:
    """The worker's jobs, first in first out: put(job), and get(timeout), the next job or
    None after `timeout` seconds without one. queue.SimpleQueue's two calls, from a deque
    and a semaphore: its C module costs the first check of a process 0.3-0.6 ms to load
    (the queue module around it 0.7 ms)."""

    def __init__(self):
        self._jobs: collections.deque = collections.deque()
        self._ready = threading.Semaphore(0)

    def put(self, job):
        self._jobs.append(job)
        self._ready.release()

    def get(self, timeout):
        return self._jobs.popleft() if self._ready.acquire(timeout=timeout) else None


class _Worker:
    """A thread that runs checks one after another. An idle one waits IDLE seconds for the
    next check, then ends; a check takes the idle one, else starts a new one (the idle one
    may still be finishing a check its caller stopped waiting for)."""

    idle: list = []
    lock = threading.Lock()

    def __init__(self):
        self.jobs = _Jobs()
        threading.Thread(target=self._loop, name="gradcalc-symbolic", daemon=True).start()

    @classmethod
    def forget(cls):
        """In a forked child: the parent's threads do not exist here."""
        cls.idle, cls.lock = [], threading.Lock()

    @classmethod
    def take(cls):
        with cls.lock:
            return cls.idle.pop() if cls.idle else cls()

    def _loop(self):
        while True:
            job = self.jobs.get(timeout=IDLE)
            if job is None:
                with self.lock:
                    if self not in self.idle:
                        continue                # taken just now: its job is on the way
                    self.idle.remove(self)
                return
            context, budget, box, done = job
            box["report"] = run_here(context, budget)
            del job, context, box               # an idle thread holds no caller's array
            with self.lock:                     # idle before the caller wakes, so that
                self.idle.append(self)          # its next check finds this thread
            done.set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Worker.forget)


def run_here(context: Context, budget: Budget):
    """The check in this thread: sympy imported, the clock started, the report (or why it
    was skipped) returned; never raises."""
    try:
        import sympy as sp
        budget.begin()
        return _check(Session(sp, budget), context)
    except OutOfTime:
        return _out_of_time(budget)
    except Unsupported as exc:
        return _skipped(str(exc))
    except RecursionError:
        return _skipped("the expression is nested too deeply for sympy")
    except MemoryError:
        return _skipped("the symbolic check ran out of memory")
    except Exception as exc:    # a check that cannot run must not cost the user the grads
        return _skipped(f"the symbolic check failed ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); please report it")


def _skipped(reason):
    return {"passed": None, "skipped": reason}


def _out_of_time(budget):
    return _skipped(f"the symbolic check ran out of its time budget of {budget.seconds:g} s "
                    "(--symbolic-timeout)")


class _Unevaluated:
    """The sympy module as the per-element path hands it to the op forms: Max and Min are
    built unevaluated, since their constructor compares every pair of arguments through the
    assumptions system (milliseconds each, for thousands of entries). Their derivatives
    (Heaviside of the differences) and values are the same."""

    def __init__(self, sp):
        self._sp = sp
        self.Max = functools.partial(_unevaluated, sp.Max)
        self.Min = functools.partial(_unevaluated, sp.Min)

    def __getattr__(self, name):
        return getattr(self._sp, name)


@functools.lru_cache(maxsize=4)
def _unevaluated_sp(sp):
    """The _Unevaluated of `sp`, made once (a JSON Lines check makes a session per request)."""
    return _Unevaluated(sp)


def _unevaluated(cls, *args):
    """Max/Min without the pairwise comparisons, but with repeated arguments dropped: the
    derivative of an unevaluated Max(e, e, e) would be 3 * Heaviside(0) = 3/2 times e'."""
    args = list(dict.fromkeys(args))
    return args[0] if len(args) == 1 else cls(*args, evaluate=False)


# ------------------------------------------------------------------ the check
def _check(session, context):
    verdict = Verdict("symbolic", context, NOT_SMOOTH)
    extra = {}
    if context.cotangent is not None:       # None: only J·u or Taylor was asked for
        if context.elementwise:
            extra = _elementwise(session, context, verdict)
        else:
            from . import mixed             # (loaded by the first such program)
            extra = mixed.per_element(session, context, verdict)
    if context.higher is not None:
        extra["second_order"] = _second(session, context, verdict)
    return verdict.report(**extra)


def _second(session, context, verdict):
    """The second-order part (second.py): what it checked, and where it stopped and why
    (out of its time budget, or a form the evaluator does not know); what it compared
    before stopping stands."""
    from . import second                    # (loaded by the first second-order check)
    cov = second.Coverage(context)
    try:
        if context.elementwise:
            second.symbolic_elementwise(session, context, verdict,
                                        derivation(session, context, whole=True), cov)
        else:
            second.symbolic_mixed(session, context, verdict, cov)
    except OutOfTime:
        cov.stop(f"the symbolic check ran out of its time budget of "
                 f"{session.budget.seconds:g} s (--symbolic-timeout)")
    except Unsupported as exc:
        cov.stop(str(exc))
    except RecursionError:
        cov.stop("the expression is nested too deeply for sympy")
    return cov.report()


def _number(sp, v):
    v = float(v)
    if math.isnan(v):
        return sp.nan
    if math.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    if v.is_integer() and abs(v) < 2**53:
        return sp.Integer(int(v))
    return sp.Float(v)            # the exact double; printed short (full_prec=False)


# ------------------------------------------------------------------ elementwise path
def _elementwise(session, context, verdict):
    """One scalar symbol per leaf: one derivative per leaf, evaluated over all elements."""
    oshape, vals = context.out_shape, context.vals
    # the derivation depends on the program alone when every constant in it is one of the
    # program's own (not a value computed from the leaves, as detach(x) is): then it is
    # kept in the compiled program's memo, which JSON Lines shares between the requests of
    # one program, and only the leaves' values are new
    derived = derivation(session, context)
    env = dict(derived.const_env)
    for i, s in derived.leaf_sym.items():
        env[s] = np.asarray(vals[i], dtype=np.float64)
    not_finite = context.not_finite
    at_site = _at_site(verdict, oshape)
    leaves = {name: context.leaf(name) for name in context.wrt}
    taken, derivatives = _taken(session, context, derived)
    # the usual case (nothing at a kink, the output finite): each leaf by its derivative's
    # tape, block by block, unless a value on the way is not finite or an entry disagrees
    fed = ()
    if TAPES and at_site is None and not_finite is None and not derived.cuts:
        fed = {leaf.name for leaf in _fed_usual(
            session, verdict, derived, [(leaves[n], d) for n, d in taken.items()], env,
            oshape)}
    ev = chain = None
    for leaf in (leaves[n] for n in context.wrt if n not in fed):
        sym = derived.leaf_sym.get(leaf.eq.id)
        if sym is None:
            verdict.no_path(leaf)
            continue
        if ev is None:
            ev = Evaluator(session, env)
            # a program cut into pieces: their derivatives composed by the chain rule (no
            # formula)
            chain = Chain(session, ev, derived, derived.exprs[context.output_id], context,
                          Terms(session, derived.diffs)) if derived.cuts else None
        if chain is not None:
            D, flag, lo, hi, unverifiable = chain.partials(sym)
        else:
            D, flag, lo, hi, unverifiable = evaluate_array(session, ev, taken[leaf.name], env,
                                                            oshape, not_finite)
        _feed(context, verdict, leaf, at_site, D, flag, lo, hi, unverifiable)
        session.tick()
    return _summary(context, dict(derivatives))


def _taken(session, context, derived):
    """({leaf name: its derivative}, {leaf name: the derivative as printed}) of the leaves
    of `context.wrt`: "0" for a leaf without a path, None where the program is cut (its
    derivatives are composed, never formed). Taken once per derivation and wrt: JSON Lines
    asks again for each request of one program."""
    hit = derived.taken.get(context.wrt)
    if hit is not None:
        return hit
    graph = context.graph
    names = {i: n for n, i in graph.leaves.items()}
    out = derived.exprs[context.output_id]
    terms = Terms(session, derived.diffs)
    display = None
    taken, derivatives = {}, {}
    for name in context.wrt:
        i = graph.leaves[name]
        sym = derived.leaf_sym.get(i)
        if sym is None or derived.cuts:
            derivatives[name] = "0" if sym is None else None
            continue
        hit = derived.diffs.get(i)
        if hit is None:
            d = terms.diff(out, sym)
            if display is None:
                display = {s: session.sp.Symbol(names[j], real=True)
                           for j, s in derived.leaf_sym.items()}
            hit = derived.diffs[i] = (d, formula(session, d, display))
        taken[name], derivatives[name] = hit
    hit = derived.taken[context.wrt] = taken, derivatives
    return hit


def _at_site(verdict, oshape):
    """Where an op of the program sits at a kink (elementwise: each site's mask is per
    element), or None."""
    at_site = None
    for _, m, _, _ in verdict.sites:
        m = np.broadcast_to(m, oshape)
        at_site = m if at_site is None else (at_site | m)
    return at_site


def _feed(context, verdict, leaf, at_site, D, flag, lo, hi, unverifiable):
    """One leaf's derivative over every element, with its flags, to the verdict."""
    not_finite = context.not_finite
    if at_site is not None and (at_site & ~flag).any():
        # an op sits at a kink there, but sympy simplified it away (minimum(x,
        # maximum(relu(x), x)) is x): PyTorch's composed conventions are not sympy's
        new = at_site & ~flag
        flag = flag | new
        lo, hi = np.where(new, np.nan, lo), np.where(new, np.nan, hi)
    if not_finite is not None:       # the function itself is not finite there
        flag = flag | not_finite
        lo, hi = np.where(not_finite, np.nan, lo), np.where(not_finite, np.nan, hi)
    verdict.feed(Partials(leaf, D, flag, lo, hi, quiet=not_finite,
                          unverifiable=unverifiable, reason=OVERFLOW))


def _summary(context, derivatives):
    """What the elementwise path adds to the report."""
    n = context.leaves_total
    N = math.prod(context.out_shape)
    has_jac = context.jacobian is not None
    return {"derivatives": derivatives, "method": "elementwise",
            "elements_checked": n, "elements_total": n,
            "jacobian_entries_checked": N * n if has_jac else None,
            "jacobian_entries_total": N * n if has_jac else None}


def _fed_usual(session, verdict, derived, taken, env, oshape):
    """The leaves fed by the tapes of their derivatives (`taken`: (leaf, derivative);
    compiled once per derivation), all together, block by block where every value a tape
    reads has the output's shape or is a number (Verdict.feed_usual); the others (or all,
    where a value is not finite or an entry disagrees) need the Evaluator's way."""
    items = []
    for leaf, d in taken:
        tape = derived.tapes.get(leaf.eq.id)
        if tape is None:
            tape = derived.tapes[leaf.eq.id] = Tape.compile(session.sp, d, env, session.tick) or False
        if tape is not False:
            items.append((leaf, _partials(tape, [env[s] for s in tape.inputs], oshape,
                                          session.tick)))
    return verdict.feed_usual(items, oshape) if items else []


def _partials(tape, inputs, oshape, tick=None):
    """partials(lo, hi) of Verdict.feed_usual: the tape run on those elements of its
    `inputs` (values), or where an input is broadcast, on the whole inputs once (then read
    by blocks); `tick` before each block. The result's finiteness is left to the
    comparison (Verdict.feed_usual)."""
    if all(v.size == 1 or v.shape == oshape for v in inputs):
        flat = [v.reshape(()) if v.size == 1 else v.reshape(-1) for v in inputs]

        def partials(lo, hi):
            if tick is not None:
                tick()
            return tape.run([v if v.ndim == 0 else v[lo:hi] for v in flat], False)
        return partials
    whole = []

    def partials(lo, hi):
        if not whole:
            d = tape.run(inputs, False)
            whole.append(None if d is None else np.broadcast_to(d, oshape).reshape(-1))
        return None if whole[0] is None else whole[0][lo:hi]
    return partials


def derivation(session, context, whole=False) -> "Derivation":
    """The elementwise program in sympy, from the compiled program's memo when it depends
    on the program alone (see _elementwise). Forms nested deeper than CUT_DEPTH stand as
    symbols of their own (`cuts`), unless `whole` (the second order differentiates the
    output's whole form); a program without such forms has one derivation for both."""
    key = _key(context)
    memo = context.graph.memo
    derived = memo.get(key + (whole,))
    if derived is None and whole:
        derived = memo.get(key + (False,))
        derived = derived if derived is not None and not derived.cuts else None
    if derived is None:
        derived = derive_elementwise(session, context, None if whole else CUT_DEPTH)
        if derived.alone:
            memo[key + (whole,)] = derived
    return derived


def _key(context):
    return ("symbolic-elementwise", context.output_id, context.dtype, tuple(context.ids))


class Derivation:
    """An elementwise program in sympy: the leaves' symbols, every node's form (a sum that
    only feeds a sum has none: it is gathered into it), the values of the array constants'
    symbols, the derivatives taken so far (with their printing and their tapes; `taken`:
    the leaves' of each wrt asked, see _taken), and whether it all depends on the program
    alone (then the program's memo keeps it). `cuts` lists, in graph order, (symbol, form) of the nodes whose forms nest deeper than the cut
    depth: each is a symbol in the forms after it (chain.py composes their derivatives)."""

    __slots__ = ("leaf_sym", "exprs", "const_env", "diffs", "alone", "cuts", "tapes", "taken")

    def __init__(self, leaf_sym: dict, exprs: dict, const_env: dict, diffs: dict, alone: bool,
                 cuts: list):
        self.leaf_sym, self.exprs, self.const_env, self.diffs = leaf_sym, exprs, const_env, diffs
        self.alone, self.cuts = alone, cuts
        self.tapes: dict = {}       # leaf id -> its derivative's Tape, or False
        self.taken: dict = {}       # wrt -> _taken()


def derive_elementwise(session, context, cut=CUT_DEPTH) -> Derivation:
    """The program's nodes as sympy forms over one symbol per leaf (ticking per node). A
    chain of sums is built in one `Add` call (their op entries' `sympy_terms`), equal to
    the sum built one `+` at a time; a node whose form nests deeper than `cut` becomes a
    symbol (None: never)."""
    sp, graph, vals = session.sp, context.graph, context.vals
    names = {i: n for n, i in graph.leaves.items()}
    env, exprs, leaf_sym, cuts = {}, {}, {}, []
    depth: dict = {}                # nesting of each node's form; a symbol's is 0
    gathered = _gathered(sp, graph, context)
    terms: dict = {}                # a gathered sum's terms, for the sum it feeds
    alone = True

    def constant(i):
        nonlocal alone
        if graph.nodes[i].kind != "const":
            alone = False                       # a value of this request (detach(x))
        v = np.asarray(vals[i], dtype=np.float64)
        if v.size and (v.size == 1 or np.all(v == v.flat[0])):
            return _number(sp, v.flat[0])
        d = sp.Dummy(f"c{i}", real=True)          # an array constant: a symbol with its value
        env[d] = v
        return d

    for i in context.ids:
        eq = graph.nodes[i]
        if eq.kind == "leaf" and i in names:
            s = sp.Dummy(f"x{i}", real=True)
            exprs[i] = leaf_sym[i] = s
        elif eq.kind != "op":
            exprs[i] = constant(i)
        else:
            live = [eq.op.vjp(k) is not None for k in range(len(eq.inputs))]
            args = [constant(j) if not ok else exprs[j] if j in exprs else _Gathered(j)
                    for ok, j in zip(live, eq.inputs)]
            params = {k: _number(sp, v) if isinstance(v, float) else v
                      for k, v in eq.params.items()}       # softplus(beta=1): x, not 1.0*x
            d = 1 + max([depth.get(j, 0) for ok, j in zip(live, eq.inputs) if ok], default=0)
            if eq.op.sympy_terms is not None and (i in gathered or any(
                    isinstance(a, _Gathered) for a in args)):
                ts = list(eq.op.sympy_terms(sp, *args, **params))
                # a left-nested chain ((a + b) + c) + d extends its first term's list in
                # place: linear, where copying it at each + would be quadratic
                parts = terms.pop(ts.pop(0).id) if isinstance(ts[0], _Gathered) else []
                for t in ts:
                    parts.extend(terms.pop(t.id) if isinstance(t, _Gathered) else (t,))
                if i in gathered:
                    terms[i], depth[i] = parts, d - 1
                    session.tick()
                    continue
                form = sp.Add(*parts)
            else:
                form = eq.op.sympy(sp, *args, **params)
            if cut is not None and d > cut and i != context.output_id:
                u = sp.Dummy(f"u{i}", real=True)
                cuts.append((u, form))
                form, d = u, 0
            exprs[i], depth[i] = form, d
        session.tick()
    return Derivation(leaf_sym, exprs, env, {}, alone, cuts)


class _Gathered:
    """A sum gathered into the sum it feeds: a placeholder its terms replace."""

    def __init__(self, id):
        self.id = id


def _gathered(sp, graph, context):
    """Sums whose terms are gathered into the one sum that uses them (no other node reads
    them, and that sum passes them through as a term: x + y, not x - y)."""
    uses = {context.output_id: 1}
    readers = {}
    for i in context.ids:
        eq = graph.nodes[i]
        if eq.kind == "op":
            for k, j in enumerate(eq.inputs):
                uses[j] = uses.get(j, 0) + 1
                readers[j] = (eq, k)
    out = set()
    for j, (eq, k) in readers.items():
        src = graph.nodes[j]
        if (uses[j] == 1 and src.kind == "op" and src.op.sympy_terms is not None
                and eq.op.sympy_terms is not None and eq.op.vjp(k) is not None
                and _passes(sp, eq.op, k, len(eq.inputs))):
            out.add(j)
    return out


@functools.lru_cache(maxsize=None)
def _passes(sp, op, k, n):
    """Whether input k of a sum is one of its terms as it is (x + y: both; x - y: x)."""
    marks = [sp.Dummy() for _ in range(n)]
    return any(t is marks[k] for t in op.sympy_terms(sp, *marks))
