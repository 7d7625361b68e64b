"""The Python API that the CLI is a thin layer over: `compute(...)` -> `Result`.

It owns one calculation end to end: option defaults and `#:` lines, VALUE conversion, the
cotangent rules of SPEC section 1, repeat, --of/--wrt, the Jacobian decision and memory
estimate, the cross-checks, and the JSON object of SPEC section 4. It imports nothing heavy
beyond numpy; sympy only when a symbolic check runs.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field

import numpy as np

from . import autograd     # every run needs the engine (and so the op table)
from .errors import GradcalcError, Limits, escape_text

CHECKS = ("symbolic", "numeric", "all", "none")
DTYPES = ("float64", "float32")
JACOBIAN_AUTO_MAX = 10_000
# options that may appear in a program's `#:` lines (SPEC section 3)
PROGRAM_OPTIONS = {"--grad": "grad", "-g": "grad", "--wrt": "wrt", "--of": "of",
                   "--repeat": "repeat", "--check": "check", "--rtol": "rtol", "--atol": "atol",
                   "--dtype": "dtype", "--seed": "seed", "--jacobian": "jacobian",
                   "--no-jacobian": "jacobian"}


@dataclass
class Settings:
    """Everything that shapes one calculation. None means "not given"."""

    grad: object = None
    wrt: object = None
    of: str | None = None
    repeat: int | None = None
    check: str | None = None
    rtol: float | None = None
    atol: float | None = None
    jacobian: bool | None = None
    dtype: str | None = None
    seed: int | None = None

    def merged_over(self, base: "Settings") -> "Settings":
        merged = dict(base.__dict__)     # (JSON Lines merges twice per request: no getattr)
        merged.update((k, v) for k, v in self.__dict__.items() if v is not None)
        out = Settings.__new__(Settings)
        out.__dict__.update(merged)
        return out


def program_settings(text: str) -> Settings:
    """Options from a program's `#:` lines."""
    s = Settings()
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped.startswith("#:"):
            continue
        try:
            words = shlex.split(stripped[2:], comments=False)
        except ValueError as exc:
            raise GradcalcError("usage", f"line {lineno}: cannot read the #: options ({exc})")
        i = 0
        while i < len(words):
            word = words[i]
            key, _, inline = word.partition("=")
            if key not in PROGRAM_OPTIONS:
                raise GradcalcError("usage", f"line {lineno}: '{word}' is not allowed in a #: "
                                             "line (allowed: " + " ".join(
                                                 k for k in PROGRAM_OPTIONS if k.startswith("--"))
                                    + ")")
            name = PROGRAM_OPTIONS[key]
            if name == "jacobian":
                setattr(s, name, key == "--jacobian")
                i += 1
                continue
            if inline:
                val = inline
                i += 1
            else:
                if i + 1 >= len(words):
                    raise GradcalcError("usage", f"line {lineno}: {key} needs a value")
                val = words[i + 1]
                i += 2
            setattr(s, name, val)
    return s


