"""Record PyTorch 2.13's second order and forward mode for the reference cases.

Run with an interpreter that has torch 2.13 (`pip install torch==2.13.0`), from anywhere:

    python tests/reference/record_higher.py

For every float64 case of cases.py small enough (at most 24 leaf elements, one backward, no
`of`), with the case's cotangent v: `torch.autograd.functional.hessian` of vᵀy,
`torch.autograd.functional.hvp` and `torch.func.jvp` along a fixed direction u, and the
Taylor derivatives of order 1..4 of t -> y(x + t·u) at t = 0 by nested `torch.func.jacfwd`.
Cases whose leaves hold a non-finite number are left out (x + 0·u would change them). A case
torch refuses to differentiate twice is recorded with its error. The JSON
(higher_reference.json) is replayed by tests/test_higher_reference.py without torch.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as cases_mod  # noqa: E402
from record_torch import encode, pick_output, tensor_json  # noqa: E402

OUT_PATH = HERE / "higher_reference.json"
MAX_ELEMENTS = 24
TAYLOR = 4
PATTERN = (1.0, -0.5, 2.0, 0.25, -1.5)


def direction(shape, offset):
    n = math.prod(shape)
    flat = [PATTERN[(i + offset) % len(PATTERN)] for i in range(n)]
    return torch.tensor(flat, dtype=torch.float64).reshape(shape)


def _finite(v):
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return math.isfinite(float(v))


def wanted(case) -> bool:
    if case.dtype != "float64" or case.of is not None or (case.repeat or 1) != 1:
        return False
    if case.program_leaves or case.vars_text or case.request_omit:
        return False
    if not all(_finite(v) for v in case.vars.values()):
        return False
    sizes = [torch.tensor(v).numel() for v in case.vars.values()]
    return 0 < sum(sizes) <= MAX_ELEMENTS


def record_case(case):
    torch.set_default_dtype(torch.float64)
    values = {n: torch.tensor(v, dtype=torch.float64) for n, v in case.vars.items()}
    wrt = list(case.wrt) if case.wrt is not None else list(values)

    def f(*inputs):
        env = dict(values)
        env.update(zip(wrt, inputs))
        return pick_output(case, case.fn(**env))

    x = tuple(values[n] for n in wrt)
    out = f(*x)
    if case.grad is None:
        cot = torch.ones_like(out)
    elif isinstance(case.grad, (int, float)):
        cot = torch.full_like(out, float(case.grad))
    else:
        cot = torch.tensor(case.grad, dtype=torch.float64)
    u = tuple(direction(values[n].shape, k) for k, n in enumerate(wrt))

    def scalar(*inputs):
        return (f(*inputs) * cot).sum()

    def along(t):
        return f(*(xi + t * ui for xi, ui in zip(x, u)))

    request = {"expr": case.expr} if case.expr is not None else {"program": case.program}
    request["vars"] = dict(case.vars)
    if case.grad is not None:
        request["grad"] = case.grad
    if case.wrt is not None:
        request["wrt"] = list(case.wrt)
    request.update(tangent={n: tensor_json(d) for n, d in zip(wrt, u)},
                   hvp={n: tensor_json(d) for n, d in zip(wrt, u)},
                   hessian=True, taylor=TAYLOR, check="none")
    rec = {"id": case.id, "request": request, "torch": {}}
    try:
        H = torch.autograd.functional.hessian(scalar, x)
        hv = torch.autograd.functional.hvp(scalar, x, u)[1]
        jv = torch.func.jvp(f, x, u)[1]
        t0 = torch.zeros((), dtype=torch.float64)
        taylor, g = [], along
        for _ in range(TAYLOR):
            g = torch.func.jacfwd(g)
            # a copy first: tolist() of some jacfwd results (views of expanded zeros)
            # crashes torch 2.13
            taylor.append(tensor_json(g(t0).detach().clone().contiguous()))
    except RuntimeError as exc:       # torch refuses (an op with no double backward)
        rec["error"] = str(exc).splitlines()[0][:200]
        return rec
    if len(wrt) == 1 and not isinstance(H[0], tuple):
        H = ((H[0],),) if isinstance(H, tuple) else ((H,),)
    rec["expected"] = {
        "hessian": {a: {b: tensor_json(H[i][j]) for j, b in enumerate(wrt)}
                    for i, a in enumerate(wrt)},
        "hvp": {n: tensor_json(h) for n, h in zip(wrt, hv)},
        "jvp": tensor_json(jv),
        "taylor": taylor,
    }
    return rec


def main():
    records = [record_case(c) for c in cases_mod.CASES if wanted(c)]
    head = {"torch_version": torch.__version__,
            "generated_by": "tests/reference/record_higher.py", "count": len(records)}
    body = ",\n".join(json.dumps(r, allow_nan=False) for r in records)
    text = json.dumps(head, allow_nan=False)[:-1] + ', "cases": [\n' + body + "\n]}"
    json.loads(text)
    OUT_PATH.write_text(text + "\n")
    print(f"wrote {len(records)} cases to {OUT_PATH}, torch {torch.__version__}")


if __name__ == "__main__":
    del encode
    main()
