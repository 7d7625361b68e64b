"""`gradcalc.compute()` keeps its compiled programs (api.PROGRAMS, a programs.ProgramCache).

A repeated call parses and compiles once and rebinds the leaves; the results equal those of
a fresh compile bit for bit (every array's bytes, dtype and shape, the checks, the JSON
text); and no call's values reach another: the cache keeps none of the caller's arrays, and
the values compiled from the text are read-only, so writing into one result cannot change
the next.
"""
from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

import gradcalc
from gradcalc import api, programs
from gradcalc.errors import Limits
from gradcalc.settings import API, Settings, validate


@pytest.fixture
def compiled(monkeypatch):
    """A fresh cache for compute(), and the texts compiled from now on."""
    monkeypatch.setattr(api, "PROGRAMS", programs.ProgramCache())
    texts = []
    real = programs.compile_program

    def counting(text, *a, **k):
        texts.append(text)
        return real(text, *a, **k)

    monkeypatch.setattr(programs, "compile_program", counting)
    return texts


SEED = "3*a + 2*b*b + log(c)"


def test_a_repeated_call_compiles_once(compiled):
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.uniform(-2, 2, (2, 3))
        r = gradcalc.compute(SEED, a=a, b=b, c=rng.uniform(0.5, 3, 3), grad=[0.1, 1, 1e-4],
                             check="none")
        np.testing.assert_array_equal(r.grads["a"], [0.30000000000000004, 3.0,
                                                     0.00030000000000000003])   # 3v
        np.testing.assert_array_equal(r.grads["b"], 4 * b * [0.1, 1, 1e-4])
    assert compiled == [SEED]
    gradcalc.compute(SEED, a=[1, 2], b=[3, 4], c=[5, 6], grad=1, check="none")   # new shapes
    gradcalc.compute(SEED, a=[1, 2], b=[3, 4], c=[5, 6], grad=1, check="none", dtype="float32")
    gradcalc.compute(SEED, a=[1, 2], b=[3, 4], c=[5, 6], grad=1, check="none", wrt=["b"])
    gradcalc.compute(SEED, a=[1, 2], b=[3, 4], c=[5, 6], grad=1, check="none",
                     limits=Limits(max_depth=50))
    assert compiled == [SEED] * 5
    gradcalc.compute("sum(x * rand(3))", x=[1, 2, 3], seed=0, check="none")
    gradcalc.compute("sum(x * rand(3))", x=[1, 2, 3], seed=0, check="none")
    assert compiled.count("sum(x * rand(3))") == 2          # random programs: every time
    for k in range(2):       # large bound arrays are the caller's: kept once all the same
        big = gradcalc.compute("sum(x ** 2)", x=np.full(10**5, k + 1.0), check="none")
        assert big.output == 10**5 * (k + 1) ** 2
        const = gradcalc.compute("sum(x * ones(100000))", x=np.ones(10**5), check="none")
        assert const.output == 10**5
    assert compiled.count("sum(x ** 2)") == 1
    assert compiled.count("sum(x * ones(100000))") == 2     # a large constant is not kept


CORPUS = [
    (SEED, dict(a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8], grad=[0.1, 1.0, 0.0001])),
    (SEED, dict(a=[-1, 0.5, 3], b=[0, -0.0, 5], c=[0, -1, 8], grad=[0.1, 1.0, 0.0001])),
    (SEED, dict(a=[1, 2], b=[3, 4], c=[5, 6], grad=1, dtype="float32")),
    (SEED, dict(a=[1, 2], b=[3, 4], c=[5, 6], grad=1, wrt=["b"], repeat=3)),
    ("#: --grad 1\nx = ones(2, 2)\ny = x * w\nmean(y ** 2)", dict(w=[[1, 2], [3, 4]])),
    ("#: --grad 1\nx = ones(2, 2)\ny = x * w\nmean(y ** 2)", dict(w=[[5, 6], [7, 8]])),
    ("x = ones(2, 2)\nmean(x * w)", dict(x=[[2, 2], [2, 2]], w=[[1, 2], [3, 4]])),
    ("y = a * b\nz = sum(y)", dict(a=[1, 2], b=[3, 4], of="y", grad=1)),
    ("W @ tanh(x)", dict(W=[[1, 2, 3], [4, 5, 6]], x=[0.1, -0.2, 0.3], grad=1)),
    ("sum(x * rand(3))", dict(x=[1, 2, 3], seed=0)),
    ("detach(x) * x", dict(x=[3.0, 2.0], grad=1)),
    ("a * 2", dict(a=[1, 2], b=[3], grad=1)),
]