def normalise(s: Settings, limits: Limits) -> Settings:
    """Validate and convert settings whose values may still be strings (from #: lines)."""
    out = Settings(**s.__dict__)
    for name in ("repeat", "rtol", "atol", "seed"):
        v = getattr(s, name)
        if isinstance(v, str) and not v.isascii():   # int()/float() would read "\uff11\uff10"
            raise GradcalcError("usage", f"--{name} takes an ASCII number, got "
                                         f"'{escape_text(v)}'")
    out.check = (s.check or "symbolic")
    if out.check not in CHECKS:
        raise GradcalcError("usage", f"--check must be one of {', '.join(CHECKS)}, got {s.check!r}")
    out.dtype = s.dtype or "float64"
    if out.dtype not in DTYPES:
        raise GradcalcError("usage", f"--dtype must be float64 or float32, got {s.dtype!r}")
    rep = 1 if s.repeat is None else s.repeat
    if isinstance(rep, str):
        try:
            rep = int(rep)
        except ValueError:
            raise GradcalcError("usage", f"--repeat takes a whole number, got {s.repeat!r}")
    if isinstance(rep, bool) or not isinstance(rep, int):
        raise GradcalcError("usage", f"--repeat takes a whole number, got {rep!r}")
    if rep < 1:
        raise GradcalcError("usage", f"--repeat must be at least 1, got {rep}")
    if rep > limits.max_repeat:
        raise GradcalcError("limit", f"--repeat {rep} is over the limit of {limits.max_repeat:,} "
                                     "(--max-repeat)")
    out.repeat = rep
    for name in ("rtol", "atol"):
        v = getattr(s, name)
        if v is not None:
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise GradcalcError("usage", f"--{name} takes a number, got {v!r}")
            if isinstance(getattr(s, name), bool) or not v >= 0:
                raise GradcalcError("usage", f"--{name} must be a number >= 0")
            setattr(out, name, v)
    if s.seed is not None:
        try:
            seed = int(s.seed)
            if isinstance(s.seed, bool) or seed < 0 or (isinstance(s.seed, float) and s.seed != seed):
                raise ValueError
        except (TypeError, ValueError):
            raise GradcalcError("usage", f"--seed takes a whole number >= 0, got {s.seed!r}")
        out.seed = seed
    if isinstance(s.wrt, str):
        out.wrt = [w.strip() for w in s.wrt.split(",") if w.strip()]
    elif s.wrt is not None:
        if not isinstance(s.wrt, (list, tuple)) or not all(isinstance(w, str) for w in s.wrt):
            raise GradcalcError("usage", "wrt must be a list of names")
        out.wrt = list(s.wrt)
    if s.of is not None and not isinstance(s.of, str):
        raise GradcalcError("usage", "of must be a name")
    if s.jacobian is not None and not isinstance(s.jacobian, bool):
        raise GradcalcError("usage", "jacobian must be true or false")
    return out


@dataclass
class Result:
    """One calculation, as plain data. `to_json()` is the object of SPEC section 4."""

    expression: str
    output_name: str | None
    output: np.ndarray
    cotangent: np.ndarray
    cotangent_implied: bool
    grads: dict                       # name -> array (accumulated over repeat)
    leaves: dict                      # name -> value of every named leaf
    no_path: list
    jacobian: dict | None
    jacobian_note: str | None
    checks: dict
    repeat: int
    dtype: str
    wrt: list
    graph: object = field(default=None, repr=False)
    values: object = field(default=None, repr=False)
    output_id: int = 0

    def __getattr__(self, name):
        # `nonfinite` (the first node whose value or gradient became non-finite, or None) is
        # found on first read: it scans every array, which a caller that never asks (an
        # in-process loop over large arrays) should not pay for
        if name != "nonfinite":
            raise AttributeError(name)
        d = self.__dict__
        if "graph" not in d:
            raise AttributeError(name)
        out = self.output
        if autograd.all_finite(out) and all(autograd.all_finite(g) for g in self.grads.values()):
            found = None
        else:
            found = describe_nonfinite(self.graph, self.values, self.output_id, self.cotangent,
                                       self.grads)
        d["nonfinite"] = found
        return found

    @property
    def passed(self) -> bool:
        return all(c.get("passed") is not False for c in self.checks.values())

    def to_json(self, trusting: bool = False) -> dict:
        """The object of SPEC section 4. `trusting` skips every finiteness scan: arrays
        become lists as they are and "nonfinite" is None unless already known. Only for a
        writer that refuses NaN and infinity (json with allow_nan=False) and then asks for
        the strict object instead: whenever it succeeds, the text is the strict one (finite
        output and grads are exactly the case nonfinite is None)."""
        plain = _tolist if trusting else to_plain
        obj = {
            "expression": self.expression,
            "output": {"name": self.output_name, "shape": list(self.output.shape),
                       "value": plain(self.output)},
            "cotangent": plain(self.cotangent),
            "grads": {k: plain(v) for k, v in self.grads.items()},
            "jacobian": None if self.jacobian is None else
            {k: plain(v) for k, v in self.jacobian.items()},
        }
        if self.jacobian_note:
            obj["jacobian_note"] = self.jacobian_note
        obj["checks"] = json_safe(self.checks)
        obj["repeat"] = self.repeat
        obj["dtype"] = self.dtype
        obj["no_path"] = list(self.no_path)
        obj["nonfinite"] = self.__dict__.get("nonfinite") if trusting else self.nonfinite
        return obj


