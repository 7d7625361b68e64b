"""Replay the PyTorch reference suite through gradcalc.

`tests/reference/torch_reference.json` was recorded from real PyTorch by
`tests/reference/record_torch.py` (the cases and their hand-written torch builders are in
`tests/reference/cases.py`). This test needs no torch: it sends every case as one JSON Lines
stream to a real `python -m gradcalc -` subprocess (SPEC 5) and checks, per case, that the
output, every leaf's grad and every Jacobian agree with PyTorch, shapes exactly and numbers
within float64/float32 tolerances, with NaN equal to NaN and infinities of one sign equal.
A few cases also go through the in-process API, `gradcalc.compute(...)` (SPEC 6).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from clirun import cli

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "reference" / "torch_reference.json"

TOLERANCES = {
    "float64": {"rtol": 1e-7, "atol": 1e-10},
    "float32": {"rtol": 1e-4, "atol": 1e-6},
}

_DOC = json.loads(REFERENCE.read_text())
CASES = _DOC["cases"]
CASE_IDS = [c["id"] for c in CASES]

# In-process API cases: an expression, a program with a function, `of`, `repeat`, `wrt`,
# float32, a kink and a non-finite result.
API_CASE_IDS = [
    "op/seed-backward-gradients",
    "prog/fn-def-vector",
    "of/repeat",
    "wrt/two-of-three",
    "loss/ce-indices-f32",
    "kink/max-full-tie3-mat",
    "nonfinite/log-negative",
    "prog/seed-mean",
]


# ---------------------------------------------------------------- helpers
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode(x):
    """SPEC 4's strict JSON numbers (non-finite as strings) -> floats."""
    if isinstance(x, list):
        return [decode(v) for v in x]
    if isinstance(x, str):
        if x in _NONFINITE:
            return _NONFINITE[x]
        raise AssertionError(f"unexpected string where a number belongs: {x!r}")
    if isinstance(x, bool) or x is None:
        raise AssertionError(f"unexpected {x!r} where a number belongs")
    return float(x)


def as_array(x) -> np.ndarray:
    return np.asarray(decode(x), dtype=np.float64)


def request_for(case) -> dict:
    req = {"id": case["id"]}
    req.update(case["request"])
    req["check"] = "none"
    req["jacobian"] = True
    return req


def describe_mismatch(got: np.ndarray, want: np.ndarray, ok: np.ndarray, rtol, atol) -> str:
    bad = np.argwhere(~ok)
    lines = [f"{int((~ok).sum())} of {ok.size} elements differ (rtol={rtol}, atol={atol})"]
    for idx in bad[:6]:
        i = tuple(int(k) for k in idx)
        lines.append(f"  at {list(i)}: gradcalc {float(got[i])!r}, torch {float(want[i])!r}")
    if got.size <= 40:
        lines.append(f"  gradcalc: {got.tolist()}")
        lines.append(f"  torch:    {want.tolist()}")
    return "\n".join(lines)


def assert_close(what: str, got_json, want_json, dtype: str, strict: bool = False):
    """Numbers within the dtype's tolerances. `strict` (the edge cases) shrinks the absolute
    tolerance to 16 units of the smallest subnormal, so a 1e-300 is compared relatively, and
    wants a zero where torch has one to carry torch's sign."""
    tol = TOLERANCES[dtype]
    if strict:
        tol = dict(tol, atol=16 * float(np.finfo(dtype).smallest_subnormal))
    got = as_array(got_json)
    want = as_array(want_json)
    assert got.shape == want.shape, (
        f"{what}: shape {list(got.shape)} from gradcalc, torch has {list(want.shape)}")
    # isclose treats equal-signed infinities as equal; equal_nan makes NaN == NaN
    ok = np.isclose(got, want, rtol=tol["rtol"], atol=tol["atol"], equal_nan=True)
    if strict:
        ok &= ~((want == 0) & (got == 0) & (np.signbit(got) != np.signbit(want)))
    if not ok.all():
        raise AssertionError(f"{what}: values differ from torch\n" + describe_mismatch(got, want, ok, **tol))


