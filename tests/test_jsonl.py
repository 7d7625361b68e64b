"""JSON Lines mode, `gradcalc -` (SPEC 5 and 8): one request object per stdin line, one
result per stdout line, in order.

Covered: ids echoed exactly (0, "", false, null, floats, objects), bad lines answered with an
error object while the stream goes on, blank lines skipped, command-line options as the
defaults of every request (and a request's own fields over them), every request field, the
final exit status (2 if any request failed, else 1 if any check disagreed, else 0), nothing
on stderr per request, and flushing line by line, proved with a real subprocess that is
sent the next request only after it answered the previous one.

Expected numbers are derived by hand in the comments beside them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from clirun import cli, strict_json

ROOT = Path(__file__).resolve().parent.parent


def stream(lines, *options):
    """Run `gradcalc - OPTIONS` in-process (the shared runner) on `lines` (dicts are dumped,
    strings sent as is). Returns (exit status, [result objects], stderr)."""
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    r = cli(["-", *options], text)
    return r.status, r.json_lines(), r.stderr


def one(req, *options):
    code, results, err = stream([req], *options)
    assert len(results) == 1
    return code, results[0]


# ---------------------------------------------------------------- results and ids
def test_seed_request_of_spec_5():
    req = {"id": 7, "expr": "3*a + 2*b*b + log(c)",
           "vars": {"a": [1, 2, 3], "b": [3, 4, 5], "c": "linspace(6,8,3)"},
           "grad": [0.1, 1.0, 0.0001], "wrt": ["a", "b", "c"], "of": None, "repeat": 1,
           "check": "none", "dtype": "float64", "seed": 0, "jacobian": True}
    code, r = one(req)
    assert code == 0
    assert r["id"] == 7 and list(r)[0] == "id"
    # c = linspace(6, 8, 3) = [6, 7, 8]; grads v * (3, 4b, 1/c)
    np.testing.assert_allclose(r["grads"]["a"], [0.3, 3.0, 0.0003], rtol=1e-15)
    np.testing.assert_allclose(r["grads"]["b"], [1.2, 16.0, 0.002], rtol=1e-15)
    np.testing.assert_allclose(r["grads"]["c"], [0.1 / 6, 1 / 7, 1e-4 / 8], rtol=1e-15)
    assert r["jacobian"]["b"] == [[12.0, 0.0, 0.0], [0.0, 16.0, 0.0], [0.0, 0.0, 20.0]]
    assert r["output"]["shape"] == [3]


def test_result_is_the_json_object_plus_id():
    # the same calculation through `--json` gives the same object, without the id
    single = cli(["sum(x*w)", "x=1,2", "w=3,4", "--json", "--check", "none"]).ok().json()
    _, r = one({"id": "q", "expr": "sum(x*w)", "vars": {"x": [1, 2], "w": [3, 4]},
                "check": "none"})
    assert r.pop("id") == "q"
    assert r == single


@pytest.mark.parametrize("rid", [0, "", False, None, 1.5, -3, "a\nb\u00e9", [1, [2]],
                                 {"k": {"n": None}}, 12345678901234567890, True, "0"])
def test_id_echoed_exactly(rid):
    code, r = one({"id": rid, "expr": "x*2", "vars": {"x": 1}, "check": "none"})
    assert code == 0
    assert "id" in r and r["id"] == rid and type(r["id"]) is type(rid)
    # the error object echoes it too
    code, r = one({"id": rid, "expr": "x*"})
    assert code == 2 and r["id"] == rid and type(r["id"]) is type(rid)
    assert r["error"]["kind"] == "syntax"


def test_no_id_no_id_key():
    _, r = one({"expr": "x*2", "vars": {"x": 1}, "check": "none"})
    assert "id" not in r and r["grads"] == {"x": 2.0}


# ---------------------------------------------------------------- bad lines, blank lines
BAD = [
    ("not json", "usage"),
    ("[1, 2]", "usage"),                                          # not an object
    ('"expr"', "usage"),
    ('{"id": 1}', "usage"),                                       # no expr/program
    ('{"id": 1, "expr": "x", "program": "x"}', "usage"),          # both
    ('{"id": 1, "expr": 3}', "usage"),                            # wrong type
    ('{"id": 1, "expr": "x", "vars": [1]}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "repeat": "2"}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "repeat": 0}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "dtype": "float16"}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "check": "maybe"}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "jacobian": "yes"}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "wrt": [1]}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": NaN}}', "usage"),    # a bare NaN is not JSON
    ('{"id": 1, "expr": "x*2", "vars": {"x": Infinity}}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": "@-"}}', "usage"),   # no stdin inside a request
    ('{"id": 1, "expr": "x*2", "vars": {"x": "@/etc/hostname"}}', "usage"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": [1, null]}}', "value"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": true}}', "value"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": [[1, 2], [3]]}}', "value"),
    ('{"id": 1, "expr": "sum(x", "vars": {"x": 1}}', "syntax"),
    ('{"id": 1, "expr": "sum(q)"}', "name"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": [1, 2]}}', "usage"),   # non-scalar, no grad
    ('{"id": 1, "expr": "x*2", "vars": {"x": [1, 2]}, "grad": [1, 2, 3]}', "shape"),
    ('{"id": 1, "expr": "x*2", "vars": {"x": 1}, "of": "nothing"}', "usage"),
]


@pytest.mark.parametrize("line,kind", BAD, ids=[b[0][:60] for b in BAD])
def test_bad_line_answered_and_stream_goes_on(line, kind):
    good = {"id": "after", "expr": "x*3", "vars": {"x": 2}, "check": "none"}
    code, results, err = stream([line, good])
    assert code == 2
    assert len(results) == 2
    bad, ok = results
    assert set(bad) <= {"id", "error"} and "error" in bad
    assert bad["error"]["kind"] == kind, bad
    assert isinstance(bad["error"]["message"], str) and bad["error"]["message"]
    assert "position" in bad["error"]
    assert ok["id"] == "after" and ok["grads"] == {"x": 3.0}
    assert err == ""                                    # nothing on stderr per request


def test_error_position_in_request_text():
    _, r = one({"id": 1, "program": "a = 1\nb = 2 +* a"})
    err = r["error"]
    assert (err["kind"], err["position"], err["line"], err["column"]) == ("syntax", 13, 2, 8)   # 6 chars on line 1, then "b = 2 +"
    _, r = one({"id": 2, "expr": "sum(q)"})
    assert (r["error"]["kind"], r["error"]["position"]) == ("name", 4)


def test_invalid_utf8_line_is_answered():
    req = json.dumps({"id": 2, "expr": "x*2", "vars": {"x": 1}, "check": "none"}).encode()
    r = cli(["-"], b"\xff\xfe\n" + req + b"\n")
    lines = r.json_lines()
    assert r.status == 2
    assert lines[0]["error"]["kind"] == "usage"
    assert lines[1]["id"] == 2 and lines[1]["grads"] == {"x": 2.0}


def test_blank_lines_are_skipped():
    req = {"expr": "x*2", "vars": {"x": 1}, "check": "none"}
    code, results, _ = stream(["", "   ", "\t", {**req, "id": 1}, "", {**req, "id": 2}, "\r"])
    assert code == 0
    assert [r["id"] for r in results] == [1, 2]


def test_results_in_order():
    reqs = [{"id": i, "expr": "x*k", "vars": {"x": 1, "k": i}, "wrt": ["x"], "check": "none"}
            for i in range(12)]
    code, results, _ = stream(reqs)
    assert code == 0
    assert [r["id"] for r in results] == list(range(12))
    assert [r["grads"]["x"] for r in results] == [float(i) for i in range(12)]


def test_repeated_program_sees_each_requests_values():
    # the same text many times in one stream (what a compiled-program cache must not get
    # wrong): each request's own values, dtype, wrt and seed decide its numbers
    prog = "x = 2\ny = x * x"
    reqs = [
        {"id": 1, "program": prog, "vars": {"x": 3}},              # x = 3: y = 9, dy/dx = 6
        {"id": 2, "program": prog},                                  # the program's x = 2
        {"id": 3, "program": prog, "vars": {"x": 5}},              # 25, 10
        {"id": 4, "program": prog, "vars": {"x": 5}, "dtype": "float32"},
        {"id": 5, "expr": "x * w", "vars": {"x": 1, "w": 2}, "wrt": ["x"]},   # d/dx = w
        {"id": 6, "expr": "x * w", "vars": {"x": 1, "w": 7}, "wrt": ["x"]},
        {"id": 7, "expr": "x * w", "vars": {"x": 1, "w": 7}},
        {"id": 8, "expr": "x[0] * w", "vars": {"x": [3, 2], "w": 7}},  # d/dw = x[0] = 3
        {"id": 9, "expr": "x[0] * w", "vars": {"x": [[3, 2], [1, 1]], "w": 7}, "grad": 1},
    ]
    code, r, _ = stream([{**q, "check": "none"} for q in reqs])
    assert code == 0
    assert [(x["output"]["value"], x["grads"]) for x in r[:4]] == [
        (9.0, {"x": 6.0}), (4.0, {"x": 4.0}), (25.0, {"x": 10.0}), (25.0, {"x": 10.0})]
    assert r[3]["dtype"] == "float32"
    assert [x["grads"] for x in r[4:7]] == [{"x": 2.0}, {"x": 7.0}, {"x": 7.0, "w": 1.0}]
    assert r[7]["grads"] == {"x": [7.0, 0.0], "w": 3.0}
    # x is now 2-D: x[0] is the row [3, 2], so the output is (2,) and w's grad is 3 + 2
    assert r[8]["output"]["shape"] == [2] and r[8]["grads"]["w"] == 5.0
    # rand: the request's seed decides the draw
    rq = {"expr": "sum(rand(4) * x)", "vars": {"x": 1}, "check": "none"}
    _, (a, b, c, d), _ = stream([{**rq, "seed": 1}, {**rq, "seed": 2}, {**rq, "seed": 1}, rq])
    assert a["output"]["value"] == c["output"]["value"] != b["output"]["value"]


def test_last_line_without_newline():
    data = json.dumps({"id": 4, "expr": "x*2", "vars": {"x": 1}, "check": "none"})
    r = cli(["-"], data)
    assert r.status == 0
    assert r.json()["id"] == 4


# ---------------------------------------------------------------- fields and defaults
def test_vars_in_every_json_value_form():
    # a = 2 (number), b = [1, 2] (list), c = "3,4" (comma list), d = "ones(2)" (constant
    # expression): sum(a*b*c*d) = 2*1*3 + 2*2*4 = 22; d/db = a*c*d = [6, 8]
    _, r = one({"expr": "sum(a*b*c*d)", "vars": {"a": 2, "b": [1, 2], "c": "3,4",
                                                  "d": "ones(2)"}, "check": "none"})
    assert r["output"]["value"] == 22.0
    assert r["grads"]["a"] == 11.0                      # sum(b*c*d) = 3 + 8
    assert r["grads"]["b"] == [6.0, 8.0]
    assert r["grads"]["c"] == [2.0, 4.0]
    assert r["grads"]["d"] == [6.0, 16.0]


def test_grad_forms():
    base = {"expr": "x*3", "vars": {"x": [1, 2, 3]}, "check": "none"}
    for g in ([1, 0, 2], "1,0,2", "[1, 0, 2]"):
        assert one({**base, "grad": g})[1]["grads"]["x"] == [3.0, 0.0, 6.0]
    # one number broadcasts; a constant expression
    assert one({**base, "grad": 2})[1]["grads"]["x"] == [6.0, 6.0, 6.0]
    assert one({**base, "grad": "linspace(0,1,3)"})[1]["grads"]["x"] == [0.0, 1.5, 3.0]


def test_program_of_repeat_wrt():
    # program: y = x*w; z = sum(y**2). --of y with v = [1, 0], repeated 3 times:
    # dy/dx = diag(w) -> grad x = 3 * [w0, 0] = [9, 0]; w is not in wrt
    req = {"id": "p", "program": "y = x * w\nz = sum(y**2)", "vars": {"x": [1, 2], "w": [3, 4]},
           "of": "y", "grad": [1, 0], "repeat": 3, "wrt": ["x"], "check": "none"}
    _, r = one(req)
    assert r["output"] == {"name": "y", "shape": [2], "value": [3.0, 8.0]}
    assert r["grads"] == {"x": [9.0, 0.0]}
    assert r["repeat"] == 3


def test_program_with_option_line_and_function():
    # the #: line sets the cotangent; f(x, w) = 2 x w0 + x^2 w1 with x = [1, 2] (vector),
    # w = [1, 1]: out = [3, 8]; d out_i / d x_i = 2 w0 + 2 x_i w1 = [4, 6]; v = [1, 0.5]
    prog = "#: --grad 1,0.5\nf(x, w) = 2*x*w[0] + x**2*w[1]\nout = f(x, w)"
    _, r = one({"program": prog, "vars": {"x": [1, 2], "w": [1, 1]}, "check": "none"})
    assert r["cotangent"] == [1.0, 0.5]
    assert r["output"]["value"] == [3.0, 8.0]
    assert r["grads"]["x"] == [4.0, 3.0]
    # w: d out_i / d w = [2 x_i, x_i^2]; v-weighted: 1*[2, 1] + 0.5*[4, 4] = [4, 3]
    assert r["grads"]["w"] == [4.0, 3.0]


def test_request_fields_override_the_programs_option_line():
    prog = "#: --grad 1,2 --repeat 2\nx = [1, 2]\ny = x * 3"
    # from the #: line: v = [1, 2], two calls: 2 * 3 * v = [6, 12]
    _, r = one({"program": prog, "check": "none"})
    assert (r["cotangent"], r["repeat"], r["grads"]["x"]) == ([1.0, 2.0], 2, [6.0, 12.0])
    # the request's own fields win: v = [1, 1], one call
    _, r = one({"program": prog, "check": "none", "repeat": 1, "grad": [1, 1]})
    assert (r["cotangent"], r["repeat"], r["grads"]["x"]) == ([1.0, 1.0], 1, [3.0, 3.0])


def test_jacobian_field():
    base = {"expr": "x*2", "vars": {"x": [1, 2]}, "grad": 1, "check": "none"}
    assert one({**base, "jacobian": False})[1]["jacobian"] is None
    assert one({**base, "jacobian": True})[1]["jacobian"] == {"x": [[2.0, 0.0], [0.0, 2.0]]}


def test_seed_field_repeats_rand():
    req = {"program": "x = rand(3)\ny = sum(x)", "of": "x", "grad": 1, "check": "none"}
    a = one({**req, "seed": 5})[1]["output"]["value"]
    b = one({**req, "seed": 5})[1]["output"]["value"]
    c = one({**req, "seed": 6})[1]["output"]["value"]
    assert a == b and a != c


def test_command_line_options_are_defaults():
    # gradcalc - -g 1 --dtype float32: both apply to a request that does not say otherwise
    reqs = [{"id": 1, "expr": "x/3", "vars": {"x": [1, 2]}},
            {"id": 2, "expr": "x/3", "vars": {"x": [1, 2]}, "dtype": "float64",
             "grad": [1, 0]}]
    code, (r1, r2), err = stream(reqs, "-g", "1", "--dtype", "float32", "--check", "none")
    assert code == 0 and err == ""
    # float32: 1/3 = 11184811 * 2**-25 (2**25 / 3 = 11184810.67 rounds up)
    assert r1["dtype"] == "float32" and r1["cotangent"] == [1.0, 1.0]
    assert r1["grads"]["x"] == [11184811 * 2.0**-25] * 2
    assert r2["dtype"] == "float64" and r2["cotangent"] == [1.0, 0.0]
    assert r2["grads"]["x"] == [1 / 3, 0.0]
    # --repeat and --wrt as defaults
    code, (r,), _ = stream([{"expr": "sum(a*b)", "vars": {"a": [1, 2], "b": [3, 4]}}],
                           "--repeat", "2", "--wrt", "a", "--check", "none")
    assert r["grads"] == {"a": [6.0, 8.0]} and r["repeat"] == 2


def test_name_value_arguments_are_refused():
    r = cli(["-", "x=1"], b"")
    assert r.status == 2 and "request" in r.stderr


# ---------------------------------------------------------------- exit statuses
def test_exit_status_ok_disagree_failed(monkeypatch):
    from gradcalc.ops import OPS
    # a deliberately wrong rule for exp (2 e^x), as a bug would be: the numeric check of any
    # request through exp disagrees; sin's rule is untouched
    monkeypatch.setattr(OPS["exp"], "vjps", (lambda g, ans, x: 2.0 * g * ans,))
    ok = {"expr": "sin(x)", "vars": {"x": 1}, "check": "numeric"}
    disagree = {"expr": "exp(x)", "vars": {"x": 1}, "check": "numeric"}
    bad = {"expr": "sin(x"}
    assert stream([ok, ok])[0] == 0
    code, results, _ = stream([ok, disagree, ok])
    assert code == 1
    assert results[1]["checks"]["numeric"]["passed"] is False
    assert stream([ok, disagree, bad])[0] == 2
    assert stream([bad, disagree])[0] == 2
    assert stream([])[0] == 0


def test_non_finite_results_are_strings():
    # log(0) = -inf, its grad 1/0 = +inf; log(-1) = NaN: results, not errors
    code, r = one({"expr": "log(x)", "vars": {"x": [0, -1]}, "grad": 1, "check": "none"})
    assert code == 0
    assert r["output"]["value"] == ["-Infinity", "NaN"]
    assert r["grads"]["x"] == ["Infinity", -1.0]


# ---------------------------------------------------------------- a real process
def _popen(*options):
    """Popen, not the shared runner: the test writes each request after reading an answer."""
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.Popen([sys.executable, "-m", "gradcalc", "-", *options],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=ROOT)


def _readline(proc, timeout=30.0):
    """One line of the process's stdout, failing (not hanging) if none comes in time."""
    box = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        proc.kill()
        raise AssertionError("no result line within the timeout: output is not flushed "
                             "line by line")
    return box[0]


