"""Walk the op table (gradcalc.ops.OPS): every op is complete, and every op has a recorded
PyTorch reference.

Completeness: a numpy forward, one VJP rule per array input (or a variadic rule), a shape
inference, a PyTorch backward-node name (constructors excepted: they build constants and have
no node), a kind, sample calls, and a sympy *forward* form. Each sample must actually use
its op, compile, and evaluate to the shape `infer` promised.

Reference: for every name the language can call (and every operator through its syntax)
some case of tests/reference/torch_reference.json, recorded from real PyTorch, calls it; and
for every differentiable op some case runs backward *through* it, so its rule was compared
with torch's, not merely its forward.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gradcalc.compile import Compiler
from gradcalc.errors import GradcalcError
from gradcalc.ops import OPS, Site
from gradcalc.parser import parse_program
from gradcalc.values import from_json

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them

REFERENCE = Path(__file__).resolve().parent / "reference" / "torch_reference.json"
FAMILIES = {"elementwise", "reduction", "linalg", "shape", "loss", "constructor"}
# ops reached through operator syntax, not by name (SPEC 2): name -> how the text spells it
OPERATOR_SYNTAX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "neg": "unary -",
                   "pow": "** or ^", "matmul": "@", "index": "x[...]", "transpose": ".T",
                   "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
# ops through which no gradient flows by definition: their rule is None (a comparison's
# output is not differentiable in torch), and single inputs that get none (where's condition)
NO_GRADIENT = {"detach", "lt", "le", "gt", "ge", "eq", "ne"}
NO_GRADIENT_INPUTS = {("where", 0)}
TORCH_NODE = re.compile(r"^[A-Z][A-Za-z0-9]*Backward\d*$")

ALL = sorted(OPS)
NON_CONSTRUCTORS = sorted(n for n, op in OPS.items() if op.family != "constructor")


def compile_sample(expr, shapes, domain, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = domain
    bindings = {n: rng.uniform(lo, hi, size=s) for n, s in shapes.items()}
    return Compiler(expr, bindings, seed=seed, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))


# ---------------------------------------------------------------- fields
@pytest.mark.parametrize("name", ALL)
def test_op_has_every_field(name):
    op = OPS[name]
    assert op.name == name
    assert op.family in FAMILIES, f"{name}: unknown family {op.family!r}"
    assert callable(op.forward), f"{name}: no forward"
    assert callable(op.infer), f"{name}: no infer"
    assert op.samples, f"{name}: no samples for the table-driven tests"
    for sample in op.samples:
        expr, shapes, (lo, hi) = sample
        assert isinstance(expr, str) and isinstance(shapes, dict) and lo < hi, sample
    arrays = [p for p in op.params if p.kind == "array"]
    if op.family == "constructor":
        assert not op.array_params, f"{name}: a constructor takes no arrays"
        assert op.vjps == () or op.vjps is None, f"{name}: a constructor has no VJP"
        return
    assert op.array_params, f"{name}: an op needs an array input"
    if op.variadic:
        assert callable(op.vjps), f"{name}: a variadic op needs a rule factory i -> rule"
        for i in range(3):
            assert callable(op.vjp(i)), f"{name}: no rule for input {i}"
    else:
        assert isinstance(op.vjps, tuple), f"{name}: vjps must be a tuple"
        assert len(op.vjps) == len(arrays), (
            f"{name}: {len(arrays)} array inputs but {len(op.vjps)} rules")
        for i, rule in enumerate(op.vjps):
            if name in NO_GRADIENT or (name, i) in NO_GRADIENT_INPUTS:
                assert rule is None
            else:
                assert callable(rule), f"{name}: input {i} ({arrays[i].name}) has no VJP rule"
    assert op.torch, f"{name}: no PyTorch backward-node name"
    assert isinstance(op.torch, str) or callable(op.torch)
    if isinstance(op.torch, str):
        assert TORCH_NODE.match(op.torch), f"{name}: {op.torch!r} is not a node name"


def test_sig_keyword_only_marker():
    from gradcalc.ops import parse_sig
    ps = parse_sig("x, *, dim:int?=None, keepdim:bool=False")
    assert [(p.name, p.kind, p.kwonly) for p in ps] == [
        ("x", "array", False), ("dim", "int", True), ("keepdim", "bool", True)]
    assert [p.name for p in OPS["max"].params if p.kwonly] == ["dim", "keepdim"]
    assert not any(p.kwonly for p in OPS["sum"].params)      # sum(x, 0) stays positional


@pytest.mark.parametrize("name", NON_CONSTRUCTORS)
def test_torch_node_names_of_samples(name):
    """The node name (a string or a function of which inputs are constants) resolves to a
    PyTorch backward-node name in every sample graph."""
    for expr, shapes, domain in OPS[name].samples:
        graph = compile_sample(expr, shapes, domain)
        nodes = [n for n in graph.nodes if n.kind == "op" and n.op.name == name]
        assert nodes, f"{name}: sample {expr!r} does not use {name}"
        for n in nodes:
            assert isinstance(n.torch, str) and TORCH_NODE.match(n.torch), (expr, n.torch)


@pytest.mark.parametrize("name,const_flags,params,expected", [
    # which inputs are constants, or which params are given, decide the node in torch
    ("pow", (False, True), {}, "PowBackward0"),      # x ** 2
    ("pow", (False, False), {}, "PowBackward1"),     # x ** y
    ("pow", (True, False), {}, "PowBackward2"),      # 2 ** x
    ("sub", (False, False), {}, "SubBackward0"),
    ("sub", (True, False), {}, "RsubBackward1"),     # 1 - x
    ("sum", (False,), {"dim": None}, "SumBackward0"),
    ("sum", (False,), {"dim": -1}, "SumBackward1"),
    ("mean", (False,), {"dim": None}, "MeanBackward0"),
    ("mean", (False,), {"dim": -1}, "MeanBackward1"),
    ("max", (False,), {"dim": None}, "MaxBackward1"),
    ("max", (False,), {"dim": -1}, "MaxBackward0"),
    ("index", (False,), {"idx": (0,)}, "SelectBackward0"),
    ("index", (False,), {"idx": (slice(1, 2),)}, "SliceBackward0"),
])
def test_torch_node_name_depends_on_the_call(name, const_flags, params, expected):
    ranks = (1,) * len(const_flags)
    assert OPS[name].torch_name(Site(const_flags, params, ranks)) == expected


@pytest.mark.parametrize("name", ALL)
def test_samples_use_their_op_and_match_inferred_shapes(name):
    from gradcalc.engine import plain
    op = OPS[name]
    for expr, shapes, domain in op.samples:
        if op.family == "constructor":
            assert re.search(rf"\b{name}\(", expr), f"sample {expr!r} does not call {name}"
        graph = compile_sample(expr, shapes, domain)
        values = plain.forward(graph)
        for eq in graph.nodes:
            assert values[eq.id].shape == eq.shape, (
                f"{expr!r}: node {eq} evaluates to shape {values[eq.id].shape}")
            assert values[eq.id].dtype == np.float64
        leaves = [graph.nodes[i] for i in graph.leaves.values()]
        assert leaves and all(leaf.requires_grad for leaf in leaves)


@pytest.mark.parametrize("name", ALL)
def test_sympy_form(name):
    """Every op has a sympy *forward* form (the symbolic check differentiates it on its own,
    never reading a VJP rule)."""
    assert callable(OPS[name].sympy), f"{name} has no sympy forward form"


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.pointwise))
def test_elementwise_sympy_form_evaluates_like_forward(name):
    """An elementwise sympy form is a formula on scalars: at a point inside the sample
    domain it gives the forward's number (so it describes the same function)."""
    import sympy as sp
    op = OPS[name]
    if op.sympy is None:
        pytest.skip("no sympy form")
    expr, shapes, (lo, hi) = op.samples[0]
    n_arrays = len(op.array_params)
    point = [lo + (hi - lo) * f for f in (0.37, 0.71, 0.53)][:n_arrays]
    if name == "clamp":
        point = [0.8, -0.5, 0.5]          # x above max: the result is the max bound
    syms = sp.symbols(f"a0:{n_arrays}", real=True)
    form = op.sympy(sp, *syms)
    got = float(form.subs(dict(zip(syms, point))).evalf())
    want = float(op.forward(*[np.float64(v) for v in point]))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (name, point)


