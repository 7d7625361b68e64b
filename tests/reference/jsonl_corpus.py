"""A corpus of JSON Lines requests for the byte-for-byte equivalence of the request path.

`corpus()` is a list of raw stdin lines (bytes, each ending in a newline), the same on every
run: ids of every JSON type (and ids that look like the writer's own placeholders), numbers
that orjson and repr write differently (below 1e-4, from 1e16 up, -0.0), NaN and the
infinities in small and large arrays, float32, errors of every kind (with and without ids),
unknown fields, every option of a request (wrt, of, repeat, check, rtol, atol, dtype, seed,
jacobian, tangent, hessian, hvp, taylor, steps), programs with `#:` lines, and repeats of one
request shape between others (what a per-shape cache must not confuse). `ARGS` are the
command line's options around it.
"""
from __future__ import annotations

import json

ARGS = ["--check", "none", "--max-text", "4000"]     # lines over 32,000 bytes are refused
SEED = "3*a + 2*b*b + log(c)"


def _line(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def _seed(rid, **extra):
    req = {"id": rid, "expr": SEED, "vars": {"a": [1.0, 2.0, 3.0], "b": [3, 4, 5],
                                             "c": [6.0, 7.0, 8.0]},
           "grad": [0.1, 1.0, 0.0001]}
    req.update(extra)
    if req["id"] is _NO_ID:
        del req["id"]
    return req


_NO_ID = object()

IDS = [0, -7, 2**70, -(2**64), 1.5, -0.0, 1e300, 5e-324, "", "x", "é ü \u2028 \U0001f600",
       'a "quoted", colon: value', "\u0000\u0001", "\\u0000", "\u0000\u0001array\u0001\u0000",
       "NaN", "Infinity", True, False, None, [], [1, "two", [3.5]], {}, {"k": [1, {"n": None}]},
       {"a": 1, "b": "c, d: e"}]


def corpus() -> list[bytes]:
    lines = []
    add = lambda obj: lines.append(_line(obj))  # noqa: E731
    for rid in IDS:                                   # one shape, ids of every type
        add(_seed(rid))
    add(_seed(_NO_ID))
    # numbers written differently by orjson and repr, and non-finite ones
    tiny = [1e-5, -2.5e-7, 9.999999999999999e-05, 1e-4, 5e-324, -0.0, 0.0]
    huge = [1e16, -1e16, 9999999999999998.0, 1.2345678901234567e17, 1e22, 1.7976931348623157e308]
    add({"id": "tiny", "expr": "x*1", "vars": {"x": tiny}, "grad": 1})
    add({"id": "huge", "expr": "x*3", "vars": {"x": huge[:-1]}, "grad": huge[:-1]})
    add({"id": "overflow", "expr": "x*10", "vars": {"x": huge}, "grad": 1})
    add({"id": "nan", "expr": "log(x) * y", "vars": {"x": [-1.0, 0.0, 2.0, 1e-300],
                                                     "y": [-0.0, 1.0, -2.0, 1e300]}, "grad": 1})
    add({"id": "inf", "expr": "1/x", "vars": {"x": [0.0, -0.0, 1e-310, 3.0]}, "grad": 1})
    add({"id": "scalar", "expr": "sum(x**2)", "vars": {"x": [1.5, -2.0]}})
    add({"id": "scalar-nan", "expr": "sum(log(x))", "vars": {"x": [-1.0, 2.0]}})
    add({"id": "0d", "expr": "x*x", "vars": {"x": 3.0}})
    add({"id": "f32", "expr": "sin(a)*b + a**2", "vars": {"a": [0.1, -0.7, 1.3],
                                                         "b": [2.0, 1e-6, 3e20]},
         "grad": [1, 0.5, 0.25], "dtype": "float32"})
    add({"id": "matrix", "expr": "W @ tanh(x)", "vars": {"W": [[1, 2, 3], [4, 5, 6]],
                                                         "x": [0.1, -0.2, 1e-6]}, "grad": 1})
    add({"id": "3d", "expr": "sum(t**2 * 1e20)", "vars": {"t": [[[1e-9, -2e-9], [0.0, 3e-12]],
                                                                 [[-0.0, 1.0], [2.0, 1e-3]]]}})
    add({"id": "empty", "expr": "sum(x)", "vars": {"x": []}})
    add({"id": "strings", "expr": "x*y", "vars": {"x": "1,2,3", "y": "linspace(-1, 1, 3)"},
         "grad": "1,1,1"})
    add({"id": "big", "expr": "log(x)", "vars": {"x": "linspace(-2, 2, 700)"}, "grad": 1})
    add({"id": "big-finite", "expr": "x*1e-3", "vars": {"x": "linspace(-2, 2, 600)"},
         "grad": 1, "jacobian": False})
    add({"id": "big-f32", "expr": "x*1e20", "vars": {"x": "linspace(0, 1, 550)"}, "grad": 1,
         "dtype": "float32", "jacobian": False})
    add({"id": "no-jac", "expr": "x*2", "vars": {"x": "linspace(0, 1, 101)"}, "grad": 1})
    # every option of a request
    add(_seed("wrt", wrt=["a", "c"]))
    add(_seed("wrt-text", wrt="b"))
    add({"id": "of", "program": "h = a*b\ny = sum(h)", "vars": {"a": [1, 2], "b": [3, 4]},
         "of": "h", "grad": [1, -1]})
    add(_seed("repeat", repeat=3))
    add(_seed("numeric", check="numeric"))
    add(_seed("symbolic", check="symbolic", rtol=1e-6, atol=0))
    add(_seed("all", check="all"))
    add(_seed("jac-false", jacobian=False))
    add({"id": "jac-only", "expr": "a*b", "vars": {"a": [1, 2], "b": [3, 4]}, "jacobian": True})
    add({"id": "seed", "program": "w = randn(3)\ny = sum(w * x)", "vars": {"x": [1, 2, 3]},
         "seed": 5})
    add({"id": "tangent", "expr": "x**3", "vars": {"x": [1.0, 2.0]}, "tangent": {"x": [1, 0]}})
    add({"id": "hessian", "expr": "sum(x**2 * y)", "vars": {"x": [1.0, 2.0], "y": 3.0},
         "hessian": True})
    add({"id": "hvp", "expr": "sum(x**3)", "vars": {"x": [1.0, -2.0]}, "hvp": {"x": [1, 1]}})
    add({"id": "taylor", "expr": "sin(x)", "vars": {"x": 0.5}, "tangent": {"x": 1},
         "taylor": 3})
    add({"id": "steps", "expr": "sum(x*x)", "vars": {"x": [1.0, 2.0]}, "steps": True})
    add({"id": "options-line", "program": "#: --grad 2 --no-jacobian\ny = x * 3",
         "vars": {"x": [1.0, 2.0]}})
    add({"id": "options-over", "program": "#: --grad 2\ny = x * 3", "vars": {"x": [1.0, 2.0]},
         "grad": [1, 10], "check": "none"})
    add({"id": "vars-null", "expr": "2*3", "vars": None})
    add(_seed("unknown", grads=[1, 2, 3], wtr=["a"]))
    # errors, with and without ids
    add({"id": "syntax", "expr": "3*a +", "vars": {"a": 1}})
    add({"id": "name", "expr": "sinn(a)", "vars": {"a": 1}})
    add({"id": "shape", "expr": "a + b", "vars": {"a": [1, 2], "b": [1, 2, 3]}, "grad": 1})
    add({"id": "value", "expr": "a", "vars": {"a": "1,,2"}})
    add({"id": "grad-shape", "expr": "a*2", "vars": {"a": [1, 2]}, "grad": [1, 2, 3]})
    add({"id": "no-grad", "expr": "a*2", "vars": {"a": [1, 2]}})
    add({"id": "bad-check", "expr": "a", "vars": {"a": 1}, "check": "maybe"})
    add({"id": "bad-repeat", "expr": "a", "vars": {"a": 1}, "repeat": True})
    add({"id": "bad-wrt", "expr": "a", "vars": {"a": 1}, "wrt": ["z"]})
    add({"id": "bad-of", "expr": "a", "vars": {"a": 1}, "of": "q"})
    add({"id": "bad-var", "expr": "a", "vars": {"a b": 1}})
    add({"id": "file", "expr": "a", "vars": {"a": "@/etc/passwd"}})
    add({"id": "both", "expr": "a", "program": "a", "vars": {"a": 1}})
    add({"id": "neither", "vars": {"a": 1}})
    add({"id": "expr-type", "expr": 3})
    add({"expr": "3*", "vars": {}})
    lines += [b"not json\n", b"[1, 2]\n", b'{"id": 1, "id": 2, "expr": "1"}\n',
              b'{"id": NaN, "expr": "1"}\n', b'{"id": 1e400, "expr": "1"}\n',
              b'{"id": "bad-utf8", "expr": "\xff"}\n', "\ufeff{\"expr\": \"1\"}\n".encode(),
              b"   \t\n", b'{"id": "long", "expr": "' + b"1+" * 20000 + b'1"}\n',
              b'{"id": 5, "expr": "x", "vars": {"x": [' + b"1, " * 12000 + b'1]}}\n',
              b'{"id": "deep", "expr": "1", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}\n",
              b' \t {"id": "spaces", "expr": "2*x", "vars": {"x": 1}} \r\n',
              b'{"id": "extra", "expr": "1"} x\n', b'{"id": "two", "expr": "1"}{"expr": "2"}\n',
              b'{"id": "nested-dup", "expr": "1", "vars": {"x": 1, "x": 2}}\n']
    # one shape again between the others, and the same program with other shapes and values
    add(_seed(99))
    add(_seed(100, grad=2.0))
    add({"id": 101, "expr": SEED, "vars": {"a": [1.0], "b": [2.0], "c": [3.0]}, "grad": 1})
    add(_seed(102, vars={"a": [-1.0, 0.0, 1e-7], "b": [1e9, -0.0, 2.0], "c": [0.0, -1.0, 1e16]}))
    add(_seed(103, check="none"))
    add(_seed(104))
    return lines