def test_subprocess_flushes_line_by_line():
    proc = _popen("--check", "none")
    try:
        # each request is sent only after the previous answer was read: with block-buffered
        # output this would wait forever (the timeout fails the test instead)
        for i, x in enumerate([1.0, 2.0, 3.0]):
            proc.stdin.write(json.dumps({"id": i, "expr": "x*x", "vars": {"x": x}}) + "\n")
            proc.stdin.flush()
            r = strict_json(_readline(proc))
            assert r["id"] == i and r["grads"]["x"] == 2 * x       # d(x^2)/dx = 2x
        # a bad line in the middle is answered at once, and the stream goes on
        proc.stdin.write("{oops\n")
        proc.stdin.flush()
        assert strict_json(_readline(proc))["error"]["kind"] == "usage"
        proc.stdin.write(json.dumps({"id": 0, "expr": "x*5", "vars": {"x": 1}}) + "\n")
        proc.stdin.flush()
        r = strict_json(_readline(proc))
        assert r == {**r, "id": 0} and r["grads"]["x"] == 5.0
        proc.stdin.close()
        assert proc.wait(timeout=30) == 2                 # one request failed
        assert proc.stdout.read() == ""
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()


def test_subprocess_stream_of_mixed_requests():
    lines = [
        json.dumps({"id": 0, "expr": "sum(z**2)", "vars": {"z": "linspace(1,5,5)"}}),
        "",
        json.dumps({"id": "", "expr": "x*"}),
        json.dumps({"id": False, "expr": "sum(x)", "vars": {"x": [1, 2]}}),
    ]
    p = cli(["-", "--check", "none"], "\n".join(lines) + "\n", isolate=True, timeout=60)
    assert p.status == 2
    out = p.json_lines()
    assert [r["id"] for r in out] == [0, "", False]
    # sum(z^2) over z = 1..5: 55; grad 2z
    assert out[0]["output"]["value"] == 55.0
    assert out[0]["grads"]["z"] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert out[1]["error"]["kind"] == "syntax" and out[1]["error"]["position"] == 2
    assert out[2]["grads"]["x"] == [1.0, 1.0]
    assert p.stderr == ""


