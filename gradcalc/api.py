"""The Python API that every front end calls: `compute(...)` and `run(...)` -> `Result`.

`run` is the pipeline of one calculation: settings (validated in settings.py) -> values
(values.py) -> the compiled graph (compile.py, or the programs.py cache) -> the engine ->
the checks -> a `Result` (result.py). It owns only the order of those steps and the
cotangent and Jacobian rules of SPEC sections 1 and 4; what it decides from the program and
the settings alone (`Decisions`) is kept per compiled program and option set, never from a
value. It imports nothing heavy beyond numpy, and sympy only when a symbolic check runs.
"""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

import numpy as np

from . import engine       # every run needs the engine (and so the op table)
from .errors import GradcalcError, Limits, fmt_bytes
from .programs import ProgramCache, compile_program
from .result import Result
from .settings import (API, CLI, Settings, kept, key_of, options_key, program_settings,
                       validate)

JACOBIAN_AUTO_MAX = 10_000
CHECK_KINDS = {"symbolic": ("symbolic",), "numeric": ("numeric",), "all": ("symbolic", "numeric"),
               "none": ()}

# compute()'s compiled programs, kept for the process (bounded): a repeated call rebinds the
# compiled program to its values instead of parsing and compiling it again, which was most
# of a call on small arrays. Calls with externs compile every time (their functions differ).
PROGRAMS = ProgramCache()
# compute()'s limits when none are given: one object, so the cache's key for it is made once
# (the cache compares its fields on every call, so a change to it is still seen)
_DEFAULT_LIMITS = Limits()


def compute(text: str, *, grad=None, wrt=None, of=None, repeat=None, check=None, rtol=None,
            atol=None, jacobian=None, dtype=None, seed=None, tangent=None, hessian=None,
            hvp=None, taylor=None, steps=None, limits: Limits | None = None,
            externs: dict | None = None, **vars) -> Result:
    """Evaluate `text` (an expression or a program), run backward with the cotangent `grad`,
    compute the Jacobian and the cross-checks. Variables are keyword arguments: numbers,
    nested lists, numpy arrays, or strings in VALUE syntax ("1,2,3", "linspace(-1, 1, 5)").
    `tangent` and `hvp` map leaf names to directions, `hessian` and `steps` are bools,
    `taylor` an order (SPEC 9); `externs` maps a name to a Python callable (arrays in, an
    array out) the text may call as an opaque function, differentiated by finite differences
    (SPEC 11). `Result.to_json()` is the object of SPEC section 4; a bad argument raises
    GradcalcError.

    >>> gradcalc.compute("3*a + 2*b*b + log(c)", a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8],
    ...                  grad=[0.1, 1, 1e-4]).grads["a"]
    array([3.e-01, 3.e+00, 3.e-04])
    """
    options = (wrt, of, repeat, check, rtol, atol, jacobian, dtype, seed, tangent, hessian,
               hvp, taylor, steps)
    limits = limits or _DEFAULT_LIMITS
    if externs:
        settings = validate(Settings(grad, *options), limits, API)
        with _gc_paused(len(text) >= GC_PAUSE_MIN):
            from .extern import Externs
            with Externs(functions=externs, limits=limits) as ex:
                return run(text, vars, settings, limits, externs=ex)
    s = _api_settings(text, grad, options, limits)
    if len(text) < GC_PAUSE_MIN:
        return calculate(text, vars, s, limits, cache=PROGRAMS)
    with _gc_paused(True):
        return calculate(text, vars, s, limits, cache=PROGRAMS)


# compute()'s options validated and resolved over the text's `#:` lines, per text, limits
# and options: a repeated call (the same options, other values) skips both steps
_RESOLVED: dict = {}


def _api_settings(text, grad, options: tuple, limits: Limits) -> Settings:
    """The settings of one compute() call, with its `grad` (kept per text, limits and
    options as `key_of` tells them apart, wrt=["a"] too)."""
    key = (text, PROGRAMS.limits_key(limits), key_of(options))
    return kept(_RESOLVED, key, grad=grad, most=ProgramCache.MAX_PROGRAMS, make=lambda:
                resolve_settings(text, validate(Settings(None, *options), limits, API),
                                 limits, PROGRAMS))


