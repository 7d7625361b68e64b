"""The JSON text of results: `encode(obj)` is, byte for byte, `json.dumps(obj, allow_nan=False)`.

It owns how the text is written, never what goes into it (result.py decides that). Plain
data goes through the standard library's C encoder, made once; float arrays may stay numpy
arrays in the object and are written by orjson (ten times faster at 10^7 numbers), then
brought to the standard library's exact text: ", " between numbers, and the numbers orjson
writes differently (|x| < 1e-4, |x| >= 1e16) or as null (NaN, infinities) written one by
one as `float.__repr__` or SPEC 4's strings "NaN"/"Infinity"/"-Infinity". It never writes
a NaN as null, and never imports orjson for an object without arrays.
"""
from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii

import numpy as np


class _Array(Exception):
    """Raised from the C encoder's `default` hook: the object holds a numpy array."""


def _default(obj):
    if isinstance(obj, np.ndarray):
        raise _Array
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# the encoder json.dumps(..., allow_nan=False) builds on every call, built once: a result
# holds no cycles, so it runs without the markers that detect them (same text)
try:
    from json.encoder import c_make_encoder
except ImportError:          # pragma: no cover (CPython always has it)
    c_make_encoder = None
if c_make_encoder is not None:
    _c_encoder = c_make_encoder(None, _default, encode_basestring_ascii, None, ": ", ", ",
                                False, False, False)

    def _plain(obj) -> str:
        if isinstance(obj, str):
            return encode_basestring_ascii(obj)
        return "".join(_c_encoder(obj, 0))
else:                        # pragma: no cover
    _plain = json.JSONEncoder(allow_nan=False, default=_default).encode


def encode(obj) -> str:
    """`json.dumps(obj, allow_nan=False)`, where obj may also hold numpy arrays (as dict
    values or list items), written as `json.dumps(to_plain(array))` would write them.
    ValueError for a NaN or infinite float outside an array, as json's."""
    try:
        return _plain(obj)
    except _Array:
        out = []
        _write(_plan(obj, []), out.append)
        return b"".join(out).decode("ascii")


def dump(obj, out):
    """Write `encode(obj)` to the text stream `out`, as json.dump writes: arrays go to the
    stream's bytes a chunk at a time, never held as one more copy of the whole answer.
    Everything but the arrays' numbers is encoded before the first write, so an object
    json would refuse writes nothing."""
    try:
        text = _plain(obj)
    except _Array:
        plan = _plan(obj, [])
    else:
        out.write(text)
        return
    binary = getattr(out, "buffer", None)
    if binary is not None and _PROBE.encode(getattr(out, "encoding", None) or "ascii",
                                            "replace") == _PROBE.encode("ascii"):
        out.flush()
        _write(plan, binary.write)
    else:                    # a StringIO, or an encoding that is not ASCII's superset
        _write(plan, lambda piece: out.write(bytes(piece).decode("ascii")))


_PROBE = '{"x": [-1.5e-05, 2.0], "y": "NaN"}'


def _plan(obj, out: list) -> list:
    """`out` with obj's text appended as ASCII bytes, each array left as itself."""
    if isinstance(obj, np.ndarray):
        out.append(obj)
        return out
    try:
        out.append(_plain(obj).encode("ascii"))
        return out
    except _Array:
        pass
    if isinstance(obj, dict):
        sep = "{"
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str beside arrays, not {type(key).__name__}")
            out.append((sep + encode_basestring_ascii(key) + ": ").encode("ascii"))
            _plan(value, out)
            sep = ", "
    else:                    # a list or tuple (the C encoder accepts nothing else holding items)
        sep = "["
        for item in obj:
            out.append(sep.encode("ascii"))
            _plan(item, out)
            sep = ", "
    out.append(b"}" if isinstance(obj, dict) else b"]")
    return out


def _write(plan: list, put):
    for item in plan:
        if isinstance(item, np.ndarray):
            for piece in array_pieces(item):
                put(piece)
        else:
            put(item)


def number_text(x: float) -> str:
    """One number as SPEC 4 writes it: repr, or a string for NaN and the infinities."""
    if math.isfinite(x):
        return float.__repr__(x)
    return '"NaN"' if x != x else ('"Infinity"' if x > 0 else '"-Infinity"')


# numbers per orjson call: each chunk's text (about 1 MB) is written and freed before the
# next, so the allocator reuses its memory (a whole 10^7-number text in fresh pages costs
# more in page faults than orjson takes to write it)
CHUNK = 1 << 16


def array_pieces(arr):
    """An array as nested lists, in pieces of ASCII bytes, every number as `number_text`
    writes it (float32 and integer arrays as the float64 numbers they hold, as
    ndarray.tolist() gives them)."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 0:
        yield number_text(float(a)).encode("ascii")
        return
    a = np.ascontiguousarray(a)            # orjson reads C order only
    if a.size == 0:                        # brackets only: [] or [[], []]
        yield _orjson(a)
        return
    rows = max(1, CHUNK * a.shape[0] // a.size)     # of the first axis, per chunk
    yield b"["
    for i in range(0, a.shape[0], rows):
        if i:
            yield b", "
        yield from _chunk_pieces(a[i:i + rows])
    yield b"]"


def _orjson(a: np.ndarray) -> bytes:
    import orjson
    return orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY).replace(b",", b", ")


def _chunk_pieces(a: np.ndarray):
    """The text of `a` without its outer brackets, in pieces."""
    odd = _odd(a)
    if odd is None:
        yield memoryview(_orjson(a))[1:-1]
        return
    # the odd numbers become NaN, which orjson writes as `null`: the text between two of
    # them is one piece (a view, not a copy), and each is written by number_text
    text = _orjson(np.where(odd, np.nan, a))
    view, start = memoryview(text), 1
    for x in a[odd].tolist():
        at = text.index(b"null", start)
        yield view[start:at]
        yield number_text(x).encode("ascii")
        start = at + 4
    yield view[start:-1]


def _odd(a: np.ndarray):
    """The mask of the numbers orjson does not write as float.__repr__ does, or None when
    there are none. repr writes |x| < 1e-4 as 1e-05 or 2.5e-07 and |x| >= 1e16 as 1e+16;
    orjson writes 0.00001, 2.5e-7, 1e16, and null for NaN and the infinities. Between the
    two both write the shortest round-trip digits in the same positional form (held to
    repr on random bit patterns by tests/test_jsontext.py)."""
    if a.size == 0:
        return None
    tiny = (a > -1e-4) & (a < 1e-4)
    tiny &= a != 0
    lo, hi = a.min(), a.max()
    if -1e16 < lo and hi < 1e16:     # no large number (a NaN fails both comparisons)
        return tiny if tiny.any() else None
    return tiny | ~(np.abs(a) < 1e16)
