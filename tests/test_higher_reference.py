"""Replay PyTorch 2.13's second order and forward mode through gradcalc.

`tests/reference/higher_reference.json` was recorded by `tests/reference/record_higher.py`:
for every small float64 case of cases.py, torch's Hessian of vᵀy, its HVP and JVP along a
fixed u, and the Taylor derivatives to order 4 by nested jacfwd. This test sends them all
as one JSON Lines stream to a real `python -m gradcalc -` and compares "hessian", "hvp",
"jvp" and "taylor" with torch's numbers (NaN equal to NaN), which pins torch's conventions
at kinks (relu'' = 0, abs'' = 0, clamp'' = 0, sqrt'' and log'' at 0).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_reference import as_array, assert_close

REFERENCE = Path(__file__).resolve().parent / "reference" / "higher_reference.json"
CASES = [c for c in json.loads(REFERENCE.read_text())["cases"] if "expected" in c]

# Where gradcalc differs from torch today, field by field. Each listed field must still
# differ (the test fails when one starts to agree: then take it off the list), and every
# other field must agree.
# torch's nested jacfwd at NaNs and infinities from order 2 on: gradcalc takes torch's
# efficient zero tangents (forward_mode.Nested) but its programs are not torch's formulas op
# for op: here a zero tangent meets an infinite partial in torch's formula but not in
# gradcalc's: log1p at -1 from order 3, where torch's log1p_backward adds 1 as a C++ Scalar
# (add.Scalar, whose tangent self_t.clone() makes an efficient zero real: checked with torch
# 2.13) and gradcalc's rule `x + 1.0` is add, which keeps it (agreeing needs an identity op
# without keeps_zero for the rules' Scalar adds: a new op with its own recorded cases);
# or the other way round: s / s at 1e-300, where torch's
# div formula (self_t - other_t * result) / other_p never overflows but gradcalc's
# transposed rule does (that formula in div's nested_jvp makes it agree, and breaks
# asin/acos at 1, whose rules write torch's rsqrt as 1 / sqrt: a div node cannot tell)
FORWARD_MODE_CONVENTIONS = {
    'kink/log1p-at-minus-1': ('taylor',),
    'edge/div/same-leaf-tiny': ('taylor',),
    # nested jacfwd of prod over a zero: from order 3 torch's numbers are not the derivatives
    # of the polynomial (prod([2, 0, 3, -1.5] + t·u) has d³/dt³ = 3.75, torch says 2.0);
    # gradcalc's are, deliberately (README)
    'red/prod/one-zero': ('taylor',),
    'red/prod/two-zeros': ('taylor',),
    'red/prod/zeros-dim': ('taylor',),
}
# torch's prod_backward under create_graph with zeros is prod_safe_zeros_backward, two
# cumprods whose double backward is cumprod_backward's GradMode formula, O(n^2) omitted
# products; gradcalc's traced rule keeps the O(n log n) scan of products (deliberately: an
# HVP of prod over a zero at n = 1,000 otherwise expands past the operation limit), whose
# derivative meets the infinite cotangent of sqrt at 0 that cumprod's masked path drops
SCAN_OF_PRODUCTS = {
    'nonfinite/prod-two-zeros-inf-cotangent': ('hessian',),
}
KNOWN = {**FORWARD_MODE_CONVENTIONS, **SCAN_OF_PRODUCTS}


@pytest.fixture(scope="module")
def answers():
    from clirun import cli
    lines = "".join(json.dumps(dict(c["request"], id=c["id"])) + "\n" for c in CASES)
    run = cli(["-"], lines, isolate=True, timeout=900)
    return {obj.get("id"): obj for obj in run.json_lines()}


def test_every_op_of_the_table_is_covered():
    from test_ops_table import ops_called
    from gradcalc.ops import OPS
    called = set()
    for c in CASES:
        called |= ops_called(c["request"].get("expr") or c["request"]["program"])
    missing = sorted(n for n, op in OPS.items()
                     if op.family != "constructor" and n not in called)
    assert not missing, f"no recorded second-order case reaches {missing}"


def _square(block):
    h = as_array(block)
    n = int(round(h.size ** 0.5)) if h.size else 0
    return h.reshape(n, n) if n * n == h.size and h.ndim % 2 == 0 else None


def _diagonal(block):
    return np.diagonal(_square(block)).tolist()


def _diagonal_where_torch_has_nan(mine, theirs) -> bool:
    """gradcalc's block is diagonal, and torch's differs from it off the diagonal only by
    NaNs."""
    m, t = _square(mine), _square(theirs)
    if m is None or t is None or m.shape != t.shape:
        return False
    off = ~np.eye(len(m), dtype=bool)
    return bool(np.all(m[off] == 0) and np.any(np.isnan(t[off]))
                and np.all((t[off] == 0) | np.isnan(t[off])))


def _fields(got, exp):
    """field -> a function asserting gradcalc's value of it is torch's"""
    def hessian():
        for a, row in exp["hessian"].items():
            for b, h in row.items():
                mine, theirs = got["hessian"][a][b], h
                if _diagonal_where_torch_has_nan(mine, theirs):
                    # SPEC 9: an elementwise program's block is computed as its diagonal;
                    # off it gradcalc keeps the 0 where torch's dense route has 0·inf = NaN
                    mine, theirs = _diagonal(mine), _diagonal(theirs)
                assert_close(f"hessian {a},{b}", mine, theirs, "float64")

    def hvp():
        for n, h in exp["hvp"].items():
            assert_close(f"hvp {n}", got["hvp"][n], h, "float64")

    def taylor():
        assert len(got["taylor"]) == len(exp["taylor"])
        for k, (g, w) in enumerate(zip(got["taylor"], exp["taylor"]), 1):
            assert_close(f"taylor order {k}", g, w, "float64")
    return {"jvp": lambda: assert_close("jvp", got["jvp"], exp["jvp"], "float64"),
            "hessian": hessian, "hvp": hvp, "taylor": taylor}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_second_order_matches_torch(case, answers):
    got = answers.get(case["id"])
    assert got is not None, "no answer"
    assert "error" not in got, got.get("error")
    known = KNOWN.get(case["id"], ())
    for field, agrees in _fields(got, case["expected"]).items():
        if field in known:
            with pytest.raises(AssertionError):
                agrees()
        else:
            agrees()