# a long program text makes one graph node after another, all alive to the end: the
# collector's passes over them find nothing and cost 33-46 % of a 10^5-operation call (issue
# 15), so compute() pauses it for such texts, as the CLI does for a whole one-shot run
GC_PAUSE_MIN = 10_000


@contextlib.contextmanager
def _gc_paused(pause: bool):
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        # what the pause made (the graph, its values: a million objects at 10^5 operations)
        # would all be young, and the first collection after it would walk every one of them
        # to find them alive (0.15-0.4 s): freeze and unfreeze move them to the oldest
        # generation without a walk, collectable as any old object. Not when the caller
        # froze objects of its own (a pre-fork server): unfreeze would thaw those too.
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


_NUMBER_TYPES = {float, int}


def value_of(v, label, dtype, limits, seed, stdin=None, allow_files=True):
    if type(v) is np.ndarray and v.dtype is dtype:
        return v          # (the commonest case of the checks below, first)
    if type(v) is list and 0 < len(v) <= 64 and len(v) <= limits.max_elements and \
            set(map(type, v)) <= _NUMBER_TYPES:
        try:              # a short flat list of numbers: from_json's own conversion
            return np.array(v, dtype=dtype)
        except (OverflowError, ValueError):
            pass          # from_json says what is wrong
    if type(v) is float:  # (one number: from_json's own conversion, --grad 1.0 of a call)
        return np.asarray(v, dtype=dtype)
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":
            raise GradcalcError("value", f"{label}: not a real numeric array")
        return v if type(v) is np.ndarray and v.dtype == dtype else np.asarray(v, dtype=dtype)
    # (imported here, not above: an import statement costs about a microsecond per call
    # even when the module is loaded, and arrays and short lists never need it)
    from .values import from_json, parse_value
    if isinstance(v, str):
        if not allow_files and v.startswith("@"):
            raise GradcalcError("usage", f"{label}: @files and @- are not allowed inside a JSON "
                                         "Lines request; send the values inline")
        return parse_value(v, label, dtype=dtype, limits=limits, seed=seed, stdin=stdin)
    if isinstance(v, (np.floating, np.integer)):
        v = float(v)
    if isinstance(v, tuple):
        v = list(v)
    return from_json(v, label, dtype=dtype, limits=limits, seed=seed, allow_files=allow_files)


def run(text: str, raw_vars: dict, settings: Settings, limits: Limits, *, stdin=None,
        allow_files=True, cache: ProgramCache | None = None, externs=None,
        defer_checks: bool = False) -> Result:
    """One calculation. `settings` were validated by the caller's front end (the `#:` lines
    of the text are validated here and given way to); `externs` (extern.Externs, entered)
    are the run's opaque functions. With `defer_checks` the cross-checks are left to
    `result.finish_checks()`, so a front end can show the answer first."""
    return calculate(text, raw_vars, resolve_settings(text, settings, limits, cache), limits,
                     stdin=stdin, allow_files=allow_files, cache=cache, externs=externs,
                     defer_checks=defer_checks)