def check_result(case, result):
    """Compare one SPEC 4 result object with the recorded PyTorch numbers."""
    assert isinstance(result, dict), f"result is not a JSON object: {result!r}"
    if "error" in result:
        err = result["error"]
        pytest.fail(f"gradcalc rejected the request: {json.dumps(err)}\n"
                    f"request: {json.dumps(case['request'])}")
    exp = case["expected"]
    dtype = case["request"].get("dtype", "float64")
    strict = case["id"].startswith("edge/")

    out = result.get("output")
    assert isinstance(out, dict), f"no output object in {sorted(result)}"
    assert list(out.get("shape", [None])) == exp["output"]["shape"], (
        f"output shape {out.get('shape')} from gradcalc, torch has {exp['output']['shape']}")
    assert_close("output value", out.get("value"), exp["output"]["value"], dtype, strict)
    assert out.get("name") == exp["output"]["name"], (
        f"output name {out.get('name')!r}, expected {exp['output']['name']!r}")

    grads = result.get("grads")
    assert isinstance(grads, dict), f"grads is {grads!r}"
    assert sorted(grads) == sorted(exp["grads"]), (
        f"grads for {sorted(grads)}, expected exactly {sorted(exp['grads'])}")
    for name, want in exp["grads"].items():
        assert_close(f"grad of {name}", grads[name], want, dtype, strict)

    jac = result.get("jacobian")
    assert isinstance(jac, dict), (
        f"jacobian is {jac!r} (note: {result.get('jacobian_note')!r})")
    assert sorted(jac) == sorted(exp["jacobian"]), (
        f"jacobian for {sorted(jac)}, expected exactly {sorted(exp['jacobian'])}")
    for name, want in exp["jacobian"].items():
        assert jac[name] is not None, f"jacobian of {name} is null: {result.get('jacobian_note')!r}"
        assert_close(f"jacobian wrt {name}", jac[name], want, dtype, strict)


# ---------------------------------------------------------------- the stream, run once
@pytest.fixture(scope="module")
def stream():
    """Run every case through one `python -m gradcalc -` process; results by id."""
    lines = "".join(json.dumps(request_for(c), allow_nan=False) + "\n" for c in CASES)
    proc = cli(["-"], lines, isolate=True, timeout=900)
    results = {}
    bad_lines = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad_lines.append(f"{exc}: {line[:200]}")
            continue
        if isinstance(obj, dict) and "id" in obj:
            results[obj["id"]] = obj
        else:
            bad_lines.append(line[:200])
    return {"proc": proc, "results": results, "bad_lines": bad_lines}


def _stream_context(stream) -> str:
    proc = stream["proc"]
    return (f"exit status {proc.status}; {len(stream['results'])} result lines of "
            f"{len(CASES)}; stderr: {proc.stderr[-1500:]!r}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_torch(stream, case):
    result = stream["results"].get(case["id"])
    if result is None:
        pytest.fail(f"no result line for this request ({_stream_context(stream)})")
    check_result(case, result)


def test_stream_is_clean(stream):
    """Every line of stdout is a JSON object, one per request, in order, and exit status 0."""
    proc = stream["proc"]
    assert not stream["bad_lines"], f"stdout lines that are not result objects: {stream['bad_lines'][:5]}"
    ids = [json.loads(line)["id"] for line in proc.stdout.splitlines() if line.strip()]
    assert ids == CASE_IDS, f"results out of order or missing ({_stream_context(stream)})"
    failed = [i for i, r in stream["results"].items() if "error" in r]
    assert not failed, f"{len(failed)} requests failed: {failed[:20]}"
    assert proc.status == 0, _stream_context(stream)


def test_reference_file_is_from_torch():
    assert _DOC["torch_version"].startswith("2.13"), _DOC["torch_version"]
    assert len(CASE_IDS) == len(set(CASE_IDS))
    assert REFERENCE.stat().st_size < 5_000_000


# ---------------------------------------------------------------- in-process API
def _api_result(case):
    import gradcalc

    req = case["request"]
    text = req["expr"] if "expr" in req else req["program"]
    kwargs = {"jacobian": True, "check": "none", "dtype": req.get("dtype", "float64")}
    for key in ("grad", "wrt", "of", "repeat"):
        if key in req:
            kwargs[key] = req[key]
    kwargs.update(req["vars"])
    result = gradcalc.compute(text, **kwargs)
    obj = result.to_json()
    if isinstance(obj, str):
        obj = json.loads(obj)
    return obj


@pytest.mark.parametrize("case_id", API_CASE_IDS)
def test_api_compute_matches_torch(case_id):
    case = next(c for c in CASES if c["id"] == case_id)
    check_result(case, _api_result(case))
