"""One test (at least) per limit of SPEC section 8: text length, nesting depth, elements per
array, working memory, --repeat, the symbolic check's time budget, and the bounds that
follow from them (JSON Lines line length, dimensions, graph size, data files).

Each limit is tested at its default and through its option, on both sides of the boundary
where that is cheap: hitting a limit is exit 2 with kind "limit" and a message naming the
option, never a MemoryError, an OOM kill, a RecursionError or a hang. The symbolic time
budget is the exception: it ends that check only (reported as skipped) and leaves the exit
status alone. Memory-heavy runs happen in a subprocess under an address-space cap.
"""
from __future__ import annotations

import json
import time

import pytest

from clirun import cli
from gradcalc.errors import GradcalcError, Limits


def test_defaults_are_the_documented_ones():
    lim = Limits()
    assert lim.max_text == 1_000_000
    assert lim.max_depth == 200
    assert lim.max_elements == 10**8
    assert lim.max_memory == 2 * 1024**3
    assert lim.max_repeat == 10_000
    assert lim.symbolic_timeout == 10.0
    assert lim.max_line == 8_000_000
    assert lim.max_ndim == 32
    assert lim.max_nodes == 1_000_000


def ok(r):
    r.assert_clean()
    assert r.status == 0, r.stderr
    return r.json()


def limit(r, *names):
    r.assert_error("limit", json_too="--json" in r.args)
    for n in names:
        assert n in r.message, r.message
    assert "out of memory" not in r.message        # the limit caught it, not a MemoryError
    return r


# ---------------------------------------------------------------- text length
def test_text_limit_default_boundary(tmp_path):
    """1,000,000 characters is allowed, 1,000,001 is not (a long comment keeps it cheap)."""
    body = "x * 2 # "
    p = tmp_path / "at.grad"
    p.write_text(body + "c" * (1_000_000 - len(body)))
    assert len(p.read_text()) == 1_000_000
    obj = ok(cli(["-f", str(p), "x=3", "--json", "--check", "none"]))
    assert obj["grads"]["x"] == 2.0
    p.write_text(body + "c" * (1_000_001 - len(body)))
    limit(cli(["-f", str(p), "x=3", "--json"]), "1,000,001", "1,000,000")


def test_text_limit_option():
    assert ok(cli(["x + x", "x=1", "--max-text", "5", "--json", "--check", "none"]))
    limit(cli(["x + x", "x=1", "--max-text", "4", "--json"]), "--max-text")
    # a VALUE is text too, and stdin
    limit(cli(["x", "x=1,2,3", "--max-text", "4", "--json"]), "--max-text")
    limit(cli(["x", "x=@-", "--max-text", "4", "--json"], "1,2,3"), "--max-text")


def test_long_flat_chain_works_without_recursion():
    """'a+'*200000+'a' is 400,001 characters, under the text limit: it must be computed
    (the parser and the compiler loop, they do not recurse)."""
    text = "a+" * 200000 + "a"
    r = cli([text, "a=1", "--json", "--check", "none", "--no-jacobian"], timeout=120)
    obj = ok(r)
    assert obj["output"]["value"] == 200001.0 and obj["grads"]["a"] == 200001.0
    assert r.seconds < 60


# ---------------------------------------------------------------- nesting depth
@pytest.mark.parametrize("depth, good", [(199, True), (200, False)])
def test_depth_default_boundary(depth, good):
    text = "(" * depth + "x" + ")" * depth
    r = cli([text, "x=2", "--json", "--check", "none"])
    if good:
        assert ok(r)["grads"]["x"] == 1.0
    else:
        limit(r, "200", "--max-depth")


def test_depth_of_other_nestings():
    for text in ["-" * 250 + "x", "x" + "**x" * 250, "[" * 250 + "1" + "]" * 250,
                 "sum(" * 250 + "x" + ")" * 250, "x" + "+(x" * 250 + ")" * 250]:
        limit(cli([text, "x=1", "--json"]), "--max-depth")


def test_depth_option():
    assert ok(cli(["((x))", "x=1", "--max-depth", "3", "--json", "--check", "none"]))
    limit(cli(["((x))", "x=1", "--max-depth", "2", "--json"]), "--max-depth")


def test_hundred_thousand_parentheses(tmp_path):
    p = tmp_path / "deep.grad"
    p.write_text("(" * 100_000 + "x" + ")" * 100_000)
    limit(cli(["-f", str(p), "x=1", "--json"]), "--max-depth")
    # with the depth limit raised past what Python can recurse, the limit is the option's
    # (issue 14 item 15): the parser's nesting is a stack of its own, not Python's
    obj = ok(cli(["-f", str(p), "x=1", "--max-depth", "1000000", "--json"]))
    assert obj["output"]["value"] == 1.0 and obj["grads"]["x"] == 1.0
    limit(cli(["-f", str(p), "x=1", "--max-depth", "99999", "--json"]), "--max-depth")