def calculate(text: str, raw_vars: dict, s: Settings, limits: Limits, *, stdin=None,
              allow_files=True, cache: ProgramCache | None = None, externs=None,
              defer_checks: bool = False) -> Result:
    """`run` with its settings resolved already (over the text's `#:` lines, with the
    defaults filled in)."""
    dtype = np.dtype(s.dtype)
    read = lambda v, label: value_of(v, label, dtype, limits, s.seed, stdin,  # noqa: E731
                                     allow_files)
    bindings = _bindings(raw_vars, read)
    ops = None if externs is None else externs.ops
    graph = (compile_program(text, bindings, dtype, s, limits, ops) if cache is None
             else cache.graph(text, bindings, dtype, s, limits, ops))
    d = decisions(graph, s, limits)
    output, out_eq, wanted = d.output, graph.nodes[d.output], d.wanted
    if d.higher_only:
        from .higher import forward_only
        return _with_checks(forward_only(text, graph, output, d.out_name, s, read, limits),
                            {}, s, limits, None, defer_checks)
    jacobian_only = d.jacobian_only
    cot = np.zeros(out_eq.shape, dtype=dtype) if jacobian_only else _cotangent(out_eq, s, read)
    if d.refusal is not None:
        raise d.refusal
    # values may be dropped unless the numeric check reads them all (a reader of
    # Result.values gets them back: the symbolic check reads the leaves, constants and
    # output, which are kept, and intermediates only at a kink or a disagreement)
    answer = engine.differentiate(engine.Request(graph, output, cot, d.want_ids,
                                                 jacobian=d.want_jac,
                                                 drop_values=s.check in ("none", "symbolic")))
    once = {n: answer.grads.get(graph.leaves[n]) for n in wanted}
    no_path = [n for n in wanted if once[n] is None]
    result = Result(
        expression=text, output_name=d.out_name, output=answer.values[output],
        cotangent=None if jacobian_only else cot, cotangent_implied=s.grad is None,
        grads={} if jacobian_only else (
            dict(once) if s.repeat == 1 and not no_path     # (what the line below gives)
            else {n: accumulate(_or_zeros(g, graph, graph.leaves[n]), s.repeat)
                  for n, g in once.items()}),
        leaves={n: graph.nodes[i].value for n, i in graph.leaves.items()},
        no_path=no_path,
        jacobian=({n: answer.jacobians[graph.leaves[n]] for n in wanted} if d.want_jac
                  else ({} if not d.want_ids and d.note is None else None)),
        jacobian_note=d.note, checks={}, repeat=s.repeat, dtype=s.dtype, wrt=list(wanted),
        graph=graph, values=answer.values, output_id=output)   # nonfinite: on first read
    if externs is not None:
        result.finite_differences = externs.finite_difference(graph, output)
    if jacobian_only:
        result.grads_note = (f"not computed: no --grad, and {d.out_name or 'the output'} has "
                             f"{out_eq.size} elements; --jacobian gives J alone (a grad is vᵀ·J "
                             "for a v you choose)")
    if d.higher:
        from .higher import attach
        attach(result, s, read, limits)
    return _with_checks(result, once, s, limits, cot, defer_checks)


@dataclass(frozen=True)
class Decisions:
    """What a calculation does, decided from the compiled program and the settings alone
    (never from values): kept per program and option set (`graph.memo`), so a repeated
    call or JSON Lines request replays them instead of deciding again."""

    output: int
    out_name: str | None
    wanted: tuple          # leaves that require grad, in the program's order
    want_ids: tuple
    want_jac: bool
    note: str | None       # why the Jacobian is not computed
    jacobian_only: bool    # --jacobian without --grad for a non-scalar output: J alone
    higher_only: bool      # J·u or Taylor alone (SPEC 9)
    higher: bool           # anything of SPEC 9 asked for
    # the Jacobian's refusal (over the memory limit), raised after the cotangent is read
    # as before; a Decisions holding one is never kept
    refusal: GradcalcError | None = None


def decisions(graph, s: Settings, limits: Limits) -> Decisions:
    """The calculation's decisions, once per compiled program and option set; the checks
    that refuse (an unknown --wrt or --of, the memory limit) run each time until one
    succeeds, so an error is never remembered."""
    key = ("decisions", options_key(s))
    hit = graph.memo.get(key) if key[1] is not None else None
    if hit is None:
        hit = _decide(graph, s, limits)
        if key[1] is not None and hit.refusal is None:
            graph.memo[key] = hit
    return hit


def _decide(graph, s: Settings, limits: Limits) -> Decisions:
    output, out_name = _output(graph, s)
    est = _check_memory(graph, output, limits)
    out_eq = graph.nodes[output]
    wanted = tuple(n for n in graph.leaf_order if graph.nodes[graph.leaves[n]].requires_grad)
    want_ids = tuple(graph.leaves[n] for n in wanted)
    only = higher_only(out_eq, s)
    want_jac, note, refusal = False, None, None
    if not only:
        try:
            want_jac, note = _jacobian_wanted(graph, output, want_ids, s.jacobian, est, limits)
        except GradcalcError as err:
            refusal = err
    return Decisions(output, out_name, wanted, want_ids, want_jac, note,
                     jacobian_only=s.grad is None and out_eq.size != 1 and s.jacobian is True,
                     higher_only=only, higher=wants_higher(s), refusal=refusal)


