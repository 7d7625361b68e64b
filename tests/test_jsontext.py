"""The JSON writer (gradcalc/jsontext.py) against the text json.dumps gives, byte for byte.

`jsontext.encode` writes float arrays with orjson and brings orjson's text to the standard
library's: ", " between numbers, numbers below 1e-4 or from 1e16 up written by repr, NaN and
the infinities as SPEC 4's strings. Every case here compares with
`json.dumps(Result.to_json(), allow_nan=False)` (the writer `--json` used before) or
`json.dumps(to_plain(array))`: random bit patterns of every exponent, the edges of the two
ranges, -0.0, float32, integer arrays, empty and nested shapes, whole results (finite, NaN,
inf, Jacobians), the `--json` command and JSON Lines lines. Chunks are made tiny so that every
array crosses chunk boundaries.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

import gradcalc
from gradcalc import jsontext, result as result_mod
from gradcalc.result import to_plain


def same(got: str, want: str):
    """got == want, failing with the first difference in context (pytest's own diff of two
    megabyte strings takes minutes)."""
    if got != want:
        at = next((i for i, (p, q) in enumerate(zip(got, want)) if p != q),
                  min(len(got), len(want)))
        pytest.fail(f"differ at {at}: {got[at - 40:at + 40]!r} != {want[at - 40:at + 40]!r}")


def old(a) -> str:
    return json.dumps(to_plain(a), allow_nan=False)


def new(a) -> str:
    return b"".join(map(bytes, jsontext.array_pieces(a))).decode("ascii")


@pytest.fixture(params=[1 << 16, 7, 1], ids=["chunk64k", "chunk7", "chunk1"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(jsontext, "CHUNK", request.param)
    return request.param


@pytest.fixture
def bulk_all(monkeypatch):
    """Every array of a result goes through orjson, however small."""
    monkeypatch.setattr(result_mod, "BULK", 1)


def test_random_bit_patterns_every_exponent():
    rng = np.random.default_rng(20261203)
    bits = rng.integers(0, 2**64, 200_000, dtype=np.uint64, endpoint=False)
    a = bits.view(np.float64)                     # NaN payloads and infinities included
    same(new(a), old(a))


def test_every_decimal_exponent_between_the_edges():
    # the range orjson writes itself: shortest digits in positional form, as repr
    rng = np.random.default_rng(7)
    m = rng.uniform(1, 10, 300_000) * rng.choice([-1, 1], 300_000)
    a = m * 10.0 ** rng.integers(-7, 19, 300_000)
    a[::5] = np.round(a[::5])                     # integral values: "3.0", "1e+16"
    same(new(a), old(a))


def test_the_edges_of_both_ranges():
    edges = [1e-4, 1e16]
    near = [np.nextafter(e, d) for e in edges for d in (0, np.inf)]
    vals = np.array(edges + near + [0.0, -0.0, 5e-324, 2.2250738585072014e-308,
                                    1.7976931348623157e308, 1e-5, 9.999999999999999e-05,
                                    1e-7, 1.5e-10, 1e15, 9999999999999998.0, 1e22, 0.1, 1 / 3,
                                    np.nan, np.inf, -np.inf, -np.nan])
    a = np.concatenate([vals, -vals])
    same(new(a), old(a))
    assert new(a).startswith("[0.0001, 1e+16, 9.999999999999999e-05, 0.00010000000000000002")


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 3), (2, 0, 2), (5, 4), (2, 3, 4), (1, 1, 1),
                                   (4, 1), ()])
def test_shapes(shape, chunk):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 20, shape)
    if a.size:
        a.flat[0] = np.nan
    same(new(a), old(a))


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")   # signalling NaNs
def test_dtypes_and_layouts(chunk):
    rng = np.random.default_rng(2)
    f32 = rng.integers(0, 2**32, 2000, dtype=np.uint32).view(np.float32)
    same(new(f32), old(f32))                   # the float64 each holds: 0.10000000149011612
    assert new(np.float32([0.1])) == "[0.10000000149011612]"
    assert new(np.arange(-5, 5)) == old(np.arange(-5, 5))
    m = rng.standard_normal((6, 5))
    assert new(m.T) == old(m.T)                   # not C-contiguous
    assert new(m[::2, 1::2]) == old(m[::2, 1::2])
    assert new(np.broadcast_to(np.float64(-0.0), (3, 3))) == old(np.full((3, 3), -0.0))


def test_objects_with_arrays_and_plain_data():
    arr = np.array([1e-5, 2.0, np.nan])
    obj = {"a": arr, "b": [1.5, {"c": arr.reshape(3, 1)}], "é": "ü\n", "d": {}, "e": None,
           "f": (arr, 2)}
    plain = {"a": to_plain(arr), "b": [1.5, {"c": to_plain(arr.reshape(3, 1))}], "é": "ü\n",
             "d": {}, "e": None, "f": [to_plain(arr), 2]}
    assert jsontext.encode(obj) == json.dumps(plain, allow_nan=False)
    assert jsontext.encode(arr) == old(arr)
    with pytest.raises(ValueError):               # outside an array, refused as json does
        jsontext.encode({"a": arr, "x": float("nan")})


def test_dump_writes_the_same_to_text_and_byte_streams():
    obj = {"x": np.linspace(0, 1, 3000), "y": "z"}
    want = json.dumps({"x": to_plain(obj["x"]), "y": "z"})
    s = io.StringIO()
    jsontext.dump(obj, s)
    b = io.BytesIO()
    t = io.TextIOWrapper(b, encoding="utf-8")
    t.write("head ")                              # pending text goes first
    jsontext.dump(obj, t)
    t.write("!")
    t.flush()
    u = io.BytesIO()
    t16 = io.TextIOWrapper(u, encoding="utf-16-le")
    jsontext.dump(obj, t16)
    t16.flush()
    assert s.getvalue() == want
    assert b.getvalue().decode() == "head " + want + "!"
    assert u.getvalue().decode("utf-16-le") == want


def results():
    """A corpus of results: finite, NaN, inf, -0.0, float32, nested shapes, Jacobians."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((4, 5))
    x = rng.standard_normal(5)
    return [
        gradcalc.compute("3*a + 2*b*b + log(c)", a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8],
                         grad=[0.1, 1.0, 0.0001], check="none"),
        gradcalc.compute("log(x) * y", x=[-1.0, 0.0, 2.0, 1e-300], y=[-0.0, 1.0, -2.0, 1e300],
                         grad=1, check="none"),
        gradcalc.compute("1/x", x=[0.0, -0.0, 1e-310, 3.0], grad=1, check="none"),
        gradcalc.compute("W @ tanh(x)", W=W, x=x, grad=1, check="none"),
        gradcalc.compute("sum(t**2 * 1e20)", t=rng.standard_normal((2, 3, 4)) * 1e-9,
                         check="none"),
        gradcalc.compute("sin(a)*b + a**2", a=rng.uniform(-2, 2, 7), b=rng.uniform(-2, 2, 7),
                         grad=1.0, dtype="float32", check="none"),
        gradcalc.compute("sum(x**2)", x="linspace(0, 1, 3000)", check="none"),
        gradcalc.compute("exp(x)", x=[1000.0, -1000.0, 0.0], grad=1, check="symbolic"),
    ]