def _same(r1, r2):
    def arrays(r):
        out = {"output": r.output, "cotangent": r.cotangent}
        out.update({f"grad {k}": v for k, v in r.grads.items()})
        out.update({f"leaf {k}": v for k, v in r.leaves.items()})
        out.update({f"jac {k}": v for k, v in (r.jacobian or {}).items()})
        return out
    a1, a2 = arrays(r1), arrays(r2)
    assert a1.keys() == a2.keys()
    for k in a1:
        x, y = np.asarray(a1[k]), np.asarray(a2[k])
        assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), k
    assert json.dumps(r1.to_json(), allow_nan=False) == json.dumps(r2.to_json(),
                                                                   allow_nan=False)
    assert r1.nonfinite == r2.nonfinite


@pytest.mark.parametrize("check", ["none", "symbolic", "numeric"])
def test_cached_results_equal_uncached_bit_for_bit(compiled, check):
    for text, kw in CORPUS * 2:                  # the second round is all cache hits
        kw = dict(kw, check=check)
        cached = gradcalc.compute(text, **kw)
        names = ("grad", "wrt", "of", "repeat", "check", "rtol", "atol", "jacobian", "dtype",
                 "seed")
        settings = validate(Settings(*[kw.get(n) for n in names]), Limits(), API)
        fresh = api.run(text, {k: v for k, v in kw.items() if k not in names}, settings,
                        Limits())
        _same(cached, fresh)
    # through the cache (the fresh runs compile on their own): float64 at 3 elements,
    # float32, wrt b (repeat is no part of the program) once each; random ones every call
    assert compiled.count(SEED) == 3
    assert compiled.count("sum(x * rand(3))") == 2


@pytest.mark.parametrize("n", [3, 10**6])          # the plain path and the lean one
@pytest.mark.parametrize("check", ["none", "symbolic", "numeric"])
def test_the_cache_keeps_no_callers_array(compiled, check, n):
    a = np.linspace(0.5, 2, n)
    gradcalc.compute(SEED, a=a, b=a + 1, c=a + 2, grad=np.ones(n), check=check)
    alive = weakref.ref(a)
    del a
    gc.collect()
    assert alive() is None
    assert compiled == [SEED]


def test_a_rebound_program_reads_this_calls_values(compiled):
    r = gradcalc.compute("sum(a * b)", a=np.array([4.0, 5.0, 6.0]), b=np.ones(3), check="none")
    assert compiled == ["sum(a * b)"]
    assert r.output == 15.0 and r.grads["b"].tolist() == [4.0, 5.0, 6.0]


def test_writing_into_a_result_cannot_change_the_next(compiled):
    text = "w = [1, 2]\nsum(w * x)"
    r1 = gradcalc.compute(text, x=[10.0, 20.0], check="none")
    assert r1.output == 50.0
    with pytest.raises(ValueError, match="read-only"):
        r1.leaves["w"][0] = 100.0               # the text's own value, shared by the calls
    x = np.array([10.0, 20.0])
    r2 = gradcalc.compute(text, x=x, check="none")
    x[0] = 99.0                                   # the caller's own array stays the caller's
    r2.grads["w"][0] = -1.0                       # grads are each call's own
    r3 = gradcalc.compute(text, x=[10.0, 20.0], check="none")
    assert compiled == [text]
    assert r3.output == 50.0 and r3.grads["w"].tolist() == [10.0, 20.0]
    assert r3.leaves["w"].tolist() == [1.0, 2.0]
    c = gradcalc.compute("2 * 3", check="none")
    with pytest.raises(ValueError, match="read-only"):
        c.output[...] = 0.0
    assert gradcalc.compute("2 * 3", check="none").output == 6.0
