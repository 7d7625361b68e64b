"""Derivations kept across processes (gradcalc/checks/stored.py, issue 15 item 1).

A second process with the same program reads the derivation back instead of importing
sympy; its report must be the fresh check's, number for number (a passing one and a failing
one), and a file that is corrupt, foreign, stale or crafted must be a miss, never an error
or another verdict. Each run is a fresh interpreter: only there is sympy not yet imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# one calculation in a fresh process: the symbolic report, and whether sympy was imported;
# "wrong" scales mul's first rule by 1.5 (as test_checks does), so the check must fail
PROBE = """
import json, sys
import numpy as np
import gradcalc
from gradcalc.ops import OPS
spec = json.loads(sys.argv[1])
if spec.get("wrong"):
    rule = OPS["mul"].vjps
    def wrong(g, ans, *args, **params):
        return 1.5 * np.asarray(rule[0](g, ans, *args, **params))
    OPS["mul"].vjps = (wrong, rule[1])
if spec.get("usual_only"):     # the per-element way refused: only the usual one may answer
    from gradcalc.checks.verdict import Verdict
    def refused(self, p):
        raise AssertionError("fed the per-element way")
    Verdict._feed_elementwise = refused
r = gradcalc.compute(spec["expr"], grad=spec.get("grad"), check="symbolic",
                     dtype=spec.get("dtype"), **spec["vars"])