def test_whole_results_byte_for_byte(bulk_all, chunk):
    for r in results():
        same(jsontext.encode(r.to_json(arrays=True)), json.dumps(r.to_json(), allow_nan=False))


def test_trusting_arrays_refuse_non_finite_as_lists_do(bulk_all):
    """JSON Lines writes the trusting object and falls back to the strict one on ValueError:
    an array with a NaN must still make the encoder refuse."""
    nan = gradcalc.compute("log(x)", x=[-1.0, 2.0], grad=1, check="none")
    with pytest.raises(ValueError):
        jsontext.encode(nan.to_json(trusting=True, arrays=True))
    fine = gradcalc.compute("x*2", x=[1.0, 2.0], grad=1, check="none")
    assert isinstance(fine.to_json(trusting=True, arrays=True)["grads"]["x"], np.ndarray)
    assert jsontext.encode(fine.to_json(trusting=True, arrays=True)) == json.dumps(
        fine.to_json(), allow_nan=False)


def test_json_option_prints_what_json_dumps_printed(chunk, cli):
    args = ["sum(x**2) + sum(y)", "x=linspace(-1e-3, 1e-3, 2001)", "y=1e20,-0.0,3",
            "--check", "none"]
    out = cli(args + ["--json"]).stdout
    r = gradcalc.compute("sum(x**2) + sum(y)", x="linspace(-1e-3, 1e-3, 2001)",
                         y=[1e20, -0.0, 3], check="none")
    same(out, json.dumps(r.to_json(), allow_nan=False) + "\n")


def test_json_lines_lines_byte_for_byte(chunk, cli):
    big = np.linspace(-2, 2, 1500)
    reqs = [{"id": 1, "expr": "x*2", "vars": {"x": [1.0, -0.0]}, "grad": 1},
            {"id": 2, "expr": "log(x)", "vars": {"x": big.tolist()}, "grad": 1},   # NaN, -inf
            {"id": 3, "expr": "sum(x**3)", "vars": {"x": (big * 1e-3).tolist()}},
            {"expr": "x*1e20", "vars": {"x": big.tolist()}, "grad": 1, "dtype": "float32"}]
    stream = "".join(json.dumps({**q, "check": "none"}) + "\n" for q in reqs)
    got = cli(["-"], stream).stdout.splitlines()
    assert len(got) == len(reqs)
    for q, line in zip(reqs, got):
        r = gradcalc.compute(q["expr"], **q["vars"], grad=q.get("grad"),
                             dtype=q.get("dtype"), check="none")
        want = {"id": q["id"], **r.to_json()} if "id" in q else r.to_json()
        same(line, json.dumps(want, allow_nan=False))
