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


def test_a_rebound_node_copies_every_slot_but_the_value(compiled):
    """rebind's copy of a leaf (Eq.with_value) names each slot: one added to Eq must be
    copied too."""
    from gradcalc.compile import Eq
    for _ in range(2):                  # (the second call's graph is a rebound one)
        graph = gradcalc.compute("sum(a * b)", a=[1.0, 2.0], b=[3.0, 4.0], wrt="b",
                                 check="none").graph
    for eq in graph.nodes:
        value = np.zeros(eq.shape)
        new = eq.with_value(value)
        assert type(new) is Eq and new.value is value
        assert all(getattr(new, k) is getattr(eq, k) for k in Eq.__slots__ if k != "value")
    assert [eq.requires_grad for eq in graph.nodes if eq.kind == "leaf"] == [False, True]


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


# ---------------------------------------------------------------- replayed decisions
# api.run keeps what it decides from the program and the settings (api.Decisions) per
# compiled program and option set; a call whose options differ from the last one's, an
# error, or new shapes must give exactly what a fresh compile gives
SETTING_NAMES = ("grad", "wrt", "of", "repeat", "check", "rtol", "atol", "jacobian", "dtype",
                 "seed", "tangent", "hessian", "hvp", "taylor", "steps")
V3 = dict(a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8])
REPLAY = [
    (SEED, dict(V3, grad=[0.1, 1.0, 0.0001])),
    (SEED, dict(V3, grad=[0.1, 1.0, 0.0001], jacobian=False)),
    (SEED, dict(V3, grad=[0.1, 1.0, 0.0001], jacobian=True, wrt=["b"])),
    (SEED, dict(V3)),                                        # error: no grad for 3 outputs
    (SEED, dict(V3, grad=[1.0, 2.0])),                       # error: grad of shape (2,)
    (SEED, dict(V3, grad=1, wrt=["q"])),                     # error: no leaf q
    (SEED, dict(V3, grad=1, of="z")),                        # error: no name z
    (SEED, dict(V3, jacobian=True)),                         # J alone, no grads
    (SEED, dict(a=[1, 2], b=[3, 4], c=[0, -1], grad=1)),     # new shapes; log(0), log(-1)
    (SEED, dict(V3, grad=2, repeat=2, dtype="float32")),
    (SEED, dict(V3, grad=1, tangent={"a": [1, 0, 0]})),      # SPEC 9: decided every call
    (SEED, dict(V3, tangent={"a": [1, 0, 0]}, taylor=2)),    # J·u and Taylor alone
    (SEED, dict(V3, grad=1, hessian=True, wrt=["a", "b"])),
    (SEED, dict(V3, grad=[0.1, 1.0, 0.0001])),
    ("y = a * b\nz = sum(y)", dict(a=[1, 2], b=[3, 4], of="y", grad=[1, 2])),
    ("y = a * b\nz = sum(y)", dict(a=[1, 2], b=[3, 4])),
    ("y = a * b\nz = sum(y)", dict(a=[1, 2], b=[3, 4], of="y")),   # error: y has 2 elements
]


def _outcome(call):
    try:
        return call()
    except gradcalc.GradcalcError as err:
        return err


def _same_outcome(got, want):
    if isinstance(want, gradcalc.GradcalcError):
        assert isinstance(got, gradcalc.GradcalcError), got
        assert (got.kind, str(got), got.position) == (want.kind, str(want), want.position)
        return
    assert not isinstance(got, Exception), got
    _same(got, want)        # (its JSON holds SPEC 9's keys too)
    assert json.dumps(got.to_json(), allow_nan=False) == json.dumps(want.to_json(),
                                                                    allow_nan=False)


@pytest.mark.parametrize("check", ["none", "symbolic"])
def test_replayed_decisions_equal_a_fresh_run(compiled, check):
    for _ in range(2):            # the second round replays what the first decided
        for text, kw in REPLAY:
            kw = dict(kw, check=check)
            got = _outcome(lambda: gradcalc.compute(text, **kw) if not kw.get("tangent") else
                           api.compute(text, **kw))
            settings = validate(Settings(*[kw.get(n) for n in SETTING_NAMES]), Limits(), API)
            want = _outcome(lambda: api.run(text, {k: v for k, v in kw.items()
                                                   if k not in SETTING_NAMES},
                                            settings, Limits()))
            _same_outcome(got, want)
    # once per program key: float64 at 3 and at 2 elements, float32, wrt b, wrt q, wrt a,b
    assert compiled.count(SEED) == 6


def test_a_refusal_is_never_replayed(compiled):
    # the Jacobian over the memory limit is refused after the cotangent is read (a bad grad
    # is the error a user sees first), and a refusal is not kept for the next call
    lim = Limits(max_memory=4000)
    x = np.linspace(1, 2, 40)
    with pytest.raises(gradcalc.GradcalcError, match="--grad has shape"):
        gradcalc.compute("x * y", x=x, y=x, grad=[1, 2], jacobian=True, limits=lim)
    with pytest.raises(gradcalc.GradcalcError, match="the Jacobian needs about"):
        gradcalc.compute("x * y", x=x, y=x, grad=1, jacobian=True, limits=lim)
    r = gradcalc.compute("x * y", x=x, y=x, grad=1, limits=lim, check="none")
    assert r.jacobian is None and "memory" in r.jacobian_note
    big = Limits(max_memory=10**6)
    r = gradcalc.compute("x * y", x=x, y=x, grad=1, jacobian=True, limits=big, check="none")
    np.testing.assert_array_equal(r.jacobian["x"], np.diag(x))          # d(x*y)/dx = diag(y)
    assert compiled == ["x * y", "x * y"]        # two limits: two programs


def test_the_options_key_holds_every_setting():
    from gradcalc.settings import NAMES, options_key
    base = Settings(check="none", dtype="float64", repeat=1)
    changed = dict(grad=[1], wrt=["a"], of="y", repeat=2, check="numeric", rtol=0.5,
                   atol=0.5, jacobian=False, dtype="float32", seed=1, hessian=True, taylor=2,
                   steps=True)
    assert set(changed) | {"tangent", "hvp"} == set(NAMES)     # a new field must be added
    key = options_key(base)
    for name, value in changed.items():
        other = Settings(**{**base.__dict__, name: value})
        assert options_key(other) != key, name
    for name in ("tangent", "hvp"):             # mappings: never kept
        assert options_key(Settings(**{**base.__dict__, name: {"a": 1}})) is None
    # the grad matters only through whether one is given
    assert options_key(Settings(**{**base.__dict__, "grad": [1, 2]})) == \
        options_key(Settings(**{**base.__dict__, "grad": 3.0}))


@pytest.mark.parametrize("given, message", [
    (dict(check="x", repeat=0, taylor=99), "check= must be one of"),
    (dict(repeat=0, taylor=99), "repeat= must be at least 1"),
    (dict(seed=-1, rtol=-1), "seed= takes a whole number >= 0"),
    (dict(rtol="x", wrt=3), "rtol= must be a number"),
    (dict(wrt=3, of=3), "wrt= must be a list of names"),
    (dict(of=3, jacobian=1), "of= must be a name"),
    (dict(steps=1, taylor=0), "steps= must be true or false"),
    (dict(tangent=3, taylor=0), "tangent= must map leaf names"),
    (dict(taylor=0), "taylor= takes an order from 1"),
])
def test_validate_names_the_first_bad_field_in_order(given, message):
    with pytest.raises(gradcalc.GradcalcError, match=message):
        validate(Settings(**given), Limits(), API)
