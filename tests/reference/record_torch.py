"""Record the PyTorch reference: run every case of cases.py in real PyTorch, write the JSON.

Run with an interpreter that has torch 2.13 (`pip install torch==2.13.0`), from anywhere:

    python tests/reference/record_torch.py

For each case the leaves become tensors (in the case's dtype; those in `wrt` require grad),
the builder computes the output (or the `of` intermediate), `backward(grad)` runs `repeat`
times without zeroing, and `torch.autograd.functional.jacobian` gives the Jacobian of that
output with respect to every leaf in `wrt` (layout output.shape + leaf.shape). A leaf whose
grad torch leaves as None (no path to the output) is recorded as zeros, gradcalc's convention.
The JSON (strict: non-finite numbers as "NaN"/"Infinity"/"-Infinity") holds the gradcalc
request and the expected numbers, so the test that replays it never needs torch.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as cases_mod  # noqa: E402

OUT_PATH = HERE / "torch_reference.json"


def encode(x):
    """Nested lists of floats -> strict-JSON-safe values."""
    if isinstance(x, list):
        return [encode(v) for v in x]
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def tensor_json(t: torch.Tensor):
    # float32 -> float64 is exact, so the recorded number is torch's float32 result exactly
    return encode(t.detach().to(torch.float64).tolist())


def output_name(case) -> str | None:
    """The name of a program's output: its last statement's target, or None if bare."""
    if case.of is not None:
        return case.of
    if case.program is None:
        return None
    statements = []
    for line in case.program.split("\n"):
        line = line.split("#", 1)[0]
        statements.extend(s.strip() for s in line.split(";") if s.strip())
    last = statements[-1]
    m = re.match(r"^([A-Za-z_]\w*)\s*=(?!=)", last)
    return m.group(1) if m else None


def pick_output(case, result):
    if isinstance(result, dict):
        key = case.of if case.of is not None else output_name(case)
        return result[key]
    assert case.of is None, f"{case.id}: `of` needs the builder to return a dict"
    return result


def builder_source(case) -> str:
    try:
        src = inspect.getsource(case.fn).strip()
    except (OSError, TypeError):
        return ""
    return src if len(src) <= 400 else src[:400] + " ..."


def record_case(case):
    dtype = getattr(torch, case.dtype)
    torch.set_default_dtype(dtype)
    try:
        values = dict(case.program_leaves)
        values.update(case.vars)
        wrt = list(case.wrt) if case.wrt is not None else list(values)
        for n in wrt:
            assert n in values, f"{case.id}: wrt names unknown leaf {n}"
        leaves = {
            n: torch.tensor(v, dtype=dtype, requires_grad=(n in wrt)) for n, v in values.items()
        }

        out = pick_output(case, case.fn(**leaves))
        assert isinstance(out, torch.Tensor), f"{case.id}: builder returned {type(out)}"
        assert out.dtype == dtype, f"{case.id}: output dtype {out.dtype}, expected {dtype}"

        if case.grad is None:
            assert out.dim() == 0, f"{case.id}: non-scalar output {tuple(out.shape)} needs a grad"
            cot = torch.ones_like(out)
        elif isinstance(case.grad, (int, float)):
            cot = torch.full_like(out, float(case.grad))
        else:
            cot = torch.tensor(case.grad, dtype=dtype)
            assert cot.shape == out.shape, (
                f"{case.id}: cotangent shape {tuple(cot.shape)} != output {tuple(out.shape)}")

        repeat = case.repeat or 1
        if out.requires_grad:
            for _ in range(repeat):
                out.backward(cot, retain_graph=True)
        grads = {}
        for n in wrt:
            g = leaves[n].grad
            grads[n] = tensor_json(g if g is not None else torch.zeros_like(leaves[n]))

        fixed = {n: t.detach() for n, t in leaves.items()}

        def f(*inputs):
            env = dict(fixed)
            env.update(zip(wrt, inputs))
            return pick_output(case, case.fn(**env))

        jac = {}
        if wrt and out.numel() == 0:
            # torch's jacobian() cannot stack zero rows: an empty output's Jacobian is empty
            js = tuple(torch.zeros(tuple(out.shape) + tuple(leaves[n].shape)) for n in wrt)
        else:
            js = torch.autograd.functional.jacobian(f, tuple(fixed[n] for n in wrt)) if wrt else ()
        for n, j in zip(wrt, js):
            expect = tuple(out.shape) + tuple(leaves[n].shape)
            assert tuple(j.shape) == expect, f"{case.id}: jacobian {n} {tuple(j.shape)} != {expect}"
            jac[n] = tensor_json(j)

        request = {}
        if case.expr is not None:
            request["expr"] = case.expr
        else:
            request["program"] = case.program
        request["vars"] = {n: case.vars_text.get(n, v) for n, v in case.vars.items()}
        omit = set(case.request_omit)
        if case.grad is not None and "grad" not in omit:
            request["grad"] = case.grad
        if case.wrt is not None and "wrt" not in omit:
            request["wrt"] = list(case.wrt)
        if case.of is not None:
            request["of"] = case.of
        if case.repeat is not None and "repeat" not in omit:
            request["repeat"] = case.repeat
        request["dtype"] = case.dtype

        return {
            "id": case.id,
            "request": request,
            "expected": {
                "output": {
                    "name": output_name(case),
                    "shape": list(out.shape),
                    "value": tensor_json(out),
                },
                "cotangent": tensor_json(cot),
                "grads": grads,
                "jacobian": jac,
            },
            "torch": builder_source(case),
        }
    finally:
        torch.set_default_dtype(torch.float64)


def main():
    records = [record_case(c) for c in cases_mod.CASES]
    doc = {
        "torch_version": torch.__version__,
        "generated_by": "tests/reference/record_torch.py",
        "note": "Expected values recorded from PyTorch; non-finite numbers are the strings "
                "NaN, Infinity, -Infinity. Regenerate with the torch environment.",
        "count": len(records),
        "cases": records,
    }
    # one case per line: readable diffs when a case is added or torch changes a number
    head = {k: v for k, v in doc.items() if k != "cases"}
    body = ",\n".join(json.dumps(r, allow_nan=False) for r in records)
    text = json.dumps(head, allow_nan=False)[:-1] + ', "cases": [\n' + body + "\n]}"
    json.loads(text)  # strict JSON, by construction
    OUT_PATH.write_text(text + "\n")
    print(f"wrote {len(records)} cases to {OUT_PATH} ({len(text) / 1e6:.2f} MB), torch {torch.__version__}")


if __name__ == "__main__":
    main()
