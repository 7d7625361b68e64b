"""The JSON text of results: `encode(obj)` is, byte for byte, `json.dumps(obj, allow_nan=False)`.

It owns how the text is written, never what goes into it (result.py decides that). The
structure and plain data go through the standard library's C encoder, made once; numpy
arrays may stay arrays in the object and their numbers are written by orjson (its float
text costs a tenth of repr's), small arrays all in one call, large ones a chunk at a time,
then brought to the standard library's exact text: ", " between numbers, and the numbers
orjson writes differently (|x| < 1e-4, |x| >= 1e16) or as null (NaN, infinities) written as
`float.__repr__` or SPEC 4's strings "NaN"/"Infinity"/"-Infinity". It never writes a NaN as
null, and never imports orjson for an object without arrays.
"""
from __future__ import annotations

import math
import threading
from json.encoder import c_make_encoder, encode_basestring_ascii

import numpy as np


# Where an array goes, the C encoder writes this placeholder (its `default` hook collects the
# array in order); the text is then cut at the placeholders. A user's string that holds it
# (an id, an expression) is found by the count of cuts, and the object is written again
# with a placeholder that holds a random token instead.
_PLACEHOLDER = "\x00array\x00"
_local = threading.local()


def _collect(obj):
    if isinstance(obj, np.ndarray):
        _local.arrays.append(obj)
        return _local.placeholder
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# the encoder json.dumps(..., allow_nan=False) builds on every call, built once: a result
# holds no cycles, so it runs without the markers that detect them (same text)
_c_encoder = c_make_encoder(None, _collect, encode_basestring_ascii, None, ": ", ", ",
                            False, False, False)


def _skeleton(obj) -> tuple[list, list]:
    """(pieces, arrays): the text of obj cut where its arrays go, and the arrays in order
    (len(pieces) == len(arrays) + 1). ValueError for a NaN or infinite float outside an
    array, TypeError for what JSON cannot hold, as json.dumps."""
    if isinstance(obj, str):
        return [encode_basestring_ascii(obj)], []
    placeholder = _PLACEHOLDER
    while True:
        arrays = _local.arrays = []
        _local.placeholder = placeholder
        try:
            pieces = "".join(_c_encoder(obj, 0)).split(encode_basestring_ascii(placeholder))
        finally:
            _local.arrays = _local.placeholder = None
        if len(pieces) == len(arrays) + 1:
            return pieces, arrays
        import secrets       # a string of the object holds the placeholder (never by chance)
        placeholder = f"\x00{secrets.token_hex(16)}\x00"


def encode(obj, finite: bool = False) -> str:
    """`json.dumps(obj, allow_nan=False)`, where obj may also hold numpy arrays (as dict
    values or list items), written as `json.dumps(to_plain(array))` would write them: a
    NaN or an infinity in an array as SPEC 4's string, or, with `finite`, refused with a
    ValueError as one outside an array is (for Result.to_json(trusting=True), whose
    arrays were not scanned)."""
    pieces, arrays = _skeleton(obj)
    if not arrays:
        return pieces[0]
    out = [""] * (2 * len(pieces) - 1)
    out[::2] = pieces
    out[1::2] = _array_texts(arrays, finite)
    return "".join(out)


def dump(obj, out):
    """Write `encode(obj)` to the text stream `out`, as json.dump writes: large arrays go to
    the stream's bytes a chunk at a time, never held as one more copy of the whole answer.
    Everything but those arrays' numbers is encoded before the first write, so an object
    json would refuse writes nothing."""
    pieces, arrays = _skeleton(obj)
    if not arrays:
        out.write(pieces[0])
        return
    texts = _array_texts(arrays, False, stream=True)
    binary = getattr(out, "buffer", None)
    if binary is not None and _PROBE.encode(getattr(out, "encoding", None) or "ascii",
                                            "replace") == _PROBE.encode("ascii"):
        out.flush()
        put = binary.write
    else:                    # a StringIO, or an encoding that is not ASCII's superset
        put = lambda piece: out.write(bytes(piece).decode("ascii"))  # noqa: E731
    put(pieces[0].encode("ascii"))
    for text, arr, piece in zip(texts, arrays, pieces[1:]):
        if text is None:
            for chunk in array_pieces(arr):
                put(chunk)
        else:
            put(text.encode("ascii"))
        put(piece.encode("ascii"))


_PROBE = '{"x": [-1.5e-05, 2.0], "y": "NaN"}'

# arrays of fewer numbers than this are written together, by one orjson call for all of
# them (a small answer holds a dozen arrays of a few numbers: a call each, or the C
# encoder's float repr, costs more than their numbers); larger ones each by array_pieces
BATCH = 512


def _array_texts(arrays: list, finite: bool, stream: bool = False) -> list:
    """The JSON text of each array (with `stream`, None for a large one: the caller writes
    its array_pieces). The small ones come from one orjson call for all of them, each as
    the float64 numbers tolist() gives. orjson writes a number as repr does except for an
    exponent (|x| < 1e-5, |x| >= 1e16), a positional 0.0000... (1e-5 <= |x| < 1e-4) and
    null (NaN, infinities): those are rewritten (_repr_odd), and an array with a null is
    written by array_pieces (refused, with `finite`)."""
    import orjson
    items, large = [], []
    for i, a in enumerate(arrays):
        if a.size >= BATCH:
            large.append(i)
            items += ("|", 0)
        else:
            items += ("|", (a if a.dtype is _F64 else a.astype(_F64)).tolist())
    raw = orjson.dumps(items[1:])
    nulls = b"n" in raw
    if nulls and finite:
        raise ValueError("Out of range float values are not JSON compliant")
    text = raw.decode("ascii")
    if b"e" in raw or b"0.0000" in raw:
        text = _repr_odd(text)
    texts = text.replace(",", ", ")[1:-1].split(', "|", ')
    if nulls:
        for i, a in enumerate(arrays):
            if "n" in texts[i]:
                texts[i] = b"".join(array_pieces(a)).decode("ascii")
    for i in large:
        a = arrays[i]
        if finite and not np.isfinite(a).all():
            raise ValueError("Out of range float values are not JSON compliant")
        texts[i] = None if stream else b"".join(array_pieces(a)).decode("ascii")
    return texts


_F64 = np.dtype(np.float64)


def _repr_odd(text: str) -> str:
    """orjson's compact text of numbers (and nulls) with each number it writes otherwise
    than repr rewritten as repr writes it: those with an exponent, and those that open with
    0.0000 (orjson's text is the shortest that reads back as the same float, so
    float(text) is the number)."""
    starts = []
    for needle in ("e", "0.0000"):
        i = text.find(needle)
        while i >= 0:
            start = max(text.rfind(",", 0, i), text.rfind("[", 0, i)) + 1
            if needle == "e" or text[start:i] in ("", "-"):
                starts.append(start)
            i = text.find(needle, i + 1)
    out, done = [], 0
    for start in sorted(starts):
        end = text.find(",", start)
        close = text.find("]", start)
        if end < 0 or 0 <= close < end:
            end = close
        out += (text[done:start], float.__repr__(float(text[start:end])))
        done = end
    out.append(text[done:])
    return "".join(out)


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
