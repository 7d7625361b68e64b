"""sympy's tensor module loaded only when used (gradcalc/lazysympy.py, issue 15 figure 2·fresh).

The CLI owns its process and stands in for sympy.tensor.tensor, which sympy's Add imports at
the first sum only to test for tensor expressions. The stand-in must change no answer: not
gradcalc's, and not sympy's for someone who does use tensors afterwards in that process.
A library caller's sympy is never touched. Each case is a fresh interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# real tensors after the stand-in: their sums (Add.flatten's tensor branch) and products
TENSORS = """
import json, sys
if sys.argv[1] == "stand-in":
    from gradcalc import lazysympy
    lazysympy.install()
import sympy
x = sympy.Symbol("x")
first = str(sympy.diff(x**2 + 3*x + 1, x))            # sums before any tensor
before = type(sys.modules["sympy.tensor.tensor"]).__name__
from sympy.tensor.tensor import TensorIndexType, TensorHead, tensor_indices, TensExpr
L = TensorIndexType("L")
i, j = tensor_indices("i j", L)
A, B = TensorHead("A", [L]), TensorHead("B", [L])
sums = [A(i) + A(i), 2*A(i) + B(i) - A(i), A(i)*B(-i) + 1, x + A(i)*B(-i)]
print(json.dumps({"first": first, "before": before, "sums": [str(s) for s in sums],
                  "tensor": [isinstance(s, TensExpr) for s in sums],
                  "module": type(sys.modules["sympy.tensor.tensor"]).__name__}))
"""


def python(code, *args, env=None):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    proc = subprocess.run([sys.executable, *code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_sympys_tensors_work_as_before_once_the_stand_in_gives_way():
    with_it = json.loads(python(["-c", TENSORS], "stand-in").stdout)
    without = json.loads(python(["-c", TENSORS], "real").stdout)
    assert with_it["before"] == "_StandIn" and without["before"] == "module"
    assert with_it["module"] == "module"                  # the real one, from then on
    assert with_it["first"] == without["first"] == "2*x + 3"
    assert with_it["sums"] == without["sums"] and with_it["sums"][0] == "2*A(i)"
    assert with_it["tensor"] == without["tensor"] == [True] * 4


def test_the_cli_checks_symbolically_without_sympys_tensor_module():
    proc = python(["-X", "importtime", "-m", "gradcalc", "3*a + 2*b*b + log(c)", "a=1,2,3",
                   "b=3,4,5", "c=6,7,8", "--grad", "0.1,1,1e-4", "--json"],
                  env={"GRADCALC_NO_CACHE": "1"})
    report = json.loads(proc.stdout)["checks"]["symbolic"]
    assert report["passed"] is True and report["derivatives"] == {"a": "3", "b": "4*b",
                                                                  "c": "1/c"}
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
              if line.startswith("import time:")}
    assert "sympy.core.add" in loaded                     # sympy did its sums
    assert "sympy.tensor.tensor" not in loaded and "sympy.combinatorics" not in loaded


def test_a_library_caller_keeps_sympys_own_module():
    code = ("import sys, gradcalc\n"
            "r = gradcalc.compute('x*x + 1', x=[1.0, 2.0], grad=[1.0, 1.0], check='symbolic')\n"
            "print(r.checks['symbolic']['passed'], "
            "type(sys.modules['sympy.tensor.tensor']).__name__)\n")
    out = python(["-c", code], env={"GRADCALC_NO_CACHE": "1"}).stdout.split()
    assert out == ["True", "module"]