def test_unknown_fields_run_and_are_named_in_warnings():
    """A field gradcalc does not know is ignored, and the result says so: a misspelt
    "grads" runs with the implied cotangent 1 (x*3 at x=2 -> grad 3) and is named."""
    line = '{"id": "u", "expr": "x*3", "vars": {"x": 2}, "grads": 5, "note": "mine"}\n'
    proc = cli(["-"], line, isolate=True, timeout=60)
    assert proc.status == 0, proc.stderr
    r = proc.json()
    assert r["id"] == "u" and r["grads"] == {"x": 3.0}
    assert len(r["warnings"]) == 2
    assert r["warnings"][0].startswith('unknown field "grads" ignored')
    assert r["warnings"][1].startswith('unknown field "note" ignored')


def test_a_stream_answers_each_line_as_a_stream_of_that_line_alone():
    # a stream compiles each program once and replays what it decided (api.Decisions) for
    # later requests of the program and option set; every answer line must be, byte for
    # byte, the line a stream of that request alone writes (fresh cache), whatever the
    # options, errors, warnings and shapes of the requests around it
    seed = "3*a + 2*b*b + log(c)"
    v3 = {"a": [1, 2, 3], "b": [3, 4, 5], "c": [6, 7, 8]}
    reqs = [
        {"id": 0, "expr": seed, "vars": v3, "grad": [0.1, 1.0, 0.0001]},
        {"id": 1, "expr": seed, "vars": v3, "grad": [0.1, 1.0, 0.0001], "jacobian": False},
        {"id": 2, "expr": seed, "vars": v3, "grad": 1, "wrt": ["b"], "jacobian": True},
        {"id": 3, "expr": seed, "vars": v3},                          # no grad: an error
        {"id": 4, "expr": seed, "vars": v3, "grad": [1, 2]},          # wrong shape
        {"id": 5, "expr": seed, "vars": v3, "grad": 1, "wrt": ["q"]},
        {"id": 6, "expr": seed, "vars": v3, "jacobian": True},        # J alone
        {"id": 7, "expr": seed, "vars": {"a": [1, 2], "b": [3, 4], "c": [0, -1]}, "grad": 1},
        {"id": 8, "expr": seed, "vars": v3, "grad": 2, "repeat": 2, "dtype": "float32"},
        {"id": 9, "expr": seed, "vars": v3, "grad": 1, "tangent": {"a": [1, 0, 0]}},
        {"id": 10, "expr": seed, "vars": v3, "grad": 1, "hessian": True, "wrt": ["b"]},
        {"id": 11, "expr": seed, "vars": v3, "grad": 1, "gard": 2},   # a warning
        {"id": 12, "expr": seed, "vars": v3, "grad": 1, "check": "numeric"},
        {"id": 13, "program": "y = a * b\nz = sum(y)", "vars": {"a": [1, 2], "b": [3, 4]},
         "of": "y", "grad": [1, 2]},
        {"id": 14, "program": "y = a * b\nz = sum(y)", "vars": {"a": [1, 2], "b": [3, 4]}},
        {"id": 15, "expr": seed, "vars": {"a": [1, 2, 3], "b": [0, 1, 2], "c": [1, 1, 1]},
         "grad": [0.1, 1.0, 0.0001]},
        # the resolved settings are kept per text and fields but grad: true is not 1 for
        # "repeat" though they are equal, and the `#:` line's grad gives way to a request's
        {"id": 16, "expr": seed, "vars": v3, "grad": 1, "repeat": 1},
        {"id": 17, "expr": seed, "vars": v3, "grad": 1, "repeat": True},
        {"id": 18, "program": "#: --grad 2\ny = a * b", "vars": {"a": 1, "b": 3}},
        {"id": 19, "program": "#: --grad 2\ny = a * b", "vars": {"a": 1, "b": 3}, "grad": 5},
    ]
    together = cli(["-", "--check", "none"], "".join(json.dumps(q) + "\n" for q in reqs * 2))
    lines = together.stdout.splitlines()
    assert len(lines) == 2 * len(reqs)
    for i, q in enumerate(reqs):
        alone = cli(["-", "--check", "none"], json.dumps(q) + "\n").stdout.splitlines()
        assert lines[i] == lines[i + len(reqs)] == alone[0], q["id"]
    assert '"error"' in lines[3] and '"error"' in lines[4] and '"error"' in lines[5]
    assert '"warnings"' in lines[11] and '"NaN"' in lines[7]
    assert '"error"' not in lines[16] and '"error"' in lines[17]
    # dy/da = cotangent * b: 2 * 3 from the #: line, 5 * 3 from the request
    assert [json.loads(lines[i])["grads"]["a"] for i in (18, 19)] == [6.0, 15.0]


def test_a_key_given_twice_is_named_at_any_depth():
    for line, key in (('{"expr": "x", "expr": "y", "vars": {"x": 1, "y": 2}}', "expr"),
                      ('{"expr": "x", "vars": {"x": 1, "y": 2, "x": 3}}', "x"),
                      ('{"a": 1, "b": 2, "b": 3, "a": 4}', "b")):     # the first repeated
        code, r = one(line)
        assert code == 2 and r["error"]["kind"] == "usage"
        assert f'the key \\"{key}\\" appears twice' in json.dumps(r["error"]["message"])