def json_safe(obj):
    """A report (checks, notes) as strict JSON: non-finite floats as "NaN"/"Infinity"/
    "-Infinity" (an error of inf must not make the whole output invalid JSON), numpy
    scalars and arrays as plain numbers and lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if math.isfinite(f):
            return f
        return "NaN" if f != f else ("Infinity" if f > 0 else "-Infinity")
    return obj


def _tolist(arr):
    """to_plain without its finiteness test (see Result.to_json(trusting=True))."""
    a = np.asarray(arr)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return a.tolist()


def to_plain(arr):
    """An array as nested lists of floats, non-finite numbers as "NaN"/"Infinity"/"-Infinity"
    strings, so the JSON is strict RFC 8259."""
    a = np.asarray(arr)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if a.size <= 32:                      # small: test the Python floats, no numpy call
        plain = a.tolist()
        if a.ndim == 1:
            if all(map(math.isfinite, plain)):
                return plain
        elif a.ndim == 0:
            if math.isfinite(plain):
                return plain
        elif all(map(math.isfinite, a.ravel().tolist())):
            return plain
    elif np.isfinite(a).all():
        return a.tolist()
    obj = a.astype(object)
    obj[np.isnan(a)] = "NaN"
    obj[np.isposinf(a)] = "Infinity"
    obj[np.isneginf(a)] = "-Infinity"
    return obj.tolist()


_NUMBER_TYPES = {float, int}


def _value(v, label, dtype, limits, seed, stdin=None, allow_files=True):
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


def compute(text: str, *, grad=None, wrt=None, of=None, repeat=None, check=None, rtol=None,
            atol=None, jacobian=None, dtype=None, seed=None, limits: Limits | None = None,
            **vars) -> Result:
    """Evaluate `text` (an expression or a program), run backward and the checks.

    Variables are keyword arguments: numbers, nested lists, numpy arrays, or strings in
    VALUE syntax (`"1,2,3"`, `"linspace(-1, 1, 5)"`).
    """
    return run(text, vars, Settings(grad, wrt, of, repeat, check, rtol, atol, jacobian, dtype,
                                    seed), limits or Limits())


def compile_program(text: str, bindings: dict, dtype, s: Settings, limits: Limits):
    from .compile import Compiler
    from .parser import parse_program
    stmts = parse_program(text, limits.max_depth)
    try:
        return Compiler(text, bindings, dtype=dtype, wrt=s.wrt, seed=s.seed,
                        limits=limits).program(stmts)
    except GradcalcError as err:
        raise err.with_source(text)


class ProgramCache:
    """Compiled programs, for a stream of requests (JSON Lines): a program's graph depends
    on its text, dtype, wrt, seed, limits and the names and shapes of the bound variables,
    never on their values, so each distinct one is parsed and compiled once and its leaves
    are rebound to every later request's values. The rebound graph shares the compiled
    one's `autograd.memo`, where derived data (the engine's plan, the symbolic check's
    derivation) is kept. Programs that draw random numbers, and large ones, are compiled
    every time."""

    MAX_PROGRAMS = 256
    MAX_ELEMENTS = 1 << 16

    def __init__(self):
        self._settings = {}
        self._graphs = {}
        self._limits = (None, None, None)   # the Limits last seen, its fields, their key

    def settings(self, text: str) -> Settings:
        hit = self._settings.get(text)
        if hit is None:
            hit = program_settings(text)
            if len(self._settings) >= self.MAX_PROGRAMS:
                self._settings.clear()
            self._settings[text] = hit
        return hit

    def _limits_key(self, limits: Limits) -> tuple:
        lim, fields, key = self._limits
        if lim is not limits or fields != vars(limits):
            fields = dict(vars(limits))
            key = tuple(fields.items())
            self._limits = (limits, fields, key)
        return key

    def graph(self, text: str, bindings: dict, dtype, s: Settings, limits: Limits):
        key = (text, dtype.str, None if s.wrt is None else tuple(s.wrt), s.seed,
               self._limits_key(limits), *[(name, v.shape) for name, v in bindings.items()])
        hit = self._graphs.get(key)
        if hit is not None:
            template, bound = hit
            return rebind(template, bound, bindings)
        graph = compile_program(text, bindings, dtype, s, limits)
        if sum(n.size for n in graph.nodes) <= self.MAX_ELEMENTS and not graph.random:
            bound = [eq.id for eq in graph.nodes if eq.kind == "leaf" and eq.name in bindings
                     and eq.value is bindings[eq.name]]
            if len(self._graphs) >= self.MAX_PROGRAMS:
                self._graphs.clear()
            self._graphs[key] = (graph, bound)
        return graph


def rebind(template, bound, bindings):
    """A copy of a compiled graph whose leaves `bound` (node ids) hold new values. The
    template's memo must exist already (ProgramCache makes it) for the copy to share it."""
    nodes = list(template.nodes)
    for i in bound:
        old = nodes[i]
        new = type(old)(old.id, old.kind, old.op, old.inputs, old.params, old.shape, old.pos,
                        old.name, bindings[old.name])
        new.requires_grad, new.torch = old.requires_grad, old.torch
        nodes[i] = new
    graph = object.__new__(type(template))      # a shallow copy: shares memo, not nodes
    graph.__dict__.update(template.__dict__)
    graph.nodes = nodes
    return graph