def test_deep_json_and_values():
    limit(cli(["x", "x=" + "(" * 250 + "1" + ")" * 250, "--json"]), "--max-depth")
    limit(cli(["x", "x=1", "-g", "(" * 250 + "1" + ")" * 250, "--json"]), "--max-depth")
    r = cli(["sum(x)", "x=" + "[" * 40 + "1" + "]" * 40, "--json"])
    r.assert_error("value", json_too=True)                    # at most 32 dimensions
    r = cli(["-"], b"[" * 100_000 + b"\n")
    assert r.json_lines()[0]["error"]["kind"] == "usage"


# ---------------------------------------------------------------- elements per array
def test_elements_option_boundary():
    assert ok(cli(["sum(ones(10) * x)", "x=1", "--max-elements", "10", "--json",
                   "--check", "none"]))["grads"]["x"] == 10.0
    limit(cli(["sum(ones(11) * x)", "x=1", "--max-elements", "10", "--json"]),
          "11 elements", "--max-elements")
    limit(cli(["sum(x)", "x=1,2,3", "--max-elements", "2", "--json"]), "--max-elements")


@pytest.mark.parametrize("text", ["ones(1e12)", "sum(ones(100000, 100000))",
                                  "ones(100000001)", "eye(20000)", "zeros(10000, 10001)",
                                  "sum(outer(x, x))"])
def test_elements_default(text):
    r = cli([text, "x=ones(20000)", "--json"], isolate=True, timeout=60)
    limit(r, "--max-elements")
    assert r.seconds < 20


def test_dimensions():
    assert ok(cli([f"sum(ones({','.join(['1'] * 32)}) * x)", "x=1", "--json",
                   "--check", "none"]))
    limit(cli([f"sum(ones({','.join(['1'] * 33)}) * x)", "x=1", "--json"]), "33 dimensions")


# ---------------------------------------------------------------- working memory
def test_memory_checked_before_allocating():
    """3.2 GB of ones under a 3 GB address space: only a check made before allocating can
    answer with the limit; an allocation first would be a MemoryError."""
    r = cli(["sum(ones(20000, 20000) * x)", "x=1", "--max-elements", "1000000000",
             "--max-memory", "1G", "--json"], isolate=True, timeout=60)
    limit(r, "--max-memory", "1 GiB")


def test_memory_default_counts_values_and_grads():
    # ones(10000, 10000) is 800 MB: values, grads and the product need about 4.5 GiB
    r = cli(["sum(ones(10000, 10000) * x)", "x=1", "--json"], isolate=True, timeout=60)
    limit(r, "--max-memory", "2 GiB")


def test_memory_option():
    assert ok(cli(["sum(x*2)", "x=ones(100, 100)", "--max-memory", "2M", "--json",
                   "--check", "none"]))
    limit(cli(["sum(x*2)", "x=ones(1000, 1000)", "--max-memory", "1M", "--json"]),
          "--max-memory")
    for bad in ("0", "-1", "inf", "lots", "1e400"):
        cli(["x", "x=1", "--max-memory", bad]).assert_error("usage")


def test_jacobian_memory():
    """Asked for, a Jacobian over the memory limit is a limit error; by default a large one
    is summarised, never silently dropped."""
    r = cli(["x * ones(10000)", "x=ones(10000)", "-g", "1", "--jacobian", "--json"],
            isolate=True, timeout=60)
    limit(r, "Jacobian", "--max-memory")
    obj = ok(cli(["x * ones(10000)", "x=ones(10000)", "-g", "1", "--json", "--check", "none"],
                 isolate=True, timeout=60))
    assert obj["jacobian"] is None and "10,000" in obj["jacobian_note"]


def test_data_files_are_bounded_by_memory(tmp_path):
    p = tmp_path / "big.json"
    p.write_text("[" + "1," * 50_000 + "1]")                       # 100 KB
    assert ok(cli(["sum(x)", f"x=@{p}", "--json", "--check", "none"]))["output"]["value"] \
        == 50001.0
    limit(cli(["sum(x)", f"x=@{p}", "--max-memory", "1M", "--json"]), "--max-memory")


# ---------------------------------------------------------------- repeat
def test_repeat_default_boundary():
    obj = ok(cli(["x * 3", "x=1", "--repeat", "10000", "--json", "--check", "none"]))
    assert obj["grads"]["x"] == 30000.0
    limit(cli(["x * 3", "x=1", "--repeat", "10001", "--json"]), "10,000")


def test_repeat_option_and_jsonl():
    limit(cli(["x", "x=1", "--repeat", "6", "--max-repeat", "5", "--json"]), "5")
    r = cli(["-"], b'{"id": 1, "expr": "x", "vars": {"x": 1}, "repeat": 1000000000}\n')
    out = r.json_lines()[0]
    assert out["id"] == 1 and out["error"]["kind"] == "limit"