print(json.dumps({"symbolic": r.checks["symbolic"], "sympy": "sympy" in sys.modules}))
"""

SEED = {"expr": "3*a + 2*b*b + log(c)", "grad": [0.1, 1.0, 1e-4],
        "vars": {"a": [1, 2, 3], "b": [3, 4, 5], "c": [6, 7, 8]}}
SMOOTH = [
    SEED,
    {"expr": "sin(x)*x**2", "vars": {"x": 1.5}},
    {"expr": "exp(-a*a) + tanh(b)/a + sqrt(b) + b**-0.5 + a**3.5 + atan(a)*cosh(b)",
     "grad": [1.0, -2.0], "vars": {"a": [0.5, 2.0], "b": [1.0, 4.0]}},
    {"expr": "sigmoid(x) + cos(x)*sinh(y) + x/y", "grad": [1.0, 1.0, 1.0],
     "vars": {"x": [-1.0, 0.5, 2.0], "y": 3.0}},
    dict(SEED, dtype="float32"),
    dict(SEED, wrong=True),                               # a failing verdict, kept and read
]


def run(spec, cache) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GRADCALC_NO_CACHE"}
    env.update(PYTHONPATH=ROOT, GRADCALC_CACHE_DIR=str(cache))
    if cache is None:
        env["GRADCALC_NO_CACHE"] = "1"
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def kept_files(cache):
    d = cache / "derivations"
    return sorted(d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("spec", SMOOTH, ids=[s["expr"][:20] + str(s.get("dtype", "")) +
                                              ("-wrong" if s.get("wrong") else "")
                                              for s in SMOOTH])
def test_a_kept_derivation_gives_the_fresh_verdict_without_sympy(spec, tmp_path):
    fresh = run(spec, None)
    first = run(spec, tmp_path)                  # derives, and keeps
    assert len(kept_files(tmp_path)) == 1
    second = run(spec, tmp_path)                 # reads it back
    assert fresh["sympy"] and first["sympy"] and not second["sympy"]
    assert second["symbolic"] == first["symbolic"] == fresh["symbolic"]
    assert fresh["symbolic"]["passed"] is (not spec.get("wrong"))


def test_a_kept_derivation_takes_the_usual_way_as_a_fresh_check_does(tmp_path):
    # finite values, nothing at a kink: the leaves are compared block by block
    # (Verdict.feed_usual), not fed the per-element way a flagged point needs, which made a
    # stream read back from the store slower than deriving afresh; a refusal there would
    # end in a fresh derivation, with sympy imported
    run(SEED, tmp_path)
    fresh = run(dict(SEED, usual_only=True), None)
    kept = run(dict(SEED, usual_only=True), tmp_path)
    assert fresh["sympy"] and not kept["sympy"]
    assert kept["symbolic"] == fresh["symbolic"] and kept["symbolic"]["passed"] is True


def test_the_failing_verdict_read_back_has_its_numbers(tmp_path):
    # by hand: through the scaled rule b's Jacobian is 5*b on the diagonal, sympy's 4*b, so
    # at b = 5 the error is 5 (a fifth of 25); b's grad 5*b*v against 4*b*v: 1.5 vs 1.2
    wrong = dict(SEED, wrong=True)
    run(wrong, tmp_path)
    sym = run(wrong, tmp_path)["symbolic"]
    assert sym["passed"] is False and sym["max_abs_error"] == 5.0
    assert sym["max_rel_error"] == 0.2 and sym["disagreements_total"] == 6
    first = sym["disagreements"][0]
    assert first["leaf"] == "b" and first["in"] == "grad" and first["index"] == [0]
    assert first["autograd"] == pytest.approx(1.5) and first["symbolic"] == pytest.approx(1.2)


@pytest.mark.parametrize("spec", [
    {"expr": "abs(x)*y", "vars": {"x": [0.0, 1.0], "y": [2.0, 3.0]}, "grad": [1.0, 1.0]},
    {"expr": "relu(x) + x", "vars": {"x": [-1.0, 2.0]}, "grad": [1.0, 1.0]},
])
def test_a_derivative_with_a_switch_is_not_kept(spec, tmp_path):
    # sign, Heaviside: their ties are flagged and resolved each way, by a fresh check only
    fresh = run(spec, None)
    first = run(spec, tmp_path)
    second = run(spec, tmp_path)
    assert kept_files(tmp_path) == [] and second["sympy"]
    assert second["symbolic"] == first["symbolic"] == fresh["symbolic"]


def test_a_kept_derivation_with_a_value_that_is_not_finite_is_derived_afresh(tmp_path):
    # 1/x at 0: the fresh check flags it; the kept one gives way to it there
    spec = {"expr": "log(x) + x", "vars": {"x": [0.0, 1.0]}, "grad": [1.0, 1.0]}
    fresh = run(spec, None)
    run(spec, tmp_path)
    assert len(kept_files(tmp_path)) == 1
    second = run(spec, tmp_path)
    assert second["sympy"] and second["symbolic"] == fresh["symbolic"]
    ok = dict(spec, vars={"x": [0.5, 1.0]})             # the same program, finite values
    third = run(ok, tmp_path)
    assert not third["sympy"] and third["symbolic"] == run(ok, None)["symbolic"]


def _crafted(nodes):
    return lambda d: dict(d, leaves=dict(d["leaves"], b=dict(d["leaves"]["b"], nodes=nodes)))


@pytest.mark.parametrize("spoil", [
    lambda d: b"\x00\xff not json",
    lambda d: json.dumps(d).encode()[:40],                                 # truncated
    lambda d: dict(d, format=d["format"] + 1),                             # another version
    lambda d: dict(d, key="0" * 64),                                       # another program's
    lambda d: dict(d, leaves={}),
    _crafted([["__import__", 0]]),                                         # an unknown head
    _crafted([["in", 3]]),                                                 # no such input
    lambda d: dict(d, leaves=dict(d["leaves"], b=dict(d["leaves"]["b"], inputs=["zz"]))),
    _crafted([["num", float("inf")]]),                                     # json's Infinity
    _crafted([["num", "nan"]]),
    _crafted([["num", 2.0], ["Mul", 0, 7]]),                               # a dangling index
    _crafted([["pow", "cube", 0, 0]]),
    _crafted("4*b"),
    lambda d: [1, 2, 3],
], ids=["bytes", "truncated", "format", "key", "leaves", "head", "input", "leaf", "inf",
        "nan", "index", "pow", "text", "list"])
def test_a_corrupt_or_foreign_file_is_a_miss(spoil, tmp_path):
    fresh = run(SEED, None)
    run(SEED, tmp_path)
    (path,) = kept_files(tmp_path)
    spoiled = spoil(json.loads(path.read_text()))
    path.write_bytes(spoiled if isinstance(spoiled, bytes) else json.dumps(spoiled).encode())
    again = run(SEED, tmp_path)
    assert again["sympy"] and again["symbolic"] == fresh["symbolic"]
    # ... and the miss wrote the derivation whole again
    assert not run(SEED, tmp_path)["sympy"]


def test_another_programs_file_under_this_name_is_a_miss(tmp_path):
    other = {"expr": "3*a + 2*b*b + exp(c)", "grad": SEED["grad"], "vars": SEED["vars"]}
    run(other, tmp_path)
    (theirs,) = kept_files(tmp_path)
    run(SEED, tmp_path)
    mine = [p for p in kept_files(tmp_path) if p != theirs][0]
    mine.write_bytes(theirs.read_bytes())
    again = run(SEED, tmp_path)
    assert again["sympy"] and again["symbolic"] == run(SEED, None)["symbolic"]


def test_no_cache_keeps_nothing(cli, tmp_path):
    r = cli([*SEED_ARGS, "--json"], isolate=True, timeout=120,
            env={"GRADCALC_CACHE_DIR": str(tmp_path), "GRADCALC_NO_CACHE": "1"})
    assert r.ok().json()["checks"]["symbolic"]["passed"] is True
    assert kept_files(tmp_path) == []


SEED_ARGS = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1,0.0001"]


def test_the_human_view_from_a_kept_derivation_is_the_fresh_one(cli, tmp_path):
    env = {"GRADCALC_CACHE_DIR": str(tmp_path), "GRADCALC_NO_CACHE": None, "COLUMNS": "100",
           "NO_COLOR": "1"}
    outs = [cli(SEED_ARGS, isolate=True, timeout=120, env=env).ok().stdout for _ in range(2)]
    assert len(kept_files(tmp_path)) == 1
    assert outs[0] == outs[1] and "∂y/∂b = 4·b" in outs[1] and "✓ agrees" in outs[1]


def test_json_lines_from_a_kept_derivation_answer_as_fresh_ones(cli, tmp_path):
    # one program, new values per request: the first reads the kept derivation, the next
    # ones its copy in the program's memo (the file is not written again: no miss); in the
    # second stream a 1/0 gives way to a fresh derivation, and the requests after it too
    def stream(*values):
        return "".join(json.dumps({"expr": SEED["expr"], "grad": SEED["grad"],
                                   "vars": dict(SEED["vars"], a=a, c=c)}) + "\n"
                       for a, c in values).encode()
    finite = stream(([1, 2, 3], [6, 7, 8]), ([5, -1, 0], [0.5, 9, 2]), ([2, 2, 2], [1, 1, 1]))
    singular = stream(([1, 2, 3], [6, 7, 8]), ([1, 2, 3], [0.0, 7, 8]), ([2, 2, 2], [1, 1, 1]))
    env = {"GRADCALC_CACHE_DIR": str(tmp_path), "GRADCALC_NO_CACHE": None}
    cli(SEED_ARGS, isolate=True, timeout=120, env=env).ok()            # keeps the seed's
    (path,) = kept_files(tmp_path)
    written = path.stat().st_mtime_ns
    for requests in (finite, singular):
        kept = cli(["-"], requests, isolate=True, timeout=120, env=env).stdout.splitlines()
        fresh = cli(["-"], requests, isolate=True, timeout=120,
                    env={"GRADCALC_NO_CACHE": "1"}).stdout.splitlines()
        assert len(kept) == 3 and kept == fresh
        if requests is finite:
            assert path.stat().st_mtime_ns == written               # read, never missed
            assert all(json.loads(k)["checks"]["symbolic"]["passed"] for k in kept)
