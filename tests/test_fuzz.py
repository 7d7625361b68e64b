"""Property tests (hypothesis) for hostile input: random text and random token soups fed to the
lexer/parser in-process, through the API, to the command line and to JSON Lines mode.

The properties: the parser either returns statements or raises a GradcalcError (syntax or
limit) with a position inside the text; the API raises nothing but GradcalcError; the CLI
exits 0, 1 or 2 with no traceback and no escape byte, and a bad input gives a one-line
reason; JSON Lines answers every non-blank line with one strict JSON object and the stream
survives. Example counts are modest and the runs derandomized, so the suite stays fast and
deterministic; raise GRADCALC_FUZZ_EXAMPLES to explore more.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clirun import cli
from gradcalc.errors import GradcalcError, Limits

N = int(os.environ.get("GRADCALC_FUZZ_EXAMPLES", "0")) or None


def fuzz(n):
    return settings(max_examples=N or n, deadline=None, derandomize=N is None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


LIMITS = Limits(max_elements=10**5, max_memory=64 * 1024**2, max_text=20_000)

# text of every kind: ASCII, control characters, look-alikes, surrogates, astral planes
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
ASCII_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=60)

OPS = ["exp", "log", "sqrt", "sum", "mean", "max", "norm", "softmax", "clamp", "reshape",
       "stack", "cat", "ones", "eye", "linspace", "arange", "matmul", "dot", "outer", "trace",
       "cross_entropy", "mse_loss", "maximum", "pow", "detach", "full", "rand", "logsumexp"]
TOKENS = (["x", "y", "M", "s", "(", ")", "[", "]", ",", "+", "-", "*", "/", "@", "**", "^",
           ".T", ".", "=", ";", "\n", ":", "0", "1", "2", "-1", "0.5", "1e3", "1e999", "inf",
           "nan", "pi", "e", "None", "True", "dim=", "dim=0", "keepdim=True", "p=", "min=",
           "value=", "f", "f(x)=", "#", " ", "\t", "#:", "--grad", "'", '"', "\\", "\x1b",
           "\u2212", "\uff11", "\u200b", "__class__", "lambda", "exec", "__import__"]
          + [op + "(" for op in OPS])
SOUP = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25).map("".join)
VARS = {"x": "1,2,3", "y": "0.5", "M": "[[1,2],[3,4]]", "s": "0"}


def _api_ok_or_error(text, **settings_kw):
    from gradcalc.api import run
    from gradcalc.settings import Settings, validate
    try:
        r = run(text, dict(VARS), validate(Settings(**settings_kw), LIMITS), LIMITS)
    except GradcalcError as err:
        assert err.kind in ("syntax", "name", "call", "shape", "value", "limit", "usage")
        if err.position is not None:
            assert 0 <= err.position <= max(len(text), len(err.source or ""))
        return None
    json.dumps(r.to_json(), allow_nan=False)       # always strict JSON
    return r


@fuzz(400)
@given(ANY_TEXT)
def test_parser_on_any_text(text):
    from gradcalc.parser import parse_program
    try:
        stmts = parse_program(text, 200)
    except GradcalcError as err:
        assert err.kind in ("syntax", "limit")
        assert isinstance(err.position, int) and 0 <= err.position <= len(text)
        return
    assert stmts and text.isascii() or "#" in text   # non-ASCII only inside comments


@fuzz(400)
@given(SOUP)
def test_parser_on_token_soup(text):
    from gradcalc.parser import parse_program
    try:
        parse_program(text, 200)
    except GradcalcError as err:
        assert err.kind in ("syntax", "limit", "call")
        assert isinstance(err.position, int) and 0 <= err.position <= len(text)


@fuzz(300)
@given(SOUP, st.sampled_from([None, "1"]), st.sampled_from(["none", "numeric"]),
       st.sampled_from(["float64", "float32"]))
def test_api_on_token_soup(text, grad, check, dtype):
    _api_ok_or_error(text, grad=grad, check=check, dtype=dtype)


@fuzz(300)
@given(ANY_TEXT)
def test_values_on_any_text(text):
    from gradcalc.values import parse_value
    try:
        v = parse_value(text, "a", limits=LIMITS, seed=0)
    except GradcalcError as err:
        assert err.kind in ("value", "limit", "usage")
        return
    assert isinstance(v, np.ndarray) and v.dtype == np.float64
    assert text.strip(" \t\r\n\f\v").isascii() or "#" in text


@fuzz(200)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c,
                                                                          max_size=3),
                    max_leaves=12))
def test_json_values_of_any_shape(obj):
    from gradcalc.values import from_json
    try:
        v = from_json(obj, "a", limits=LIMITS, allow_files=False)
    except GradcalcError as err:
        assert err.kind in ("value", "limit", "usage", "syntax")
        return
    assert isinstance(v, np.ndarray)


@fuzz(120)
@given(st.one_of(SOUP, ASCII_TEXT, ANY_TEXT), st.booleans())
def test_cli_on_random_text(text, as_json):
    if "\x00" in text:
        text = text.replace("\x00", "")           # argv cannot hold NUL
    args = [text, "x=1,2,3", "y=0.5", "M=[[1,2],[3,4]]", "s=0", "--check", "none"]
    if as_json:
        args.append("--json")
    r = cli(args, timeout=30)
    r.assert_clean()
    if text.startswith("-"):
        return             # an option, or `-` (JSON Lines mode): the status is all that counts
    if r.status == 2:
        assert r.kind is not None, r.stderr
        assert len(r.stderr.rstrip("\n").split("\n")) in (1, 3)
        if as_json:
            assert r.json()["error"]["kind"] == r.kind
        else:
            assert r.stdout == ""
    elif as_json:
        assert "output" in r.json()


JSONISH = st.one_of(
    st.text(max_size=40),
    st.builds(json.dumps, st.dictionaries(
        st.sampled_from(["id", "expr", "program", "vars", "grad", "wrt", "of", "repeat",
                         "check", "dtype", "seed", "jacobian", "rtol", "atol", "bogus"]),
        st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(),
                  st.text(max_size=12), SOUP, st.lists(st.integers(-2, 3), max_size=3),
                  st.just({"x": [1, 2, 3]}), st.just(["x"])),
        max_size=6)),
    st.builds(lambda e, v: json.dumps({"expr": e, "vars": VARS, "check": "none"}), SOUP,
              st.none()),
)


@fuzz(60)
@given(st.lists(JSONISH, min_size=1, max_size=8))
def test_jsonl_on_random_lines(lines):
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    data = "\n".join(lines) + "\n"
    r = cli(["-"], data.encode("utf-8", "surrogatepass"), timeout=60)
    r.assert_clean()
    assert r.stderr == ""
    outs = r.json_lines()
    nonblank = [ln for ln in data.encode("utf-8", "surrogatepass").split(b"\n")
                if ln.strip(b" \t\r")]
    assert len(outs) == len(nonblank)
    for o in outs:
        assert isinstance(o, dict) and ("error" in o or "output" in o)
    assert r.status == (2 if any("error" in o for o in outs) else r.status)