# ---------------------------------------------------------------- the language's names
SPEC_FUNCTIONS = (
    "exp log log2 log10 log1p expm1 sqrt abs sign sin cos tan asin acos atan sinh cosh tanh "
    "sigmoid relu leaky_relu elu softplus erf pow atan2 hypot maximum minimum clamp "
    "sum mean prod cumprod max min norm logsumexp softmax log_softmax dot matmul outer trace "
    "mse_loss binary_cross_entropy binary_cross_entropy_with_logits cross_entropy "
    "ones zeros full eye linspace arange rand randn reshape stack cat detach "
    "where lt le gt ge eq ne").split()


def test_every_spec_function_is_in_the_table():
    missing = [n for n in SPEC_FUNCTIONS if n not in OPS]
    assert not missing
    hidden = [n for n in SPEC_FUNCTIONS if not OPS[n].named]
    assert not hidden, f"callable by name per SPEC 2, but not named: {hidden}"


def test_every_op_is_a_spec_function_or_an_operator():
    extra = sorted(set(OPS) - set(SPEC_FUNCTIONS) - set(OPERATOR_SYNTAX))
    assert not extra, f"ops the language does not name: {extra}"


def test_every_operator_is_declared_in_its_entry():
    declared = {n for n, op in OPS.items() if op.syntax}
    assert declared == set(OPERATOR_SYNTAX)


@pytest.mark.parametrize("expr,by_name", [("x + y", "add(x, y)"), ("x - y", "sub(x, y)"),
                                          ("x * y", "mul(x, y)"), ("x / y", "div(x, y)"),
                                          ("-x", "neg(x)"), ("x ** y", "pow(x, y)"),
                                          ("x @ y", "matmul(x, y)")])