# ---------------------------------------------------------------- symbolic time budget
# sympy needs far more than 1 s: each line doubles the tree its diff walks (a softmax is
# no longer slow: the per-element symbolic path caps what it builds)
SLOW = ["y = x; " + "y = 0.5*y*y + 0.9*y; " * 30 + "sum(y)", "x=linspace(0,1,60)"]


def test_symbolic_timeout_is_skipped_not_failed():
    r = cli([*SLOW, "--symbolic-timeout", "1", "--json"], timeout=60)
    obj = ok(r)                                       # exit 0: the budget ends the check only
    sym = obj["checks"]["symbolic"]
    assert sym["passed"] is None and "--symbolic-timeout" in sym["skipped"]
    assert r.seconds < 15


def test_symbolic_timeout_does_not_change_the_exit_status_of_other_checks():
    r = cli([*SLOW, "--symbolic-timeout", "0.5", "--check", "all", "--json"], timeout=60)
    obj = ok(r)
    assert obj["checks"]["symbolic"]["passed"] is None
    assert obj["checks"]["numeric"]["passed"] is True


def test_exponent_blowup_through_the_symbolic_check():
    """(x+1)**100000: sympy must not expand it into 100,001 terms; it either answers within
    the budget or is skipped, and the exit status is 0."""
    for text, x in (("(x+1)**100000", "x=0.5"), ("sum((x+1)**100000)", "x=0.5,0.25"),
                    ("expand_me(x) = (x+1)**1000*(x-1)**1000; expand_me(x)", "x=0.5")):
        r = cli([text, x, "--symbolic-timeout", "3", "--json"], isolate=True, timeout=60)
        obj = ok(r)
        assert obj["checks"]["symbolic"]["passed"] in (True, None)
        assert r.seconds < 20


def test_symbolic_timeout_in_jsonl_keeps_the_stream():
    reqs = [{"id": 1, "expr": SLOW[0], "vars": {"x": "linspace(0,1,60)"}},
            {"id": 2, "expr": "sum(x*x)", "vars": {"x": [1, 2]}}]
    r = cli(["-", "--symbolic-timeout", "1"], "".join(json.dumps(q) + "\n" for q in reqs),
            timeout=60)
    r.assert_clean()
    a, b = r.json_lines()
    assert a["id"] == 1 and a["checks"]["symbolic"]["passed"] is None
    assert b["id"] == 2 and b["grads"]["x"] == [2.0, 4.0]
    assert b["checks"]["symbolic"]["passed"] is True
    assert r.status == 0 and r.stderr == ""


def test_symbolic_timeout_option_validation():
    for bad in ("0", "-1", "nan"):
        cli(["x", "x=1", "--symbolic-timeout", bad]).assert_error("usage")


# ---------------------------------------------------------------- JSON Lines line length
def test_jsonl_line_limit_follows_the_text_limit():
    good = b'{"expr": "x", "vars": {"x": 1}, "check": "none"}'
    pad = b" " * (800 - len(good))
    r = cli(["-", "--max-text", "100"], good + pad + b"\n" + good + pad + b" \n")
    a, b = r.json_lines()
    assert a["output"]["value"] == 1.0                      # 800 bytes: allowed
    assert b["error"]["kind"] == "limit" and "800 bytes" in b["error"]["message"]
    assert r.status == 2


# ---------------------------------------------------------------- graph size
def test_graph_size_limit_through_the_api():
    from gradcalc import compute
    with pytest.raises(GradcalcError) as exc:
        compute("+".join(["x"] * 2000), x=1.0, check="none", limits=Limits(max_nodes=1000))
    assert exc.value.kind == "limit" and "1,000 operations" in exc.value.message
    # user functions expand; the expansion counts
    prog = "f(x) = x*x + x; g(x) = f(f(f(f(x)))); h(x) = g(g(g(g(x)))); h(h(h(y)))"
    with pytest.raises(GradcalcError) as exc:
        compute(prog, y=0.1, check="none", limits=Limits(max_nodes=50))
    assert exc.value.kind == "limit"


def test_json_answer_larger_than_the_memory_limit_is_refused_before_it_is_built():
    """x*2 over 10^6 elements: output, cotangent, grad and the leaf's value are 4x10^6
    numbers, about 256 MB of JSON work at 64 bytes each: over a 100M limit (exit 2, kind
    limit), under 1G (exit 0).
    The human view summarises large arrays and is not affected."""
    args = ["x*2", "x=ones(1000000)", "-g", "1", "--check", "none", "--json"]
    small = cli(args + ["--max-memory", "100M"], isolate=True, timeout=120)
    assert small.status == 2, small.stderr
    err = small.json()["error"]
    assert err["kind"] == "limit" and "JSON answer holds 4,000,000 numbers" in err["message"]
    big = cli(args + ["--max-memory", "1G"], isolate=True, timeout=120)
    assert big.status == 0, big.stderr
    assert len(big.json()["grads"]["x"]) == 1_000_000
