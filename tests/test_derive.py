"""A derivative without numbers (issue 13, item 9): free names become scalar symbols and
sympy differentiates the forward formula built from the op table; --claim judges a
derivative worked out by hand. Through real processes, as a user types them."""
from __future__ import annotations

import pytest

from clirun import cli


def test_the_issue_example_prints_the_derivative_formula():
    r = cli(["x*sin(x)**2"], isolate=True)
    assert r.status == 0, r.stderr
    assert r.stdout.splitlines() == ["y = x*sin(x)**2",
                                     "∂y/∂x = 2*x*sin(x)*cos(x) + sin(x)**2"]


@pytest.mark.parametrize("expr,expected", [
    ("3*a + 2*b*b + log(c)", {"a": "3", "b": "4*b", "c": "1/c"}),     # the seed example
    ("x^3/3 + 0.5*x*x", {"x": "x**2 + x"}),
    ("atan2(y, x)", {"y": "x/(x**2 + y**2)", "x": "-y/(x**2 + y**2)"}),
    ("sqrt(x) * pi", {"x": "pi/(2*sqrt(x))"}),
])
def test_partial_derivatives_in_json(expr, expected):
    r = cli([expr, "--json"], isolate=True)
    assert r.status == 0, r.stderr
    obj = r.json()
    assert obj["expression"] == expr
    assert obj["derivatives"] == expected
    assert obj["claims"] == []


def test_claims_right_by_proof_wrong_by_a_counterexample():
    r = cli(["x*sin(x)**2", "--claim", "x: sin(2*x)*x + sin(x)**2", "--claim", "x: 2*x*sin(x)",
             "--json"], isolate=True)
    assert r.status == 1                          # a wrong claim is a disagreement
    right, wrong = r.json()["claims"]
    assert (right["right"], right["how"]) == (True, "symbolic")
    assert (wrong["right"], wrong["how"]) == (False, "numeric")
    x = wrong["counterexample"]["at"]["x"]
    import math
    assert wrong["counterexample"]["claim"] == pytest.approx(2 * x * math.sin(x))
    assert wrong["counterexample"]["derivative"] == pytest.approx(
        math.sin(x) ** 2 + 2 * x * math.sin(x) * math.cos(x))


def test_a_claim_about_a_name_the_expression_lacks_is_a_usage_error():
    cli(["x*sin(x)", "--claim", "q: 1"], isolate=True).assert_error("usage")


def test_a_claim_with_values_bound_is_a_usage_error():
    cli(["x*sin(x)", "x=1", "--claim", "x: 1"], isolate=True).assert_error("usage")


def test_an_expression_that_needs_values_keeps_the_name_error():
    r = cli(["sum(q)"], isolate=True)
    r.assert_error("name")
    assert "unknown name 'q'" in r.stderr


def test_a_partly_bound_expression_keeps_the_name_error():
    cli(["x*y", "x=1"], isolate=True).assert_error("name")


def test_claim_text_never_reaches_sympy_parsers():
    """A claim is read by gradcalc's parser: Python in it is a syntax or name error."""
    r = cli(["x*2", "--claim", "x: __import__('os').system('true')"], isolate=True)
    r.assert_error("syntax")
    assert r.stderr.splitlines()[1:] == ["  __import__('os').system('true')", "             ^"]
    cli(["x*2", "--claim", "x: __import__(x)"], isolate=True).assert_error("name")
