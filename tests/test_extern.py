"""Opaque external functions (SPEC 11, issue 12): gradcalc/extern.py.

Each extern is a tiny Python script written to tmp_path and run with sys.executable. The
graph is built directly (Compiler with `externs=`, then the engine's forward, backward and
Jacobian), since the CLI/API wiring is the lead's: these tests hold the module's contract,
not the options. Grads are compared with analytic ones (by hand, below) within the error of
finite differences; every failure mode is checked for its kind, a message that names the
extern and quotes its stderr, and that no process of it survives.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gradcalc import engine
from gradcalc.compile import Compiler
from gradcalc.errors import GradcalcError, Limits
from gradcalc.extern import Externs, FiniteDifference, encode_call, parse_spec
from gradcalc.parser import parse_program

LIMITS = Limits()      # the edge: tests build the limits, the library takes them

ROOT = Path(__file__).resolve().parent.parent
OPAQUE_F = ROOT / "samples" / "opaque_f.py"

# a co-process: `answer(n, *args)` returns the line to print for call n (None: print nothing)
PRELUDE = '''\
import json, math, sys, time
def value(v):
    return json.dumps({"value": v})
def serve(answer):
    n = 0
    for line in sys.stdin:
        n += 1
        out = answer(n, *json.loads(line)["args"])
        if out is not None:
            sys.stdout.write(out + "\\n")
            sys.stdout.flush()
'''


def script(tmp_path, body: str, name="ext.py") -> str:
    path = tmp_path / name
    path.write_text(PRELUDE + textwrap.dedent(body))
    return f"{sys.executable} {path}"


def alive(pid: int) -> bool:
    """Running (a zombie or a missing /proc entry is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def compile_with(ex: Externs, text: str, wrt=None, dtype=np.float64, **values):
    bindings = {k: np.asarray(v, dtype=dtype) for k, v in values.items()}
    return Compiler(text, bindings, dtype=dtype, wrt=wrt, externs=ex.ops, limits=LIMITS).program(
        parse_program(text, LIMITS.max_depth))


def differentiate(graph, jacobian=False):
    """The engine's one entry, as the API calls it: grads (and Jacobians) of every leaf that
    requires grad, for a cotangent of ones."""
    leaves = tuple(i for i in graph.leaves.values() if graph.nodes[i].requires_grad)
    cot = np.ones(graph.nodes[graph.output].shape, graph.dtype)
    return engine.differentiate(engine.Request(graph, graph.output, cot, leaves, jacobian))


def grads(graph):
    answer = differentiate(graph)
    names = {i: n for n, i in graph.leaves.items()}
    return answer.values[graph.output], {names[i]: v for i, v in answer.grads.items()}


# ------------------------------------------------------------------ the German page
XS = np.linspace(0.1, 1, 10)
YS = 2 * XS * 1.2 + XS ** 2 * -3.4


def test_sample_opaque_f_gives_the_pages_gradient():
    """samples/opaque_f.py is the page's f_str; its FD grads equal the exact autograd grads
    of the same formula (torch's numbers, as samples/german_fit_first_batch.grad records)."""
    with Externs([("f", f"{sys.executable} {OPAQUE_F}")], limits=LIMITS) as ex:
        g = compile_with(ex, "mse_loss(f(x, w), y)", wrt=["w"], x=XS, w=[0.0, 0.0], y=YS)
        loss, got = grads(g)
        calls = ex.externs["f"].backend.calls
    exact = Compiler("mse_loss(2*x*w[0] + x**2*w[1], y)",
                     {"x": XS, "w": np.zeros(2), "y": YS}, wrt=["w"], limits=LIMITS).program(
        parse_program("mse_loss(2*x*w[0] + x**2*w[1], y)", LIMITS.max_depth))
    exact_loss, exact_grads = grads(exact)
    assert loss == pytest.approx(0.2092948, rel=1e-12)
    assert loss == exact_loss
    # f is linear in w: central differences are exact up to rounding (eps / h ~ 1e-11)
    np.testing.assert_allclose(got["w"], exact_grads["w"], rtol=1e-8)
    np.testing.assert_allclose(got["w"], [0.418, 0.270644], rtol=1e-8)
    # one call fixed the shape at compile time (and was remembered for the forward), then
    # four perturbed points (w[0] and w[1], up and down) in one batch
    assert calls == 5


def test_the_default_step_is_the_cube_root_of_epsilon():
    assert FiniteDifference().h(np.float64) == pytest.approx(6.055454452393343e-06, rel=1e-15)
    assert FiniteDifference().h(np.float32) == pytest.approx(4.921566601151848e-03, rel=1e-7)
    assert FiniteDifference("forward", 0.5).h(np.float32) == 0.5
    assert FiniteDifference().describe(np.float64) == \
        "central differences, step 6.06e-06 (cbrt(eps) of float64) * max(1, |x|)"


def test_the_op_says_what_it_is():
    with Externs([("f", f"{sys.executable} {OPAQUE_F}")], limits=LIMITS, diff="forward",
                 step=1e-4) as ex:
        op = ex.ops["f"]
        assert (op.family, op.sympy, op.pointwise) == ("extern", None, False)
        assert "forward differences, step 0.0001 * max(1, |x|)" in op.doc
        assert "opaque_f.py" in op.doc
        g = compile_with(ex, "mse_loss(f(x, w), y)", x=XS, w=[0.5, 0.5], y=YS)
        assert [eq.torch for eq in g.nodes if eq.kind == "op"] == ["fBackward",
                                                                    "MseLossBackward0"]
        grads(g)
        # x and w both require grad: both rest on finite differences, with the step used
        # (y's grad is exact: no extern lies between it and the output)
        assert ex.finite_difference(g, g.output) == {
            "x": [{"extern": "f", "diff": "forward", "step": 1e-4}],
            "w": [{"extern": "f", "diff": "forward", "step": 1e-4}]}
        # one backward, one batch over both arguments: 10 + 2 points
        assert ex.externs["f"].finite_differences == {("forward", 1e-4, (0, 1)): 1}


# ------------------------------------------------------------------ grads and composition
SMOOTH = '''
serve(lambda n, a, b: value([math.exp(ai) * bi for ai, bi in zip(a, b)]))
'''


def analytic_tanh_case(x, w, v):
    """d/dx, d/dw of sum(v * tanh(exp(2x) * w)), by hand."""
    inner = np.exp(2 * x) * w
    s = v * (1 - np.tanh(inner) ** 2)
    return s * 2 * np.exp(2 * x) * w, s * np.exp(2 * x)


@pytest.mark.parametrize("economy", [True, False])
@pytest.mark.parametrize("diff, rtol", [("central", 1e-7), ("forward", 1e-4)])
def test_composition_with_exact_autograd(tmp_path, monkeypatch, diff, rtol, economy):
    monkeypatch.setattr(engine, "ECONOMY", economy)      # the plain path and the economic one
    x = np.array([0.3, -0.2, 0.1])
    w = np.array([0.5, 1.5, -0.7])
    v = np.array([1.0, -2.0, 0.5])
    with Externs([("g", script(tmp_path, SMOOTH))], limits=LIMITS, diff=diff) as ex:
        graph = compile_with(ex, "sum(v * tanh(g(2*x, w)))", wrt=["x", "w"], x=x, w=w, v=v)
        out, got = grads(graph)
        jac = differentiate(graph, jacobian=True).jacobians
    gx, gw = analytic_tanh_case(x, w, v)
    assert out == pytest.approx(np.sum(v * np.tanh(np.exp(2 * x) * w)), rel=1e-15)
    np.testing.assert_allclose(got["x"], gx, rtol=rtol)
    np.testing.assert_allclose(got["w"], gw, rtol=rtol)
    np.testing.assert_allclose(jac[graph.leaves["x"]], gx, rtol=rtol)


def test_batched_jacobian_of_a_vector_output(tmp_path):
    """The engine's Jacobian pass sends a batch of cotangents: the extern's VJP contracts
    its one FD Jacobian with all of them (rows of d exp(a)*b / d a = diag(exp(a)*b))."""
    a = np.array([0.1, 0.2, 0.3, 0.4])
    b = np.array([1.0, 2.0, 3.0, 4.0])
    with Externs([("g", script(tmp_path, SMOOTH))], limits=LIMITS) as ex:
        graph = compile_with(ex, "g(a, b)", a=a, b=b)
        jac = differentiate(graph, jacobian=True).jacobians
        assert ex.externs["g"].backend.calls == 1 + 2 * 8
    np.testing.assert_allclose(jac[graph.leaves["a"]], np.diag(np.exp(a) * b), rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(jac[graph.leaves["b"]], np.diag(np.exp(a)), rtol=1e-8,
                               atol=1e-12)


def test_an_empty_argument_has_an_empty_jacobian(tmp_path):
    body = '''
    serve(lambda n, a, b: value([3 * ai for ai in a]))
    '''
    with Externs([("g", script(tmp_path, body))], limits=LIMITS) as ex:
        graph = compile_with(ex, "sum(g(a, b))", a=[1.0, 2.0], b=np.zeros(0))
        _, got = grads(graph)
        assert ex.externs["g"].backend.calls == 1 + 4
    np.testing.assert_allclose(got["a"], [3.0, 3.0], rtol=1e-9)
    assert got["b"].shape == (0,)


def test_float32_uses_the_float32_step(tmp_path):
    x = np.array([0.3, -0.2, 0.1])
    w = np.array([0.5, 1.5, -0.7])
    v = np.array([1.0, -2.0, 0.5])
    with Externs([("g", script(tmp_path, SMOOTH))], limits=LIMITS) as ex:
        graph = compile_with(ex, "sum(v * tanh(g(2*x, w)))", wrt=["w"], dtype=np.float32,
                             x=x, w=w, v=v)
        _, got = grads(graph)
        h = float(np.finfo(np.float32).eps) ** (1 / 3)
        assert ex.externs["g"].finite_differences == {("central", h, (1,)): 1}
    assert got["w"].dtype == np.float32
    np.testing.assert_allclose(got["w"], analytic_tanh_case(x, w, v)[1], rtol=1e-3)


def test_a_python_callable_is_an_extern_too():
    with Externs(limits=LIMITS, functions={"f": lambda x, w: 2 * x * w[0] + x ** 2 * w[1]}) as ex:
        g = compile_with(ex, "mse_loss(f(x, w), y)", wrt=["w"], x=XS, w=[0.0, 0.0], y=YS)
        _, got = grads(g)
    np.testing.assert_allclose(got["w"], [0.418, 0.270644], rtol=1e-8)


def test_a_python_callable_that_raises_or_returns_text():
    def broken(x):
        raise ZeroDivisionError("division by zero")
    with Externs(limits=LIMITS, functions={"f": broken, "g": lambda x: "1,2",
                                           "h": lambda x: np.sum(x)}) as ex:
        with pytest.raises(GradcalcError, match="extern 'f' raised ZeroDivisionError: "
                                                "division by zero") as info:
            compile_with(ex, "f(x)", x=[1.0])
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        with pytest.raises(GradcalcError, match="found a string"):
            compile_with(ex, "g(x)", x=[1.0])
        graph = compile_with(ex, "h(x)", x=[1.0, 2.0])        # a numpy scalar is a number
        assert engine.forward(graph)[graph.output] == 3.0


def test_a_batch_of_200_points_is_streamed(tmp_path):
    """100 elements perturbed up and down: 200 calls written without waiting for answers.
    Each line each way is ~80 KB, more than a pipe holds, so a writer that waited for the
    child, or a reader that waited for the writer, would deadlock."""
    body = '''
    serve(lambda n, x, c: value([sum(x) * ci for ci in c]))
    '''
    x = np.linspace(-1, 1, 100)
    c = np.linspace(0, 1, 4000)
    v = np.cos(np.arange(4000))
    with Externs([("f", script(tmp_path, body))], limits=LIMITS, timeout=20) as ex:
        graph = compile_with(ex, "sum(v * f(x, c))", wrt=["x"], x=x, c=c, v=v)
        _, got = grads(graph)
        assert ex.externs["f"].backend.calls == 201
    # d/dx_i sum_j v_j * sum(x) * c_j = sum(v * c), for every i
    np.testing.assert_allclose(got["x"], np.full(100, np.sum(v * c)), rtol=1e-7)


def test_a_finite_difference_jacobian_over_the_memory_limit(tmp_path):
    with Externs([("g", script(tmp_path, SMOOTH))], limits=Limits(max_memory=10_000)) as ex:
        graph = compile_with(ex, "sum(g(a, b))", wrt=["a"], a=np.ones(30), b=np.ones(30))
        with pytest.raises(GradcalcError, match=r"extern 'g': its finite-difference Jacobian "
                                                r"\(60 calls\) needs about 21.1 KiB, over the "
                                                r"memory limit of 9.77 KiB \(--max-memory\)") \
                as info:
            grads(graph)
        assert info.value.kind == "limit"
        assert ex.externs["g"].backend.calls == 1


def test_nan_and_infinity_cross_as_strings(tmp_path):
    body = '''
    def answer(n, x):
        assert x == [1.0, "NaN", "-Infinity"], x
        return '{"value": ["Infinity", "NaN", 2]}'
    serve(answer)
    '''
    assert encode_call([np.array([1.0, np.nan, -np.inf])]) == \
        b'{"args": [[1.0, "NaN", "-Infinity"]]}\n'
    assert encode_call([np.array([[1, 2], [3, np.inf]]), np.float64(0.1), np.zeros((2, 0))]) \
        == b'{"args": [[[1.0, 2.0], [3.0, "Infinity"]], 0.1, [[], []]]}\n'
    with Externs([("f", script(tmp_path, body))], limits=LIMITS) as ex:
        graph = compile_with(ex, "f(x)", wrt=[], x=[1.0, np.nan, -np.inf])
        out = engine.forward(graph)[graph.output]
    np.testing.assert_array_equal(out, [np.inf, np.nan, 2.0])


# ------------------------------------------------------------------ failures
STDERR_WORDS = "sys.stderr.write('trouble at mill\\n'); sys.stderr.flush()"

FAILURES = {
    "exits immediately": (f'''
        {STDERR_WORDS}
        sys.exit(3)
        ''', "exited with status 3 before answering call 1"),
    "exits mid-run": (f'''
        def answer(n, x, w):
            if n == 2:
                {STDERR_WORDS}
                sys.exit(4)
            return value([1.0, 2.0])
        serve(answer)
        ''', "exited with status 4 before answering call 2 (1 of a batch of 4)"),
    "hangs": (f'''
        def answer(n, x, w):
            if n == 2:
                {STDERR_WORDS}
                time.sleep(60)
            return value([1.0, 2.0])
        serve(answer)
        ''', "gave no answer to call 2 (1 of a batch of 4) within 0.5 s (--extern-timeout)"),
    "prints non-JSON": (f'''
        def answer(n, x, w):
            {STDERR_WORDS}
            return "hello there"
        serve(answer)
        ''', "answered call 1 with something that is not JSON ('hello there'"),
    "prints a bare NaN": (f'''
        def answer(n, x, w):
            {STDERR_WORDS}
            return '{{"value": [NaN, 1]}}'
        serve(answer)
        ''', 'a bare NaN is not JSON (write it as the string "NaN")'),
    "returns a string": (f'''
        def answer(n, x, w):
            {STDERR_WORDS}
            return value("1,2")
        serve(answer)
        ''', "answered call 1 of 1 with something that is not an array of numbers "
             "(its answer: arrays hold numbers only, found a string)"),
    "returns a ragged array": (f'''
        def answer(n, x, w):
            {STDERR_WORDS}
            return value([[1], [2, 3]])
        serve(answer)
        ''', "not rectangular"),
    "is not an object": (f'''
        def answer(n, x, w):
            {STDERR_WORDS}
            return "[1, 2]"
        serve(answer)
        ''', "which is neither"),
    "changes its shape": (f'''
        def answer(n, x, w):
            if n == 3:
                {STDERR_WORDS}
                return value([1.0, 2.0, 3.0])
            return value([1.0, 2.0])
        serve(answer)
        ''', "answered with shape (3,), but its first call with arguments of shapes (2,), (2,) "
             "answered shape (2,)"),
    "answers an error": (f'''
        def answer(n, x, w):
            if n == 2:
                {STDERR_WORDS}
                return json.dumps({{"error": "w out of range"}})
            return value([1.0, 2.0])
        serve(answer)
        ''', 'answered call 2 (1 of a batch of 4) with the error "w out of range"'),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure(tmp_path, case):
    body, words = FAILURES[case]
    start = time.monotonic()
    with pytest.raises(GradcalcError) as info:
        with Externs([("f", script(tmp_path, body))], limits=LIMITS, timeout=0.5) as ex:
            pid = ex.externs["f"].backend.proc.pid
            graph = compile_with(ex, "sum(f(x, w) * v)", wrt=["w"], x=[1.0, 2.0],
                                 w=[0.5, 0.5], v=[1.0, 1.0])
            grads(graph)
    err = info.value
    assert err.kind == "value"
    assert err.message.startswith(f"extern 'f' ({sys.executable} "), err.message
    assert words in err.message, err.message
    assert err.message.endswith('its stderr ends: "trouble at mill"'), err.message
    assert "\n" not in err.message
    assert gone(pid, 0.5)
    assert time.monotonic() - start < 10


def test_an_error_answer_keeps_the_child_usable(tmp_path):
    """{"error": ...} is part of the protocol: the rest of the batch is read, and the next
    call (the next JSON Lines request) is answered; a broken answer stops the child."""
    body = '''
    serve(lambda n, x: json.dumps({"error": "no"}) if x < 0 else value(2 * x))
    '''
    with Externs([("f", script(tmp_path, body))], limits=LIMITS) as ex:
        with pytest.raises(GradcalcError, match="with the error \"no\"; its stderr is empty") \
                as info:
            compile_with(ex, "1 + f(x)", x=-1.0)
        assert info.value.position == 4          # the caret goes under the call that failed
        graph = compile_with(ex, "f(x)", x=3.0)
        assert engine.forward(graph)[graph.output] == 6.0


def test_a_stopped_child_is_not_called_again(tmp_path):
    body = '''
    serve(lambda n, x: "garbage")
    '''
    with Externs([("f", script(tmp_path, body))], limits=LIMITS) as ex:
        with pytest.raises(GradcalcError, match="not JSON"):
            compile_with(ex, "f(x)", x=1.0)
        with pytest.raises(GradcalcError, match="extern 'f' was stopped earlier: extern 'f'"):
            compile_with(ex, "f(x)", x=2.0)


def test_a_command_that_cannot_start_is_a_usage_error(tmp_path):
    with pytest.raises(GradcalcError) as info:
        with Externs([("f", str(tmp_path / "no-such-program") + " --flag")], limits=LIMITS):
            pass
    assert info.value.kind == "usage"
    assert info.value.message.startswith("extern 'f': cannot start '")
    assert "No such file or directory" in info.value.message


def test_a_second_extern_that_cannot_start_ends_the_first(tmp_path):
    with pytest.raises(GradcalcError, match="extern 'g': cannot start") :
        with Externs([("f", f"{sys.executable} {OPAQUE_F}"), ("g", "/nonexistent/x")],
                     limits=LIMITS):
            pass
    # nothing to look up by pid: the first child was started and must be reaped; its
    # absence shows as no child process of ours left
    assert not [p for p in os.listdir("/proc") if p.isdigit() and alive(int(p))
                and _parent(int(p)) == os.getpid()]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return -1


@pytest.mark.parametrize("spec, words", [
    ("f", "expected NAME=COMMAND"),
    ("f=", "expected NAME=COMMAND"),
    ("2f=cat", "is not a function name"),
    ("f=python3 'unclosed", "cannot split the command"),
])
def test_bad_specs_are_usage_errors(spec, words):
    with pytest.raises(GradcalcError, match=words) as info:
        Externs([spec], limits=LIMITS)
    assert info.value.kind == "usage"


@pytest.mark.parametrize("opts, words", [
    ({"diff": "backward"}, "--extern-diff: expected central or forward"),
    ({"step": 0.0}, "--extern-step: expected a positive number"),
    ({"step": float("nan")}, "--extern-step"),
    ({"timeout": -1}, "--extern-timeout: expected a positive number of seconds"),
])
def test_bad_options_are_usage_errors(opts, words):
    with pytest.raises(GradcalcError, match=words) as info:
        Externs(["f=cat"], limits=LIMITS, **opts)
    assert info.value.kind == "usage"


def test_names(tmp_path):
    assert parse_spec("sim=./simulate --quiet a=b") == ("sim", "./simulate --quiet a=b")
    with pytest.raises(GradcalcError, match="declared twice"):
        Externs(["f=cat", "f=cat"], limits=LIMITS)
    with pytest.raises(GradcalcError, match="declared twice"):
        Externs(["f=cat"], limits=LIMITS, functions={"f": abs})
    with pytest.raises(GradcalcError, match="'a b' is not a function name"):
        Externs([("a b", "cat")], limits=LIMITS)
    with pytest.raises(GradcalcError, match="--extern-step"):
        Externs(["f=cat"], limits=LIMITS, step=True)
    with Externs([("sum", "cat")], limits=LIMITS) as ex:          # cat never gets a call here
        with pytest.raises(GradcalcError, match="'sum' is already a function of gradcalc") \
                as info:
            compile_with(ex, "sum(x)", x=1.0)
        assert info.value.kind == "usage"
    with Externs([("f", f"{sys.executable} {OPAQUE_F}")], limits=LIMITS) as ex:
        with pytest.raises(GradcalcError, match="'f' is an extern") as info:
            Compiler("f(a) = a; f(x)", {"x": np.ones(1)}, externs=ex.ops, limits=LIMITS).program(
                parse_program("f(a) = a; f(x)", LIMITS.max_depth))
        assert info.value.kind == "name"
        with pytest.raises(GradcalcError, match="'f' is a function: call it"):
            compile_with(ex, "f + 1")
        with pytest.raises(GradcalcError, match="None is not a number"):
            compile_with(ex, "f(None, x)", x=[1.0, 2.0])
        with pytest.raises(GradcalcError, match="unexpected keyword argument 'dim'"):
            compile_with(ex, "f(x, w, dim=1)", x=[1.0], w=[1.0, 2.0])
        with pytest.raises(GradcalcError, match=r"f\(\) needs an array argument"):
            compile_with(ex, "f()")
        assert ex.externs["f"].backend.calls == 0


# ------------------------------------------------------------------ nothing left running
def test_the_child_has_its_own_session(tmp_path):
    """A Ctrl-C typed in a terminal goes to the foreground group: gradcalc's, not the
    child's. gradcalc then ends the child itself (the KeyboardInterrupt leaves the block)."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with Externs([("f", f"{sys.executable} {OPAQUE_F}")], limits=LIMITS) as ex:
            pid = ex.externs["f"].backend.proc.pid
            assert os.getsid(pid) == pid != os.getsid(0)
            assert signal.getsignal(signal.SIGTERM) == ex._on_signal
            raise KeyboardInterrupt
    assert gone(pid, 0.5)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_child_that_ignores_eof_and_sigterm_is_killed(tmp_path):
    body = '''
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdin.read()
    time.sleep(60)
    '''
    start = time.monotonic()
    with Externs([("f", script(tmp_path, body))], limits=LIMITS) as ex:
        pid = ex.externs["f"].backend.proc.pid
        time.sleep(0.3)            # let it install its handler
    assert gone(pid, 0.1)
    assert time.monotonic() - start < 5


def test_the_childs_own_children_go_too(tmp_path):
    body = f'''
    import subprocess
    kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open({str(tmp_path / "kid")!r}, "w").write(str(kid.pid))
    serve(lambda n, x: value(x))
    '''
    with Externs([("f", script(tmp_path, body))], limits=LIMITS) as ex:
        graph = compile_with(ex, "f(x)", x=1.0)
        kid = int((tmp_path / "kid").read_text())
        assert alive(kid)
        pid = ex.externs["f"].backend.proc.pid
    assert gone(pid, 0.1)
    assert gone(kid, 3.0)
    assert graph.nodes[graph.output].shape == ()


RUNNER = '''
import sys, time
from gradcalc.errors import Limits
from gradcalc.extern import Externs

with Externs([("f", sys.argv[1])], limits=Limits()) as ex:
    print(ex.externs["f"].backend.proc.pid, file=sys.stderr, flush=True)
    if sys.argv[2] == "wait":
        time.sleep(60)
    while True:
        print("x" * 4096)
'''


def _runner(mode):
    """gradcalc's side in a process of its own, with a child that neither reads its stdin
    nor exits when it closes: only gradcalc's own cleanup can end it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)'"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, sleeper, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    child = int(proc.stderr.readline())
    assert alive(child)
    return proc, child


def test_sigterm_to_gradcalc_ends_the_children():
    proc, child = _runner("wait")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == -signal.SIGTERM         # it still dies of the signal
    assert gone(child, 1.0)


def test_a_broken_stdout_pipe_ends_the_children():
    proc, child = _runner("write")
    proc.stdout.close()
    proc.wait(10)
    assert gone(child, 1.0)
    proc.stderr.close()


# ------------------------------------------------------------------ the page's training
def test_training_through_the_opaque_f_follows_the_exact_one():
    """The page's Model2: Adam(lr=0.1), MSELoss, batches of 10, 20 epochs, weights from
    [0, 0], trained through samples/opaque_f.py, takes the exact model's path (f is linear
    in w, so central differences are exact up to rounding) and ends near the true
    (1.2, -3.4), as the page's 1.1996, -3.3987 do. The loop is spelled out here with
    gradcalc's own Adam: `gradcalc fit --extern` is wired by the CLI."""
    from gradcalc.fit.optimizers import make_optimizer
    xs = np.random.default_rng(0).random(200)
    ys = 2 * xs * 1.2 + xs ** 2 * -3.4

    def train(text, ops):
        opt, params = make_optimizer("adam", lr=0.1), {"w": np.zeros(2)}
        for _ in range(20):
            for b in range(0, 200, 10):
                bindings = {"x": xs[b:b + 10], "y": ys[b:b + 10], "w": params["w"].copy()}
                graph = Compiler(text, bindings, wrt=["w"], externs=ops, limits=LIMITS).program(
                    parse_program(text, LIMITS.max_depth))
                _, got = grads(graph)
                opt.step(params, got)
        return params["w"]

    exact = train("mse_loss(2*x*w[0] + x**2*w[1], y)", {})
    with Externs([("f", f"{sys.executable} {OPAQUE_F}")], limits=LIMITS) as ex:
        opaque = train("mse_loss(f(x, w), y)", ex.ops)
        assert ex.externs["f"].backend.calls == 400 * 5
    np.testing.assert_allclose(opaque, exact, rtol=1e-6)
    np.testing.assert_allclose(opaque, [1.1996, -3.3990], atol=1e-4)