def run(text: str, raw_vars: dict, settings: Settings, limits: Limits, *, stdin=None,
        allow_files=True, progress=None, cache: ProgramCache | None = None) -> Result:
    if not isinstance(text, str):
        raise GradcalcError("usage", "the expression must be a string")
    if len(text) > limits.max_text:
        raise GradcalcError("limit", f"the text is {len(text):,} characters, over the limit of "
                                     f"{limits.max_text:,} (--max-text)")
    prog = program_settings(text) if cache is None else cache.settings(text)
    s = normalise(settings.merged_over(prog), limits)
    dtype = np.dtype(s.dtype)
    bindings = {}
    for name, v in raw_vars.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise GradcalcError("usage", f"{name!r} is not a variable name")
        bindings[name] = _value(v, name, dtype, limits, s.seed, stdin, allow_files)
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
        from .compile import _fmt_bytes
        raise GradcalcError("limit", f"the calculation needs about {_fmt_bytes(est)}, over the "
                                     f"memory limit of {_fmt_bytes(limits.max_memory)} (--max-memory)")

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
        cot = _value(s.grad, "--grad", dtype, limits, s.seed, stdin, allow_files)
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
        from .compile import _fmt_bytes
        if s.jacobian:
            raise GradcalcError("limit", f"the Jacobian needs about {_fmt_bytes(mem)}, over the "
                                         f"memory limit of {_fmt_bytes(limits.max_memory)} "
                                         "(--max-memory)")
        note = f"not computed: it would need about {_fmt_bytes(mem)} (--max-memory)"
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
        context = checks.Context(
            graph=graph, values=values, output_id=output, cotangent=cot, wrt=tuple(wanted),
            grads={n: grads_once.get(leaf_ids[n]) for n in wanted}, jacobian=jac,
            dtype=s.dtype, rtol=s.rtol, atol=s.atol, limits=limits)
        for kind in kinds:
            result.checks[kind] = checks.run(kind, context)
    return result


# Bytes of JSON text and the Python lists behind it, per number written (json.dumps of
# tolist(): a float object, a list slot and up to ~24 characters).
JSON_BYTES_PER_NUMBER = 64


def check_json_size(result: "Result", limits: Limits):
    """Refuse, before building it, a JSON answer that would need more memory than the limit
    (writing 10^8 numbers as text takes several GiB, not the 0.8 GB of the array)."""
    n = result.output.size + np.size(result.cotangent) + sum(g.size for g in result.grads.values())
    if result.jacobian:
        n += sum(np.size(j) for j in result.jacobian.values())
    need = n * JSON_BYTES_PER_NUMBER
    if need > limits.max_memory:
        from .compile import _fmt_bytes
        raise GradcalcError("limit", f"the JSON answer holds {n:,} numbers and would need about "
                                     f"{_fmt_bytes(need)} to write, over the memory limit of "
                                     f"{_fmt_bytes(limits.max_memory)} (--max-memory); reduce "
                                     "it with --no-jacobian, --wrt or --of")


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


def _kind_of(arr) -> str:
    """The first non-finite kind in an array, as JSON writes it."""
    a = np.asarray(arr)
    if np.isnan(a).any():
        return "NaN"
    return "Infinity" if np.isposinf(a).any() else "-Infinity"


def _where(source: str, pos):
    """(info fields, " at line L, column C" or " at column C") of a position in the text."""
    if pos is None or source is None:
        return {}, ""
    before = source[:pos]
    line = before.count("\n") + 1
    col = pos - (before.rfind("\n") + 1) + 1
    at = f" at line {line}, column {col}" if "\n" in source else f" at column {col}"
    return {"position": pos, "line": line, "column": col}, at


