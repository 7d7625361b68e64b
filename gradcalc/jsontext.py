"""The JSON text gradcalc writes: orjson's, for every object it prints (`--json`, JSON Lines,
errors, `fit`).

It owns how the text is written, never what goes into it (result.py decides that): compact
(no spaces), UTF-8, each number in its shortest round-trip form (`0.00001`), as orjson
writes it, with the line separators and bidirectional controls escaped (_ESCAPED). NaN and
the infinities reach it as SPEC 4's strings "NaN"/"Infinity"/"-Infinity" (orjson would
write a float NaN as `null`: `text` refuses one), except in numpy arrays, where it writes
them so. Float arrays may stay numpy arrays in the object (large answers): they are written
a chunk at a time, as the float64 numbers they hold. What orjson refuses (integers beyond
64 bits, strings with lone surrogates: a JSON Lines "id" may be either) is written by the
standard library in the same layout.
"""
from __future__ import annotations

import math
import re

import orjson

_EncodeError = orjson.JSONEncodeError


def encode(obj) -> bytes:
    """obj's text. obj holds plain data (dicts with str keys, lists, tuples, str, int,
    float, bool, None) and numpy arrays, its floats outside arrays finite (as result.py
    makes them; `text` checks)."""
    try:
        return _escaped(orjson.dumps(obj))
    except _EncodeError:         # an array, or what only json writes
        return b"".join(_written(_plan(obj, [])))


def dump(obj, out):
    """Write `encode(obj)` to the text stream `out` (to its bytes: byte_stream): an array
    goes a chunk at a time, never held as one more copy of the whole answer.
    Everything but the arrays' numbers is encoded before the first write, so an object
    that cannot be written writes nothing."""
    try:
        pieces = [_escaped(orjson.dumps(obj))]
    except _EncodeError:
        pieces = _plan(obj, [])
    put = byte_stream(out).write
    for piece in _written(pieces):
        put(piece)


def text(obj) -> str:
    """encode(obj) as str, for the small reports (errors, derivations, fit): ValueError for
    a NaN or an infinite float anywhere, which orjson would write as null."""
    return _checked(obj).decode("utf-8")


def print_line(obj, out):
    """text(obj) and a newline on the text stream `out`, as bytes (byte_stream)."""
    byte_stream(out).write(_checked(obj) + b"\n")


def _checked(obj) -> bytes:
    if not floats_finite(obj):
        raise ValueError("Out of range float values are not JSON compliant")
    return encode(obj)


def floats_finite(obj) -> bool:
    """Whether every float in plain data (dicts, lists, tuples) is finite: what `text`
    asks, and what a JSON Lines "id" must be to be echoed (1e400 reads as infinity)."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(map(floats_finite, obj.values()))
    if isinstance(obj, (list, tuple)):
        return all(map(floats_finite, obj))
    return True


def byte_stream(out):
    """Where JSON bytes go for the text stream `out`: its binary buffer, whatever the text
    layer's encoding (JSON exchanged between programs is UTF-8, RFC 8259 section 8.1),
    after what the text layer holds; else (a StringIO) `out` itself, each piece decoded."""
    binary = getattr(out, "buffer", None)
    if binary is not None:
        out.flush()
        return binary
    return _Decoding(out)


class _Decoding:
    def __init__(self, out):
        self.out = out

    def write(self, piece):
        self.out.write(bytes(piece).decode("utf-8"))

    def flush(self):
        self.out.flush()


def _written(plan):
    """The bytes of a _plan, each array's a chunk at a time."""
    for item in plan:
        if isinstance(item, bytes):
            yield item
        else:
            yield from array_pieces(item)


def _plan(obj, out: list) -> list:
    """`out` with obj's text appended as bytes, each array left as itself (numpy is loaded
    by then: only an array or a refused value comes this way)."""
    import numpy as np
    if isinstance(obj, np.ndarray):
        out.append(obj)
        return out
    try:
        out.append(_escaped(orjson.dumps(obj)))
        return out
    except _EncodeError:
        pass
    if isinstance(obj, dict):
        sep = b"{"
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            try:
                out.append(sep + _escaped(orjson.dumps(key)) + b":")
            except _EncodeError:
                out.append(sep + _scalar(key) + b":")
            _plan(value, out)
            sep = b","
        out.append(b"}")
    elif isinstance(obj, (list, tuple)):
        sep = b"["
        for item in obj:
            out.append(sep)
            _plan(item, out)
            sep = b","
        out.append(b"]")
    else:
        out.append(_scalar(obj))
    return out


# characters JSON allows raw in strings that are escaped all the same: the line separators
# a reader may split text at (Python's str.splitlines() does), which would tear an answer,
# and the bidirectional controls, which reorder how a terminal shows the text around them
_ESCAPED = ("\u0085\u2028\u2029"
            "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ESCAPES = {c.encode(): b"\\u%04x" % ord(c) for c in _ESCAPED}
_UNSAFE = re.compile(b"|".join(_ESCAPES))


def _escaped(text: bytes) -> bytes:
    """`text` with the characters of _ESCAPED escaped."""
    if text.isascii():
        return text
    return _UNSAFE.sub(lambda m: _ESCAPES[m.group()], text)


def _scalar(x) -> bytes:
    """What orjson refused outside a container: json's text of it (a big integer as its
    digits, a lone surrogate escaped), a float subclass as orjson writes the float."""
    if isinstance(x, float):
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"Out of range float values are not JSON compliant: {x!r}")
        return orjson.dumps(x)
    import json
    return json.dumps(x).encode("ascii")


def number_text(x: float) -> bytes:
    """One number as SPEC 4 writes it: as orjson does, or a string for NaN and the
    infinities."""
    if math.isfinite(x):
        return orjson.dumps(x)
    return b'"NaN"' if x != x else (b'"Infinity"' if x > 0 else b'"-Infinity"')


# numbers per orjson call: each chunk's text (about 1 MB) is written and freed before the
# next, so the allocator reuses its memory (a whole 10^7-number text in fresh pages costs
# more in page faults than orjson takes to write it)
CHUNK = 1 << 16


def array_pieces(arr):
    """An array as nested lists, in pieces of bytes, every number as `number_text` writes
    it (float32 and integer arrays as the float64 numbers they hold, as ndarray.tolist()
    gives them)."""
    import numpy as np
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 0:
        yield number_text(float(a))
        return
    a = np.ascontiguousarray(a)            # orjson reads C order only
    if a.size == 0:                        # brackets only: [] or [[],[]]
        yield _orjson(a)
        return
    rows = max(1, CHUNK * a.shape[0] // a.size)     # of the first axis, per chunk
    yield b"["
    for i in range(0, a.shape[0], rows):
        if i:
            yield b","
        yield from _chunk_pieces(a[i:i + rows])
    yield b"]"


def _orjson(a) -> bytes:
    return orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY)


def _chunk_pieces(a):
    """The text of `a` (a C-ordered float64 array) without its outer brackets, in pieces."""
    import numpy as np
    finite = np.isfinite(a)
    if finite.all():
        yield memoryview(_orjson(a))[1:-1]
        return
    # orjson writes NaN and the infinities as `null`: the text between two of them is one
    # piece (a view, not a copy), and each is written by number_text
    text = _orjson(a)
    view, start = memoryview(text), 1
    for x in a[~finite].tolist():
        at = text.index(b"null", start)
        yield view[start:at]
        yield number_text(x)
        start = at + 4
    yield view[start:-1]
