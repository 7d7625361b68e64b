"""The result of one calculation as plain data, and its JSON object (SPEC section 4).

`Result` holds the output, cotangent, grads, Jacobians and check reports; `to_json()` turns
them into strict RFC 8259 data (non-finite numbers as "NaN"/"Infinity"/"-Infinity").
The first non-finite node is diagnosed only when asked for. It computes no gradient and
imports nothing heavy beyond numpy.
"""
from __future__ import annotations

import math
from operator import attrgetter

import numpy as np

from .engine import describe_nonfinite
from .errors import GradcalcError, Limits, fmt_bytes


class Result:
    """One calculation, as plain data. `to_json()` is the object of SPEC section 4. (A plain
    class: a dataclass costs 0.3-1 ms to define, at the start of every process; a result is
    never compared or printed.)"""

    def __init__(self, expression: str, output_name: str | None, output: np.ndarray,
                 cotangent: np.ndarray, cotangent_implied: bool, grads: dict, leaves: dict,
                 no_path: list, jacobian: dict | None, jacobian_note: str | None,
                 checks: dict, repeat: int, dtype: str, wrt: list, graph=None, values=None,
                 output_id: int = 0):
        self.expression, self.output_name, self.output = expression, output_name, output
        self.cotangent, self.cotangent_implied = cotangent, cotangent_implied
        self.grads = grads                # name -> array (accumulated over repeat)
        self.leaves = leaves              # name -> value of every named leaf
        self.no_path, self.jacobian, self.jacobian_note = no_path, jacobian, jacobian_note
        self.checks, self.repeat, self.dtype, self.wrt = checks, repeat, dtype, wrt
        self.graph, self.values, self.output_id = graph, values, output_id
        # SPEC 9, each None unless asked for: J·u (output's shape), {a: {b: H_ab}},
        # {leaf: H·u}, [order 1..N derivatives along u]
        self.jvp = self.hessian = self.hvp = self.taylor = None
        self.steps = None                 # [{"target", "formula", "value"}] (--steps)
        # the directions they were taken along: {"tangent"|"taylor"|"hvp": {leaf: array}}
        self.directions: dict = {}
        # leaf -> [{"extern", "diff", "step"}]: grads that rest on finite differences
        self.finite_differences: dict = {}
        # why `grads` is empty (--jacobian without --grad), else None
        self.grads_note: str | None = None
        # the cross-checks asked for, and those still to run (api.run(defer_checks=True))
        self.check_kinds: tuple = ()
        self.pending_checks = None

    def finish_checks(self):
        """Run the checks that api.run left for later (a no-op when none are pending)."""
        pending, self.pending_checks = self.pending_checks, None
        if pending is not None:
            self.checks.update(pending())

    def skip_checks(self, reason: str):
        """Report every check not yet run as skipped (the user pressed Ctrl-C during it)."""
        self.pending_checks = None
        for kind in self.check_kinds:
            self.checks.setdefault(kind, {"passed": None, "skipped": reason})

    def __getattr__(self, name):
        # `nonfinite` (the first node whose value or gradient became non-finite, or None) is
        # found on first read: it scans every array, which a caller that never asks (an
        # in-process loop over large arrays) should not pay for
        if name != "nonfinite":
            raise AttributeError(name)
        d = self.__dict__
        if "graph" not in d:
            raise AttributeError(name)
        cot = self.cotangent if self.cotangent is not None else np.zeros(np.shape(self.output))
        found = d["nonfinite"] = describe_nonfinite(self.graph, self.values, self.output_id,
                                                    cot, self.grads)
        return found

    @property
    def passed(self) -> bool:
        return all(c.get("passed") is not False for c in self.checks.values())

    def to_json(self, arrays: bool = False) -> dict:
        """The object of SPEC section 4. `arrays` leaves arrays of `BULK` numbers or more as
        numpy arrays, for `jsontext` to write a chunk at a time."""
        plain = _bulk_or(to_plain, False) if arrays else to_plain
        return self._json(plain, self.nonfinite)

    def finite_json(self, arrays: bool = False) -> dict | None:
        """to_json()'s object when every number in it is finite, else None (then to_json()
        writes NaN and the infinities as strings and says which node made them). Its arrays
        become lists as they are, with no test of each number: the sum of all of them (one
        C loop per list) is finite only when none is NaN or infinite. Finite numbers whose
        sum overflows also give None, and then to_json() gives the same object. Finite
        output and grads are exactly the case "nonfinite" is None."""
        sums = []
        plain = _summed(sums) if not arrays else _bulk_or(_summed(sums), True)
        obj = self._json(plain, None)
        return obj if math.isfinite(sum(sums)) else None

    def _json(self, plain, nonfinite) -> dict:
        obj = {
            "expression": self.expression,
            "output": {"name": self.output_name, "shape": list(self.output.shape),
                       "value": plain(self.output)},
            "cotangent": None if self.cotangent is None else plain(self.cotangent),
            "grads": {k: plain(v) for k, v in self.grads.items()},
            # every named leaf's value, so a randn weight or a linspace grid can be recovered
            "leaves": {k: plain(v) for k, v in self.leaves.items()},
            "jacobian": None if self.jacobian is None else
            {k: plain(v) for k, v in self.jacobian.items()},
        }
        if self.jacobian_note:
            obj["jacobian_note"] = self.jacobian_note
        if self.grads_note:
            obj["grads_note"] = self.grads_note
        obj["checks"] = json_safe(self.checks) if self.checks else {}
        obj["repeat"] = self.repeat
        obj["dtype"] = self.dtype
        obj["no_path"] = list(self.no_path)
        obj["nonfinite"] = nonfinite
        if not (self.jvp is None and self.hessian is None and self.hvp is None and
                self.taylor is None and self.steps is None):     # (SPEC 9: seldom asked)
            obj.update(self.higher_json(plain))
        if self.finite_differences:
            obj["finite_differences"] = self.finite_differences
        return obj

    def higher_json(self, plain=None) -> dict:
        """The keys of SPEC 9 that were asked for: "jvp", "hessian", "hvp", "taylor"."""
        plain = plain or to_plain
        out = {}
        if self.jvp is not None:
            out["jvp"] = plain(self.jvp)
        if self.hessian is not None:
            out["hessian"] = {a: {b: plain(h) for b, h in row.items()}
                              for a, row in self.hessian.items()}
        if self.hvp is not None:
            out["hvp"] = {k: plain(v) for k, v in self.hvp.items()}
        if self.taylor is not None:
            out["taylor"] = [plain(v) for v in self.taylor]
        if self.steps is not None:
            out["steps"] = [dict(step, value=plain(step["value"])) for step in self.steps]
        return out