def _with_checks(result: Result, once: dict, s: Settings, limits: Limits, cot,
                 defer_checks: bool) -> Result:
    """The result with its checks run, or left pending (`defer_checks`)."""
    result.check_kinds = CHECK_KINDS[s.check]
    if result.check_kinds:          # (--check none: nothing pending, nothing to run)
        result.pending_checks = lambda: _run_checks(result, once, s, limits, cot)
        if not defer_checks:
            result.finish_checks()
    return result


def wants_higher(s: Settings) -> bool:
    return any(v is not None and v is not False
               for v in (s.tangent, s.hessian, s.hvp, s.taylor, s.steps))


def higher_only(out_eq, s: Settings) -> bool:
    """J·u and Taylor need no cotangent (SPEC 9): asked alone of an output that implies none,
    only they are computed."""
    return (s.grad is None and out_eq.size != 1 and (s.tangent is not None or s.taylor)
            and not s.hessian and s.hvp is None)


def resolve_settings(text, settings: Settings, limits: Limits, cache) -> Settings:
    """The caller's settings over the text's own `#:` lines, defaults filled in (what
    `calculate` takes)."""
    if not isinstance(text, str):
        raise GradcalcError("usage", "the expression must be a string")
    if len(text) > limits.max_text:
        raise GradcalcError("limit", f"the text is {len(text):,} characters, over the limit of "
                                     f"{limits.max_text:,} (--max-text)")
    prog = (validate(program_settings(text), limits, CLI) if cache is None
            else cache.settings(text, limits))
    return settings.resolved_over(prog)


def _bindings(raw_vars: dict, read) -> dict:
    bindings = {}
    for name, v in raw_vars.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise GradcalcError("usage", f"{name!r} is not a variable name")
        bindings[name] = read(v, name)
    return bindings


def _output(graph, s: Settings) -> tuple[int, str | None]:
    """The node backward starts from (`--of`), after checking `--wrt` names leaves."""
    for w in s.wrt or ():
        if w not in graph.leaves:
            hint = (f"'{w}' is computed by the program, not a leaf" if w in graph.names
                    else f"no leaf is named '{w}'")
            raise GradcalcError("usage", f"--wrt: {hint} (leaves: "
                                         f"{', '.join(graph.leaf_order) or 'none'})")
    if s.of is None:
        return graph.output, graph.output_name
    if s.of not in graph.names:
        raise GradcalcError("usage", f"--of: the program binds no name '{s.of}' (names: "
                                     f"{', '.join(graph.names) or 'none'})")
    return graph.names[s.of], s.of


def _check_memory(graph, output: int, limits: Limits) -> int:
    """Bytes of values and grads, refused before allocating: every value kept, one
    cotangent per node that requires grad, and a rule's temporaries (twice the largest)."""
    total, needing = engine.elements(graph, output)
    largest = engine.largest(graph, output)   # per compiled program, as elements()
    est = (total + needing + 2 * largest) * graph.dtype.itemsize
    if est > limits.max_memory:
        raise GradcalcError("limit", f"the calculation needs about {fmt_bytes(est)}, over the "
                                     f"memory limit of {fmt_bytes(limits.max_memory)} (--max-memory)")
    return est


def _cotangent(out_eq, s: Settings, read) -> np.ndarray:
    """The cotangent of SPEC section 1: given, one number broadcast, or implied for a
    one-element output as PyTorch implies it (numel() == 1)."""
    shape = out_eq.shape
    if s.grad is None:
        if out_eq.size != 1:
            if len(shape) == 1:
                example = ",".join(["1"] * min(out_eq.size, 4)) + (",..." if out_eq.size > 4 else "")
            else:
                example = "'ones(" + ", ".join(map(str, shape)) + ")'"
            raise GradcalcError(
                "usage", f"the output has shape {shape}, so a gradient cannot be implied: "
                         "grad can be implicitly created only for scalar outputs, as in torch "
                         "(backward computes v^T J, one weight per output element). "
                         f"Pass --grad with shape {shape}, e.g. --grad {example} "
                         "or --grad 1 for all ones")
        return np.ones(shape, dtype=np.dtype(s.dtype))
    cot = read(s.grad, "--grad")
    if cot.shape == shape:
        return cot
    if cot.shape == ():     # (np.full: broadcast_to's Python costs more at any size)
        return np.full(shape, cot, dtype=cot.dtype)
    raise GradcalcError("shape", f"--grad has shape {cot.shape} but the output has shape "
                                 f"{shape}; pass one number or an array of shape {shape}")


