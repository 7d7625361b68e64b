"""The Python API that every front end calls: `compute(...)` and `run(...)` -> `Result`.

`run` is the pipeline of one calculation: settings (validated in settings.py) -> values
(values.py) -> the compiled graph (compile.py, or the programs.py cache) -> the engine ->
the checks -> a `Result` (result.py). It owns only the order of those steps and the
cotangent and Jacobian rules of SPEC sections 1 and 4; it imports nothing heavy beyond
numpy, and sympy only when a symbolic check runs.
"""
from __future__ import annotations

import numpy as np

from . import autograd     # every run needs the engine (and so the op table)
from .errors import GradcalcError, Limits, fmt_bytes
from .programs import ProgramCache, compile_program
from .result import Result
from .settings import API, CLI, Settings, program_settings, resolved, validate

JACOBIAN_AUTO_MAX = 10_000


def compute(text: str, *, grad=None, wrt=None, of=None, repeat=None, check=None, rtol=None,
            atol=None, jacobian=None, dtype=None, seed=None, limits: Limits | None = None,
            **vars) -> Result:
    """Evaluate `text` (an expression or a program), run backward and the checks.

    Variables are keyword arguments: numbers, nested lists, numpy arrays, or strings in
    VALUE syntax (`"1,2,3"`, `"linspace(-1, 1, 5)"`).
    """
    limits = limits or Limits()
    settings = validate(Settings(grad, wrt, of, repeat, check, rtol, atol, jacobian, dtype,
                                 seed), limits, API)
    return run(text, vars, settings, limits)


_NUMBER_TYPES = {float, int}