def test_an_operator_is_also_callable_by_name(expr, by_name):
    env = {"x": np.array([1.5, -2.0]), "y": np.array([0.5, 3.0])}
    a = Compiler(expr, env, limits=LIMITS).program(parse_program(expr, LIMITS.max_depth))
    b = Compiler(by_name, env, limits=LIMITS).program(parse_program(by_name, LIMITS.max_depth))
    assert [n.op.name for n in a.nodes if n.op] == [n.op.name for n in b.nodes if n.op]


def test_pointwise_ops_are_exactly_the_elementwise_family():
    """One flag, read by the engine's diagonal Jacobian and the checks' one-symbol
    derivation: every op of the elementwise family is pointwise, no other op is."""
    for name, op in OPS.items():
        assert op.pointwise == (op.family == "elementwise"), name


def test_only_rand_and_randn_draw_random_numbers():
    assert {n for n, op in OPS.items() if op.random} == {"rand", "randn"}


def test_syntax_only_ops_are_not_callable_by_name():
    for name, op in OPS.items():
        if op.named:
            continue
        with pytest.raises(GradcalcError) as exc:
            Compiler(f"{name}(x)", {"x": np.ones(2)}, limits=LIMITS).program(parse_program(f"{name}(x)", LIMITS.max_depth))
        assert exc.value.kind == "name", name


# ---------------------------------------------------------------- recorded references
_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul",
           "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


def ops_called(text: str) -> set:
    """Op names a text calls, by name or through operator syntax (iterative AST walk)."""
    out = set()
    stack = list(parse_program(text, LIMITS.max_depth))
    while stack:
        n = stack.pop()
        if n is None:
            continue
        k = n.kind
        if k == "call":
            out.add(n.a)
            stack.extend(n.b)
            stack.extend(v for _, v, _ in n.c)
        elif k == "binary":
            out.add(_BINARY[n.a])
            stack += [n.b, n.c]
        elif k == "unary":
            if n.a == "-":
                out.add("neg")
            stack.append(n.b)
        elif k == "index":
            out.add("index")
            stack.append(n.a)
            stack.extend(n.b)
        elif k == "attr":
            out.add("transpose")
            stack.append(n.a)
        elif k == "assign":
            stack.append(n.b)
        elif k == "expr":
            stack.append(n.a)
        elif k == "funcdef":
            stack.append(n.c)
        elif k == "array":
            stack.extend(n.a)
        elif k == "slice":
            stack += [n.a, n.b, n.c]
    return out


def _reference_cases():
    return json.loads(REFERENCE.read_text())["cases"]


def _case_text(case):
    req = case["request"]
    return req["expr"] if "expr" in req else req["program"]


@pytest.fixture(scope="module")
def reference_calls():
    calls = {}
    for case in _reference_cases():
        texts = [_case_text(case)]
        texts += [v for v in case["request"].get("vars", {}).values()
                  if isinstance(v, str) and "(" in v]          # constant-expression VALUEs
        for t in texts:
            for name in ops_called(t):
                calls.setdefault(name, []).append(case["id"])
    return calls


@pytest.fixture(scope="module")
def reference_backward_ops():
    """Op names with at least one node that requires grad in some reference case: backward
    ran through the op's rule and torch recorded the grad."""
    seen = {}
    for case in _reference_cases():
        req = case["request"]
        text = _case_text(case)
        bindings = {k: from_json(v, k, limits=LIMITS) for k, v in req.get("vars", {}).items()}
        graph = Compiler(text, bindings, wrt=req.get("wrt"), limits=LIMITS).program(parse_program(text, LIMITS.max_depth))
        for eq in graph.nodes:
            if eq.kind == "op" and eq.requires_grad:
                seen.setdefault(eq.op.name, case["id"])
    return seen


def test_ops_called_walks_operators():
    assert ops_called("f(x) = -x.T[0]; y = 2**f(a) @ b") == {
        "neg", "transpose", "index", "pow", "matmul", "f"}


def test_ops_called_covers_rand():
    assert "rand" in ops_called("x * sign(rand(2, 3) + 1)")


@pytest.mark.parametrize("name", ALL)
def test_op_has_a_recorded_torch_reference(name, reference_calls):
    spelled = OPERATOR_SYNTAX.get(name, f"{name}(...)")
    assert reference_calls.get(name), (
        f"no case in {REFERENCE.name} calls {name} (as {spelled}); add one to "
        "tests/reference/cases.py and re-record with an interpreter that has torch 2.13 "
        "tests/reference/record_torch.py")


@pytest.mark.parametrize("name", sorted(set(NON_CONSTRUCTORS) - NO_GRADIENT))
def test_op_rule_is_exercised_by_a_reference(name, reference_backward_ops):
    assert name in reference_backward_ops, (
        f"no reference case runs backward through {name}: its VJP was never compared with torch")


def test_reference_file_is_strict_json():
    def reject(token):
        raise AssertionError(f"bare {token} in the reference JSON")
    doc = json.loads(REFERENCE.read_text(), parse_constant=reject)
    assert doc["count"] == len(doc["cases"])
    assert doc["torch_version"].startswith("2.13")
    ids = [c["id"] for c in doc["cases"]]
    assert len(ids) == len(set(ids))
