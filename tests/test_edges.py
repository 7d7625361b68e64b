"""The edges of floating point and of arrays (issue 14, items 10-12, 14 and 17), through a real
`python -m gradcalc` process.

The numbers are PyTorch's, recorded in tests/reference/torch_reference.json (the `edge/`
cases, compared strictly by test_reference.py); here: every op has an empty-array reference
case, and where torch refuses (it raises) gradcalc exits 2 with a one-line error of the right
kind, never a number torch would not give.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clirun import cli
from gradcalc.ops import OPS

REFERENCE = Path(__file__).resolve().parent / "reference" / "torch_reference.json"


def _called(op, expr: str) -> bool:
    if f"{op.name}(" in expr:
        return True
    token = op.syntax.replace("x", "").replace("[i]", "[")
    return bool(op.syntax) and token in expr


def test_every_op_has_an_empty_array_reference_case():
    cases = json.loads(REFERENCE.read_text())["cases"]
    exprs = [c["request"]["expr"] for c in cases
             if c["id"].startswith("edge/") and "empty" in c["id"]]
    missing = [name for name, op in OPS.items() if not any(_called(op, e) for e in exprs)]
    assert not missing, f"no empty-array torch reference for {missing}"


# (args, error kind, words the one-line reason must hold): torch raises on each of these
REFUSED = [
    (["binary_cross_entropy(p, t)", "p=[0.5, 1.5]", "t=[0, 1]"], "value", "input"),
    (["binary_cross_entropy(p, t)", "p=[0.5, 0.5]", "t=[0, -0.5]"], "value", "target"),
    (["binary_cross_entropy(p, t)", "p=[0.5, nan]", "t=[0, 1]"], "value", "between 0 and 1"),
    (["x[::-1]", "x=1,2,3", "-g", "1"], "call", "greater than zero"),
    (["x[3:0:-1]", "x=1,2,3,4", "-g", "1"], "call", "greater than zero"),
    (["norm(x, p=inf)", "x=[]"], "call", "inf-norm"),
    (["norm(x, p=-inf)", "x=[]"], "call", "inf-norm"),
    (["norm(c[2:], p=inf, dim=0)", "c=[[1, 2], [3, 4]]", "-g", "1"], "call", "dim 0 of size 0"),
    (["max(x)", "x=[]"], "call", "empty array"),
    (["min(c[2:], dim=0)", "c=[[1, 2], [3, 4]]", "-g", "1"], "call", "dim 0 of size 0"),
    (["clamp(x)", "x=1,2"], "call", "at least one of 'min' or 'max'"),
    (["clamp(x, None, None)", "x=1,2"], "call", "at least one of 'min' or 'max'"),
]


@pytest.mark.parametrize("args, kind, words", REFUSED, ids=[" ".join(a[:1]) + f" {a[1]}"
                                                            for a, _, _ in REFUSED])
def test_where_torch_refuses_gradcalc_exits_2(args, kind, words):
    r = cli(args + ["--json"], isolate=True)
    r.assert_error(kind, json_too=True)
    assert words in r.message, r.message


def test_non_scalar_output_error_says_scalar():
    """SPEC 1: the words PyTorch users search for."""
    r = cli(["x * 2", "x=1,2"], isolate=True)
    r.assert_error("usage")
    assert "only for scalar outputs" in r.message, r.message


def test_erf_at_the_top_of_the_float_range_is_one():
    """erf(1e308) was NaN (its tail's y * 16 overflowed), with both checks passing."""
    r = cli(["erf(x)", "x=1e308,-1e308,1.7976931348623157e308", "-g", "1", "--check", "all",
             "--json"], isolate=True)
    assert r.status == 0, r.stderr
    out = r.json()
    assert out["output"]["value"] == [1.0, -1.0, 1.0]
    assert out["grads"]["x"] == [0.0, 0.0, 0.0]


def test_cross_entropy_over_zero_classes_is_nan_as_torchs():
    """torch 2.13: F.cross_entropy(zeros(1, 0), zeros(1, 0)) is tensor(nan) (its mean divides
    by numel / classes = 0 / 0) and the grad an empty (1, 0) tensor; it was a crash here."""
    r = cli(["cross_entropy(x, t)", "x=[[]]", "t=[[]]", "--json"], isolate=True)
    assert r.status == 0, r.stderr
    obj = r.json()
    assert obj["output"]["value"] == "NaN" and obj["grads"]["x"] == [[]]