def value_of(v, label, dtype, limits, seed, stdin=None, allow_files=True):
    if type(v) is list and 0 < len(v) <= 64 and len(v) <= limits.max_elements and \
            set(map(type, v)) <= _NUMBER_TYPES:
        try:              # a short flat list of numbers: from_json's own conversion
            return np.array(v, dtype=dtype)
        except (OverflowError, ValueError):
            pass          # from_json says what is wrong
    from .values import from_json, parse_value
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":
            raise GradcalcError("value", f"{label}: not a real numeric array")
        return np.asarray(v, dtype=dtype)
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
        allow_files=True, cache: ProgramCache | None = None) -> Result:
    """One calculation. `settings` were validated by the caller's front end (the `#:` lines
    of the text are validated here and given way to)."""
    if not isinstance(text, str):
        raise GradcalcError("usage", "the expression must be a string")
    if len(text) > limits.max_text:
        raise GradcalcError("limit", f"the text is {len(text):,} characters, over the limit of "
                                     f"{limits.max_text:,} (--max-text)")
    prog = validate(program_settings(text) if cache is None else cache.settings(text),
                    limits, CLI)
    s = resolved(settings.merged_over(prog))
    dtype = np.dtype(s.dtype)
    bindings = {}
    for name, v in raw_vars.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise GradcalcError("usage", f"{name!r} is not a variable name")
        bindings[name] = value_of(v, name, dtype, limits, s.seed, stdin, allow_files)
    if cache is None:
        graph = compile_program(text, bindings, dtype, s, limits)
    else:
        graph = cache.graph(text, bindings, dtype, s, limits)
    if s.wrt is not None:
        for w in s.wrt:
            if w not in graph.leaves:
                hint = (f"'{w}' is computed by the program, not a leaf" if w in graph.names
                        else f"no leaf is named '{w}'")
                raise GradcalcError("usage", f"--wrt: {hint} (leaves: "
                                             f"{', '.join(graph.leaf_order) or 'none'})")
    output = graph.output
    out_name = graph.output_name
    if s.of is not None:
        if s.of not in graph.names:
            raise GradcalcError("usage", f"--of: the program binds no name '{s.of}' (names: "
                                         f"{', '.join(graph.names) or 'none'})")
        output, out_name = graph.names[s.of], s.of
    out_eq = graph.nodes[output]

    # memory of values and grads, before allocating them: every value kept, one cotangent
    # per node that requires grad, and a rule's temporaries (twice the largest node)
    total, needing = autograd.elements(graph, output)
    largest = max(n.size for n in graph.nodes[: output + 1])
    est = (total + needing + 2 * largest) * dtype.itemsize
    if est > limits.max_memory:
        raise GradcalcError("limit", f"the calculation needs about {fmt_bytes(est)}, over the "
                                     f"memory limit of {fmt_bytes(limits.max_memory)} (--max-memory)")

    # lean: drop intermediates no rule reads (large arrays, nothing after backward reads
    # them; a reader of Result.values gets them back, see autograd.Values)
    lean = s.check == "none" and autograd.lean_worthwhile(graph, output)
    values = autograd.forward(graph, upto=output, lean=lean)
    out_val = values[output]

    # the cotangent (SPEC section 1)
    implied = s.grad is None
    if implied:
        if out_eq.size != 1:      # PyTorch implies a gradient only when numel() == 1
            shape = out_eq.shape
            if len(shape) == 1:
                example = ",".join(["1"] * min(out_eq.size, 4)) + (",..." if out_eq.size > 4 else "")
            else:
                example = "'ones(" + ", ".join(map(str, shape)) + ")'"
            raise GradcalcError(
                "usage", f"the output has shape {shape}, so a gradient cannot be implied: "
                         "backward needs one weight per output element (it computes v^T J). "
                         f"Pass --grad with shape {shape}, e.g. --grad {example} "
                         "or --grad 1 for all ones")
        cot = np.ones(out_eq.shape, dtype=dtype)
    else:
        cot = value_of(s.grad, "--grad", dtype, limits, s.seed, stdin, allow_files)
        if cot.shape != out_eq.shape:
            if cot.shape == ():
                cot = np.broadcast_to(cot, out_eq.shape).copy()
            else:
                raise GradcalcError("shape", f"--grad has shape {cot.shape} but the output has "
                                             f"shape {out_eq.shape}; pass one number or an array "
                                             f"of shape {out_eq.shape}")

    leaf_ids = {name: i for name, i in graph.leaves.items()}
    wanted = [name for name in graph.leaf_order if graph.nodes[leaf_ids[name]].requires_grad]

    # whether the Jacobian is computed (SPEC section 4), decided before backward so that a
    # backward with nothing after it may free values as it goes
    jac, note, want_jac = None, None, False
    want_ids = [leaf_ids[n] for n in wanted]
    entries = autograd.jacobian_entries(graph, output, want_ids)
    mem = autograd.jacobian_memory(graph, output)
    if s.jacobian is False:
        note = "not computed: --no-jacobian"
    elif not want_ids:
        jac = {}
    elif s.jacobian is None and entries > JACOBIAN_AUTO_MAX:
        note = (f"not computed: {entries:,} entries is more than {JACOBIAN_AUTO_MAX:,}; "
                "pass --jacobian to compute it anyway")
    elif est + mem > limits.max_memory:
        if s.jacobian:
            raise GradcalcError("limit", f"the Jacobian needs about {fmt_bytes(mem)}, over the "
                                         f"memory limit of {fmt_bytes(limits.max_memory)} "
                                         "(--max-memory)")
        note = f"not computed: it would need about {fmt_bytes(mem)} (--max-memory)"
    else:
        want_jac = True

    # an elementwise program's grads and Jacobian come from one batched pass
    both = autograd.vjp_and_jacobian(graph, values, cot, output, want_ids) if want_jac \
        else None
    if both is None:
        grads_once = autograd.backward(graph, values, cot, output, free=lean and not want_jac)
    else:
        grads_once, J = both
    grads = {}
    for name in wanted:
        i = leaf_ids[name]
        g = grads_once.get(i)
        if g is None:
            g = np.zeros(graph.nodes[i].shape, dtype=dtype)
        grads[name] = accumulate(g, s.repeat)
    no_path = [n for n in wanted if leaf_ids[n] not in grads_once]

    if want_jac:
        if both is None:
            J = autograd.jacobian(graph, values, output, want_ids)
        jac = {n: J[leaf_ids[n]] for n in wanted}

    if lean:
        values = autograd.Values(values, graph, output)

    result = Result(
        expression=text, output_name=out_name, output=out_val, cotangent=cot,
        cotangent_implied=implied, grads=grads,
        leaves={n: graph.nodes[i].value for n, i in leaf_ids.items()}, no_path=no_path,
        jacobian=jac, jacobian_note=note, checks={}, repeat=s.repeat, dtype=s.dtype,
        wrt=wanted, graph=graph, values=values, output_id=output)   # nonfinite: on first read

    kinds = {"symbolic": ["symbolic"], "numeric": ["numeric"], "all": ["symbolic", "numeric"],
             "none": []}[s.check]
    if kinds:
        from . import checks
        once = {n: grads_once.get(leaf_ids[n]) for n in wanted}
        for kind in kinds:
            result.checks[kind] = checks.run(kind, result, once, rtol=s.rtol, atol=s.atol,
                                             limits=limits)
    return result


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