def _jacobian_wanted(graph, output, want_ids, asked, est, limits) -> tuple[bool, str | None]:
    """Whether the Jacobian is computed (SPEC section 4), and the note when it is not."""
    if asked is False:
        return False, "not computed: --no-jacobian"
    if not want_ids:
        return False, None
    entries = engine.jacobian_entries(graph, output, want_ids)
    if asked is None and entries > JACOBIAN_AUTO_MAX:
        return False, (f"not computed: {entries:,} entries is more than "
                       f"{JACOBIAN_AUTO_MAX:,}; pass --jacobian to compute it anyway")
    mem = engine.jacobian_memory(graph, output)
    if est + mem > limits.max_memory:
        if asked:
            raise GradcalcError("limit", f"the Jacobian needs about {fmt_bytes(mem)}, over the "
                                         f"memory limit of {fmt_bytes(limits.max_memory)} "
                                         "(--max-memory)")
        return False, f"not computed: it would need about {fmt_bytes(mem)} (--max-memory)"
    return True, None


def _or_zeros(g, graph, i):
    return np.zeros(graph.nodes[i].shape, dtype=graph.dtype) if g is None else g


def _run_checks(result: Result, once: dict, s: Settings, limits: Limits, cot) -> dict:
    """The cross-checks' reports, by kind (computed, not yet stored in the result)."""
    kinds = CHECK_KINDS[s.check]
    reports = {}
    if kinds:
        from . import checks
        higher = None
        if wants_higher(s):                 # (second order's modules: only when asked)
            from .higher import checked
            higher = checked(result)
        context = checks.Context(
            graph=result.graph, values=result.values, output_id=result.output_id,
            cotangent=cot, wrt=tuple(result.wrt), grads=once,
            jacobian=result.jacobian, dtype=s.dtype, rtol=s.rtol, atol=s.atol, limits=limits,
            higher=higher)
        for kind in kinds:
            reports[kind] = checks.run(kind, context)
    return reports


def accumulate(g, repeat: int):
    """PyTorch adds each backward's grad into .grad in the working dtype; do the same."""
    if repeat == 1:
        return g
    if g.size * repeat <= 10**7:
        acc = g.copy()
        for _ in range(repeat - 1):
            acc += g
        return acc
    return g * g.dtype.type(repeat)


def curve(result: Result) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(leaf name, x, y, dy/dx) for `--plot`: the output and its derivative over a 1-D grid
    leaf, when the program is elementwise in it (y[i] depends on x[i] alone, so dy/dx is
    the Jacobian's diagonal, one backward with v = 1). Otherwise a usage error that says
    what --plot needs."""
    graph, out = result.graph, result.output_id
    grids = [n for n in result.wrt if np.ndim(result.leaves[n]) == 1
             and np.size(result.leaves[n]) >= 2]
    others = [n for n in result.wrt if n not in grids]
    oshape = graph.nodes[out].shape
    if len(grids) != 1 or any(np.size(result.leaves[n]) != 1 for n in others) or \
            oshape != np.shape(result.leaves[grids[0]]):
        raise GradcalcError("usage", "--plot draws y and dy/dx over one 1-D grid leaf (e.g. "
                                     "x='linspace(-3,3,200)') with an output of the same "
                                     "shape; bind the other leaves to single numbers")
    name = grids[0]
    leaf = graph.leaves[name]
    ancestors = {out}
    for eq in reversed(graph.nodes[: out + 1]):
        if eq.id in ancestors and eq.kind == "op":
            if not eq.op.pointwise:
                raise GradcalcError("usage", f"--plot needs an elementwise expression of "
                                             f"{name}; {eq.op.name}() mixes its elements")
            ancestors.update(eq.inputs)
    ones = np.ones(oshape, dtype=graph.dtype)
    answer = engine.differentiate(engine.Request(graph, out, ones, (leaf,)))
    dydx = answer.grads.get(leaf, np.zeros(oshape, dtype=graph.dtype))
    return name, np.asarray(result.leaves[name]), np.asarray(result.output), np.asarray(dydx)