def json_safe(obj):
    """A report (checks, notes) as strict JSON: non-finite floats as "NaN"/"Infinity"/
    "-Infinity" (an error of inf must not make the whole output invalid JSON), numpy
    scalars and arrays as plain numbers and lists."""
    kind = type(obj)             # a report's own values first (JSON Lines: every request)
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else _nonfinite(obj)
    if kind is dict:             # its plain values taken here, without a call each
        out = {}
        for k, v in obj.items():
            t = type(v)
            out[k] = v if (t is str or t is int or t is bool or v is None or
                           (t is float and math.isfinite(v))) else json_safe(v)
        return out
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
        return f if math.isfinite(f) else _nonfinite(f)
    return obj


def _nonfinite(f: float) -> str:
    return "NaN" if f != f else ("Infinity" if f > 0 else "-Infinity")


# arrays of this many numbers or more are written by jsontext.array_text (orjson) when
# Result.to_json(arrays=True) leaves them as arrays; below it the C encoder's lists are
# as fast
BULK = 512


def _bulk_or(plain, finite: bool):
    """`plain`, except that a large float array stays an array (with `finite`, only a finite
    one: the others go to `plain`, which finds them)."""
    def bulk(arr):
        if getattr(arr, "size", 0) >= BULK and arr.dtype in _FLOATS and (
                not finite or np.isfinite(arr).all()):
            return np.asarray(arr)
        return plain(arr)
    return bulk


_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _summed(sums: list):
    """to_plain without its finiteness test: each array's list, its sum appended to `sums`
    (see Result.finite_json)."""
    add = sums.append

    def plain(arr):
        if not (type(arr) is np.ndarray and arr.dtype in _FLOATS):  # (`in` tests `is` first)
            arr = np.asarray(arr)
            if arr.dtype.kind != "f":
                arr = arr.astype(np.float64)
        lst = arr.tolist()
        nd = arr.ndim
        if nd == 1:
            add(sum(lst))
        elif nd == 0:
            add(lst)
        else:
            add(sum(map(sum, lst)) if nd == 2 else float(np.add.reduce(arr, axis=None)))
        return lst
    return plain


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


# Bytes of JSON text and the Python lists behind it, per number written (json.dumps of
# tolist(): a float object, a list slot and up to ~24 characters).
JSON_BYTES_PER_NUMBER = 64


def _size(v) -> int:
    # (np.size is a Python function, called a dozen times per small JSON Lines answer)
    return v.size if type(v) is np.ndarray else np.size(v)


_SIZE_OF = attrgetter("size")


def _sizes(values) -> int:
    """The count of numbers in `values`: arrays' sizes read in C (half the time of _size per
    array), anything else's by np.size."""
    try:
        return sum(map(_SIZE_OF, values))
    except AttributeError:
        return sum(map(_size, values))


def check_json_size(result: Result, limits: Limits) -> int:
    """Refuse, before building it, a JSON answer that would need more memory than the limit
    (writing 10^8 numbers as text takes several GiB, not the 0.8 GB of the array); else
    the count of numbers it holds."""
    n = _size(result.output) + _size(result.cotangent)
    for group in (result.grads, result.leaves, result.jacobian, result.hvp):
        if group:
            n += _sizes(group.values())
    if result.jvp is not None or result.hessian or result.taylor:
        n += _size(result.jvp) if result.jvp is not None else 0
        n += sum(_size(h) for row in (result.hessian or {}).values() for h in row.values())
        n += sum(_size(v) for v in result.taylor or ())
    need = n * JSON_BYTES_PER_NUMBER
    if need > limits.max_memory:
        h = sum(np.size(h) for row in (result.hessian or {}).values() for h in row.values())
        hint = ("the Hessian is written densely (SPEC 9's layout): ask --hvp NAME=VALUE "
                "instead (the Hessian times a direction, without forming it), or see the "
                "diagonal in the human view"
                if 2 * h > n else "reduce it with --no-jacobian, --wrt or --of")
        raise GradcalcError("limit", f"the JSON answer holds {n:,} numbers and would need about "
                                     f"{fmt_bytes(need)} to write, over the memory limit of "
                                     f"{fmt_bytes(limits.max_memory)} (--max-memory); {hint}")
    return n


