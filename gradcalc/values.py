"""Turn user VALUEs into arrays: numbers, comma lists, nested lists, constant expressions,
@files (.json, .npy, .csv, anything else as VALUE text) and @- (stdin).

A VALUE is data, never code: JSON goes through `json.loads` and a strict type walk,
anything else through gradcalc's own parser with names restricted to constants. Every
problem is a GradcalcError of kind "value" (or "limit"); nothing here raises anything else.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from .errors import GradcalcError, Limits

# re.ASCII: \d and \s would take Unicode digits and spaces, and float() reads them ("\u0661"
# is 1, "\uff11" is 1): VALUE text is ASCII like the language (SPEC 8)
_NUM = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\Z", re.ASCII)
_CSV_NUM = re.compile(r"\s*[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan|infinity)\s*\Z",
                      re.IGNORECASE | re.ASCII)
_ASCII_SPACE = " \t\r\n\f\v"
# how gradcalc writes non-finite numbers in JSON (SPEC 4): read back exactly these, no others
JSON_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _err(label, message, kind="value"):
    return GradcalcError(kind, f"{label}: {message}" if label else message)


def nested_shape(obj, label=""):
    """Shape of a JSON-style nested list of numbers; raises a value error for ragged arrays,
    booleans, strings (other than "NaN", "Infinity", "-Infinity"), null or anything else.
    Iterative: depth is not a recursion."""
    shape = []
    level = [obj]
    while True:
        is_list = [type(x) is list for x in level]
        if all(is_list):
            lens = {len(x) for x in level}
            if len(lens) > 1:
                raise _err(label, "the array is not rectangular (ragged rows)")
            n = lens.pop() if lens else 0
            shape.append(n)
            if len(shape) > 32:
                raise _err(label, "arrays have at most 32 dimensions")
            if n == 0:
                return tuple(shape)
            level = [y for x in level for y in x]
        elif not any(is_list):
            for x in level:
                if type(x) not in (int, float) and not (type(x) is str and x in JSON_NONFINITE):
                    what = {bool: "a boolean", str: "a string", type(None): "null",
                            dict: "an object"}.get(type(x), type(x).__name__)
                    raise _err(label, f"arrays hold numbers only, found {what}")
            return tuple(shape)
        else:
            raise _err(label, "the array is not rectangular (numbers mixed with lists)")


def from_json(obj, label="", *, dtype=np.float64, limits: Limits | None = None, seed=None,
              allow_files=True):
    """A VALUE given as a JSON value: number, nested list, or string in VALUE syntax."""
    limits = limits or Limits()
    if type(obj) in (int, float):
        try:
            return np.asarray(float(obj), dtype=dtype)
        except OverflowError:
            raise _err(label, "number too large")
    if type(obj) is str and obj in JSON_NONFINITE:
        return np.asarray(JSON_NONFINITE[obj], dtype=dtype)
    if type(obj) is list:
        shape = nested_shape(obj, label)
        size = math.prod(shape)
        if size > limits.max_elements:
            raise _err(label, f"{size:,} elements is over the limit of {limits.max_elements:,} "
                              "(--max-elements)", "limit")
        try:      # numpy reads "NaN"/"Infinity" itself; nested_shape let no other string by
            return np.array(obj, dtype=dtype)
        except (OverflowError, ValueError) as exc:
            raise _err(label, f"not an array of numbers ({exc})")
    if type(obj) is str:
        if obj.startswith("@") and not allow_files:
            raise GradcalcError("usage", f"{label}: @files and @- are not allowed inside a JSON "
                                         "Lines request; send the values inline")
        return parse_value(obj, label, dtype=dtype, limits=limits, seed=seed)
    what = {bool: "a boolean", type(None): "null", dict: "an object"}.get(type(obj), type(obj).__name__)
    raise _err(label, f"expected a number, a nested list or a string, got {what}")


def _split_top_commas(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def parse_value(text: str, label: str = "", *, dtype=np.float64, limits: Limits | None = None,
                seed=None, stdin=None) -> np.ndarray:
    """A VALUE from the command line (or a string inside JSON)."""
    limits = limits or Limits()
    if len(text) > limits.max_text:
        raise _err(label, f"the value is longer than {limits.max_text:,} characters "
                          "(--max-text)", "limit")
    if text.startswith("@"):
        return read_file(text[1:], label, dtype=dtype, limits=limits, seed=seed, stdin=stdin)
    stripped = text.strip(_ASCII_SPACE)       # not str.strip(): it drops U+00A0, U+3000 ...
    if not stripped:
        raise _err(label, "empty value")
    if _NUM.match(stripped):
        return np.asarray(float(stripped), dtype=dtype)
    parts = stripped.split(",")
    if len(parts) > 1 and all(_NUM.match(p) for p in parts):
        return np.array([float(p) for p in parts], dtype=dtype)
    if stripped[0] == "[":
        try:
            obj = json.loads(stripped, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            obj = None
        if obj is not None:
            return from_json(obj, label, dtype=dtype, limits=limits, seed=seed)
    if _split_top_commas(stripped):
        stripped = "[" + stripped + "]"
    return constant_expression(stripped, label, dtype=dtype, limits=limits, seed=seed)


def _reject_constant(name):
    raise ValueError(name)


def constant_expression(text, label="", *, dtype=np.float64, limits=None, seed=None):
    """Evaluate a constant expression of the language (no variables)."""
    from .compile import Compiler
    from .parser import parse_expression
    try:
        node = parse_expression(text, (limits or Limits()).max_depth)
        comp = Compiler(text, {}, dtype=dtype, seed=seed, limits=limits, constants_only=True)
        i = comp.not_none(comp.expr(node))
    except GradcalcError as err:
        if err.kind == "limit":
            raise
        where = ""
        if err.position is not None:
            where = f" at column {err.position + 1}"
        raise _err(label, f"{err.message}{where} in {_short(text)!s}") from None
    return comp.nodes[i].value


def _short(text, n=60):
    from .errors import escape_text
    text = escape_text(text)
    # quoted by hand: repr() would double the backslashes of the escapes
    return "'" + (text if len(text) <= n else text[:n] + "...") + "'"


def read_file(path: str, label="", *, dtype=np.float64, limits=None, seed=None, stdin=None):
    limits = limits or Limits()
    if path == "-":
        if stdin is None:
            raise GradcalcError("usage", f"{label}: @- (standard input) is not available here")
        return parse_value(stdin(), label, dtype=dtype, limits=limits, seed=seed)
    shown = _short(path)
    try:
        size = os.path.getsize(path)
        if os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _err(label, f"cannot read @{shown[1:-1]}: {reason.lower()}") from None
    except ValueError:        # a NUL byte, or a lone surrogate the file system cannot encode
        raise _err(label, f"cannot read @{shown[1:-1]}: not a valid file name") from None
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return _read_npy(path, label, dtype, limits)
    if ext in (".json", ".csv", ".tsv"):
        # parsing holds each number as a Python object: up to ~16 bytes per character
        cap = min(limits.max_file, limits.max_memory // 16)
        what = f"{cap:,} bytes (--max-memory)"
    else:
        cap, what = limits.max_text, f"{limits.max_text:,} characters (--max-text)"
    if size > cap:
        raise _err(label, f"@{shown[1:-1]} is larger than {what}", "limit")
    try:
        # a bounded read: a device or pipe (/dev/zero) reports size 0 and never ends
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read(cap + 1)
    except UnicodeDecodeError:
        raise _err(label, f"cannot read @{shown[1:-1]}: it is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _err(label, f"cannot read @{shown[1:-1]}: {reason.lower()}") from None
    if len(text) > cap:
        raise _err(label, f"@{shown[1:-1]} is larger than {what}", "limit")
    if ext == ".json":
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise _err(label, f"@{shown[1:-1]} is not valid JSON ({str(exc)[:80]})") from None
        return from_json(obj, label, dtype=dtype, limits=limits, seed=seed, allow_files=False)
    if ext in (".csv", ".tsv"):
        return _parse_csv(text, "," if ext == ".csv" else "\t", label, shown, dtype)
    return parse_value(text, label, dtype=dtype, limits=limits, seed=seed)


def _read_npy(path, label, dtype, limits):
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # numpy raises several kinds for a broken file
        raise _err(label, f"cannot read @{_short(path)[1:-1]} as .npy "
                          f"({type(exc).__name__})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise _err(label, f"@{_short(path)[1:-1]} does not hold a real numeric array")
    if arr.ndim > limits.max_ndim:
        raise _err(label, f"an array with {arr.ndim} dimensions is over the limit of "
                          f"{limits.max_ndim}", "limit")
    if arr.size > limits.max_elements:
        raise _err(label, f"{arr.size:,} elements is over the limit of {limits.max_elements:,} "
                          "(--max-elements)", "limit")
    if arr.size * np.dtype(dtype).itemsize > limits.max_memory:
        raise _err(label, f"{arr.size:,} elements need more than the memory limit of "
                          f"{limits.max_memory:,} bytes (--max-memory)", "limit")
    return np.array(arr, dtype=dtype)


def _parse_csv(text, sep, label, shown, dtype):
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split(sep)
        if not all(_CSV_NUM.match(c) for c in cells):
            raise _err(label, f"@{shown[1:-1]} line {lineno}: not a row of numbers")
        rows.append([float(c) for c in cells])
    if not rows:
        raise _err(label, f"@{shown[1:-1]} holds no numbers")
    if len({len(r) for r in rows}) != 1:
        raise _err(label, f"@{shown[1:-1]}: rows have different lengths")
    arr = np.array(rows, dtype=dtype)
    if arr.shape[0] == 1 or arr.shape[1] == 1:
        arr = arr.reshape(-1)          # one row or one column: a vector
    return arr