def describe_nonfinite(graph, values, output, cot, grads):
    """Name the first graph node whose value or gradient became non-finite (PyTorch's anomaly
    mode): the first node, in evaluation order, that the output depends on and whose value is
    non-finite although its inputs are finite (a leaf, a literal such as 1e999 or inf, a
    constant folded from log(-1), or an op); failing that, the first backward rule that turned
    finite cotangents into non-finite ones. None when everything is finite."""
    import re
    bad_value = not np.isfinite(values[output]).all()
    bad_grad = any(not np.isfinite(g).all() for g in grads.values())
    if not (bad_value or bad_grad):
        return None
    source = graph.source
    if bad_value:
        folded = graph.folded

        def inputs(eq):          # a folded constant's inputs are the constants it came from
            return eq.inputs if eq.kind == "op" else folded.get(eq.id, ("", ()))[1]

        def value(i):
            v = values[i]
            return graph.nodes[i].value if v is None else v

        reach = {output}
        for eq in reversed(graph.nodes[: output + 1]):
            if eq.id in reach:
                reach.update(inputs(eq))
        culprit = None
        with np.errstate(all="ignore"):
            for eq in graph.nodes[: output + 1]:
                if eq.id not in reach or value(eq.id) is None:
                    continue
                if not np.isfinite(value(eq.id)).all() and all(
                        np.isfinite(value(i)).all() for i in inputs(eq)):
                    culprit = eq
                    break
        if culprit is None:
            return {"node": None, "in": "value", "message": "the output holds non-finite values"}
        eq = culprit
        kind = _kind_of(value(eq.id))
        where, at = _where(source, eq.pos)
        if eq.kind == "op" or eq.id in folded:
            name = eq.op.name if eq.kind == "op" else folded[eq.id][0]
            info = {"node": name, "op": name, "in": "value", **where}
            info["message"] = f"{name}() produced a non-finite value{at} ({kind})"
        elif eq.kind == "leaf":
            info = {"node": eq.name, "op": None, "in": "value", **where}
            info["message"] = f"the leaf {eq.name} holds a non-finite value ({kind})"
        else:
            m = re.compile(r"[A-Za-z_]\w*|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?").match(
                source or "", eq.pos or 0) if eq.pos is not None else None
            shown = f"the number {m.group()}" if m and m.group()[0] in "0123456789." else (
                f"the constant {m.group()}" if m else "a constant")
            info = {"node": "const", "op": None, "in": "value", **where}
            info["message"] = f"{shown}{at} is non-finite ({kind})"
        info["value"] = kind
        return info
    if not np.isfinite(cot).all():
        return {"node": None, "in": "gradient", "value": _kind_of(cot),
                "message": f"the cotangent v (--grad) holds non-finite values ({_kind_of(cot)})"}
    eq, v = _first_bad_rule(graph, values, cot, output)
    if eq is None:
        return {"node": None, "in": "gradient",
                "message": "a gradient overflowed when the contributions to it were added up"}
    kind = _kind_of(v)
    where, at = _where(source, eq.pos)
    info = {"node": eq.torch, "op": eq.op.name, "in": "gradient", **where, "value": kind}
    # PyTorch's anomaly mode says "Function 'SqrtBackward0' returned nan values"
    info["message"] = f"{eq.torch}{at} returned {'inf' if kind == 'Infinity' else kind} " \
                      f"(the gradient of {eq.op.name}())"
    return info


def _first_bad_rule(graph, values, cot, output):
    """Backward again, watching for the first rule that turns finite cotangents into
    non-finite ones: (its node, what it returned), or (None, None)."""
    from .autograd import sum_to
    nodes = graph.nodes
    ct = {output: cot}
    with np.errstate(all="ignore"):
        for eq in reversed(nodes[: output + 1]):
            if eq.kind != "op" or eq.id not in ct:
                continue
            g = ct.pop(eq.id)
            args = [values[i] for i in eq.inputs]
            for j, i in enumerate(eq.inputs):
                rule = eq.op.vjp(j)
                if not nodes[i].requires_grad or rule is None:
                    continue
                v = rule(g, values[eq.id], *args, **eq.params)
                if v is None:
                    continue
                v = sum_to(v, 0, (), nodes[i].shape)
                if not np.isfinite(v).all():
                    return eq, v
                ct[i] = v if i not in ct else ct[i] + v
    return None, None
