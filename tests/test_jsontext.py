"""The JSON writer (gradcalc/jsontext.py): orjson's text of the strict object, byte for byte.

`jsontext.encode` writes what orjson writes for `Result.to_json()` (lists of floats, SPEC 4's
strings for NaN and the infinities), also when float arrays stay numpy arrays in the object
and go to orjson a chunk at a time: every case here compares with `orjson.dumps` of the
plain object (`to_plain(array)`): random bit patterns of every exponent, the edges, -0.0,
float32, integer arrays, empty and nested shapes, whole results (finite, NaN, inf,
Jacobians), the `--json` command and JSON Lines lines. Chunks are made tiny so that every
array crosses chunk boundaries. What orjson refuses (integers beyond 64 bits, lone
surrogates) is written by json in the same layout, and parses back to the same value.
"""
from __future__ import annotations

import io
import json

import numpy as np
import orjson
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


def plain_text(obj) -> str:
    return orjson.dumps(obj).decode()


def old(a) -> str:
    return plain_text(to_plain(a))


def new(a) -> str:
    return b"".join(map(bytes, jsontext.array_pieces(a))).decode()


def encoded(obj) -> str:
    return jsontext.encode(obj).decode()


@pytest.fixture(params=[1 << 16, 7, 1], ids=["chunk64k", "chunk7", "chunk1"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(jsontext, "CHUNK", request.param)
    return request.param


@pytest.fixture
def bulk_all(monkeypatch):
    """Every array of a result stays an array for the writer, however small."""
    monkeypatch.setattr(result_mod, "BULK", 1)


def test_random_bit_patterns_every_exponent():
    rng = np.random.default_rng(20261203)
    bits = rng.integers(0, 2**64, 200_000, dtype=np.uint64, endpoint=False)
    a = bits.view(np.float64)                     # NaN payloads and infinities included
    same(new(a), old(a))


def test_every_decimal_exponent_between_the_edges():
    # shortest digits, in positional form or with an exponent
    rng = np.random.default_rng(7)
    m = rng.uniform(1, 10, 300_000) * rng.choice([-1, 1], 300_000)
    a = m * 10.0 ** rng.integers(-7, 19, 300_000)
    a[::5] = np.round(a[::5])                     # integral values: "3.0", "1e16"
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
    assert json.loads(new(a))[:4] == [1e-4, 1e16, 9.999999999999999e-05, 0.00010000000000000002]


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
    assert new(np.float32([0.1])) == "[0.10000000149011612]"     # not orjson's float32 0.1
    assert new(np.arange(-5, 5)) == old(np.arange(-5, 5))
    m = rng.standard_normal((6, 5))
    assert new(m.T) == old(m.T)                   # not C-contiguous
    assert new(m[::2, 1::2]) == old(m[::2, 1::2])
    assert new(np.broadcast_to(np.float64(-0.0), (3, 3))) == old(np.full((3, 3), -0.0))


def test_objects_with_arrays_and_plain_data():
    arr = np.array([1e-5, 2.0, np.nan])
    obj = {"a": arr, "b": [1.5, {"c": arr.reshape(3, 1)}], "é": "ü\n", "d": {}, "e": None,
           "f": (arr, 2), "g": []}
    plain = {"a": to_plain(arr), "b": [1.5, {"c": to_plain(arr.reshape(3, 1))}], "é": "ü\n",
             "d": {}, "e": None, "f": [to_plain(arr), 2], "g": []}
    assert encoded(obj) == plain_text(plain)
    assert encoded(arr) == old(arr)
    assert '"é":"ü\\n"' in encoded(obj)              # UTF-8 as it is, not escaped
    tricky = "a\u2028b\u0085c\u2029d\u202ee\u2066f"
    assert encoded({"s": tricky}) == '{"s":"a\\u2028b\\u0085c\\u2029d\\u202ee\\u2066f"}'
    assert json.loads(encoded({"s": tricky, "n": 2**70}))["s"] == tricky
    with pytest.raises(TypeError):
        jsontext.encode({1: arr})


def test_what_orjson_refuses_json_writes_in_the_same_layout():
    big, lone = 2**70, "\ud83d x"
    obj = {"id": big, "s": lone, "x": [1e-5, {"y": -big}], "a": np.array([1.0, np.inf])}
    got = encoded(obj)
    assert got == ('{"id":1180591620717411303424,"s":"\\ud83d x","x":[%s,'
                   '{"y":-1180591620717411303424}],"a":[1.0,"Infinity"]}' % plain_text(1e-5))
    back = json.loads(got)
    assert back["id"] == big and back["s"] == lone and back["x"][1]["y"] == -big
    assert encoded({"x": np.float64(1e-5)}) == plain_text({"x": 1e-5})  # as orjson writes
    with pytest.raises(ValueError):
        jsontext.encode({"x": np.float64("nan"), "id": big})


def test_text_refuses_non_finite_floats_anywhere():
    assert jsontext.text({"a": [1.0, {"b": (2.5, "NaN")}]}) == '{"a":[1.0,{"b":[2.5,"NaN"]}]}'
    for bad in (float("nan"), [1.0, float("inf")], {"a": {"b": -float("inf")}}, (float("nan"),)):
        with pytest.raises(ValueError):
            jsontext.text({"x": bad})


def test_dump_writes_the_same_to_text_and_byte_streams():
    obj = {"x": np.linspace(0, 1, 3000), "y": "zé"}
    want = plain_text({"x": to_plain(obj["x"]), "y": "zé"})
    s = io.StringIO()
    jsontext.dump(obj, s)
    b = io.BytesIO()
    t = io.TextIOWrapper(b, encoding="utf-8")
    t.write("head ")                              # pending text goes first
    jsontext.dump(obj, t)
    t.write("!")
    t.flush()
    u = io.BytesIO()
    t_ascii = io.TextIOWrapper(u, encoding="ascii")
    jsontext.dump(obj, t_ascii)                   # JSON's bytes are UTF-8 whatever the locale
    t_ascii.flush()
    assert s.getvalue() == want
    assert b.getvalue().decode() == "head " + want + "!"
    assert u.getvalue().decode("utf-8") == want


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
        same(encoded(r.to_json(arrays=True)), plain_text(r.to_json()))


def test_finite_objects_equal_strict_ones(bulk_all):
    """JSON Lines writes finite_json() and, where it is None, to_json(): the same text as
    to_json() alone, and None exactly where a number is not finite (or a finite sum
    overflows: then to_json() is written, which is the same object)."""
    for r in results():
        strict = plain_text(r.to_json())
        for arrays in (False, True):
            quick = r.finite_json(arrays=arrays)
            if quick is None:
                assert '"NaN"' in strict or "Infinity" in strict
            else:
                same(encoded(quick), strict)
    nan = gradcalc.compute("log(x)", x=[-1.0, 2.0], grad=1, check="none")
    assert nan.finite_json() is None and nan.finite_json(arrays=True) is None
    huge = gradcalc.compute("x*1", x=[1e308, 1e308], grad=1, check="none")
    assert huge.finite_json() is None                 # the sum overflows: the strict way
    assert json.loads(plain_text(huge.to_json()))["output"]["value"] == [1e308, 1e308]
    deep = gradcalc.compute("sum(t*2)", t=np.ones((2, 2, 2)), check="none")
    assert encoded(deep.finite_json()) == plain_text(deep.to_json())
    deep_nan = gradcalc.compute("sum(t/0)", t=np.ones((2, 2, 2)), check="none")
    assert deep_nan.finite_json() is None
    fine = gradcalc.compute("x*2", x=[1.0, 2.0], grad=1, check="none")
    assert isinstance(fine.finite_json(arrays=True)["grads"]["x"], np.ndarray)


def test_json_option_prints_what_orjson_prints(chunk, cli):
    args = ["sum(x**2) + sum(y)", "x=linspace(-1e-3, 1e-3, 2001)", "y=1e20,-0.0,3",
            "--check", "none"]
    out = cli(args + ["--json"]).stdout
    r = gradcalc.compute("sum(x**2) + sum(y)", x="linspace(-1e-3, 1e-3, 2001)",
                         y=[1e20, -0.0, 3], check="none")
    same(out, plain_text(r.to_json()) + "\n")


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
        same(line, plain_text(want))


def test_reports_become_strict_json_at_every_depth():
    """result.json_safe (the checks' reports): plain values kept as they are, NaN and the
    infinities as SPEC 4's strings, numpy scalars and arrays as plain numbers and lists, in
    dicts, lists and tuples at any depth."""
    from gradcalc.result import json_safe
    report = {"passed": True, "n": 3, "s": "x", "none": None, "f": 0.5, "nan": float("nan"),
              "inf": float("inf"), "np": np.float64(-np.inf), "i": np.int64(7),
              "b": np.bool_(False), "arr": np.array([1.0, np.nan]),
              "deep": [{"e": -float("inf"), "t": (1.5, float("nan"))}]}
    got = json_safe(report)
    assert got == {"passed": True, "n": 3, "s": "x", "none": None, "f": 0.5, "nan": "NaN",
                   "inf": "Infinity", "np": "-Infinity", "i": 7, "b": False,
                   "arr": [1.0, "NaN"], "deep": [{"e": "-Infinity", "t": [1.5, "NaN"]}]}
    assert type(got["i"]) is int and type(got["b"]) is bool
    assert jsontext.text(got) == plain_text(got)
