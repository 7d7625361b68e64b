"""The human view (issue 3): what a person reads on the terminal.

Each test runs the real command through the shared runner (tests/clirun.py: in-process, or
a subprocess where stderr, exit status or a pipe matters) and asserts the numbers and words on
screen: the grads, the rows of vᵀ·J with v beside them, the formulas, the notes for an implied
cotangent, --repeat, no path, non-finite values and large arrays, and terminal manners.
"""
from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clirun import cli, human
from gradcalc.view.numbers import Numbers, summary

ROOT = Path(__file__).resolve().parent.parent
SEED = str(ROOT / "samples" / "hindi_vjp_weights.grad")
SEED_ARGS = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]
ANSI = re.compile(r"\x1b\[")
COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;[25])[;m0-9]")
REAL = {"isolate": True, "timeout": 120}      # a real `python -m gradcalc` process


def lines_matching(out, pattern):
    return [ln for ln in out.splitlines() if re.search(pattern, ln)]


# -- the seed example: y.backward([0.1, 1.0, 0.0001]) -----------------------------------

@pytest.fixture(scope="module")
def seed_view():
    return human(["-f", SEED], columns=140)


def test_seed_output_and_cotangent(seed_view):
    out = seed_view
    assert "output y, shape (3,)" in out
    assert "[22.7918, 39.9459, 61.0794]" in out
    assert "v, the gradient argument of y.backward(v), shape (3,)" in out
    assert "    [0.1, 1, 0.0001]" in out
    assert "implied" not in out
    # the #: line is shown, so the reader sees where v came from
    assert "--grad 0.1,1.0,0.0001" in out


def test_seed_leaf_table(seed_view):
    out = seed_view
    assert re.search(r"^leaf\s+shape\s+value\s+grad = vᵀ·J", out, re.M)
    assert re.search(r"^a\s+\(3,\)\s+\[1, 2, 3\]\s+\[0\.3, 3, 0\.0003\]", out, re.M)
    assert re.search(r"^b\s+\(3,\)\s+\[3, 4, 5\]\s+\[1\.2, 16, 0\.002\]", out, re.M)
    assert re.search(r"^c\s+\(3,\)\s+\[6, 7, 8\]\s+\[0\.0166667, 0\.142857, 1\.25e-05\]",
                     out, re.M)


def test_seed_vjp_rows_weighted_by_v(seed_view):
    out = seed_view
    # a.grad = 0.1·[3,0,0] + 1.0·[0,3,0] + 0.0001·[0,0,3] = [0.3, 3, 0.0003], written out
    assert "a.grad = 0.1·[3, 0, 0] + 1·[0, 3, 0] + 0.0001·[0, 0, 3] = [0.3, 3, 0.0003]" in out
    assert "b.grad = 0.1·[12, 0, 0] + 1·[0, 16, 0] + 0.0001·[0, 0, 20] = [1.2, 16, 0.002]" in out
    assert ("c.grad = 0.1·[0.166667, 0, 0] + 1·[0, 0.142857, 0] + 0.0001·[0, 0, 0.125] = "
            "[0.0166667, 0.142857, 1.25e-05]") in out
    # J of a as a matrix: each row of J with its weight v[i] beside it, vᵀ·J under it
    block = out[out.index("J = ∂y/∂a"):out.index("J = ∂y/∂b")]
    assert "3×3, diagonal: 3 × identity" in block
    assert re.search(r"^\s+v\s+a\[0\]\s+a\[1\]\s+a\[2\]\s*$", block, re.M)
    assert re.search(r"^y\[0\]\s+0\.1\s+3\s+0\s+0\s*$", block, re.M)
    assert re.search(r"^y\[1\]\s+1\s+0\s+3\s+0\s*$", block, re.M)
    assert re.search(r"^y\[2\]\s+0\.0001\s+0\s+0\s+3\s*$", block, re.M)
    assert re.search(r"^vᵀ·J\s+0\.3\s+3\s+0\.0003\s*$", block, re.M)
    block_b = out[out.index("J = ∂y/∂b"):out.index("J = ∂y/∂c")]
    assert re.search(r"^y\[1\]\s+1\s+0\s+16\s+0\s*$", block_b, re.M)
    assert "Why these grads: y.backward(v) returns vᵀ·J" in out


def test_seed_inline_expression_same_numbers():
    out = human(SEED_ARGS)
    assert "3*a + 2*b*b + log(c)" in out.splitlines()[0]
    assert "a.grad = 0.1·[3, 0, 0] + 1·[0, 3, 0] + 0.0001·[0, 0, 3] = [0.3, 3, 0.0003]" in out


def test_scalar_output_says_v_is_implied():
    out = human(["-f", str(ROOT / "samples" / "hindi_scalar_backward.grad")])
    assert "implied: y is a scalar, so y.backward() means y.backward(1)" in out
    assert re.search(r"^a\s+scalar\s+0\.1\s+3(\s+3)?\s*$", out, re.M)
    assert re.search(r"^b\s+scalar\s+1\s+4(\s+4·b)?\s*$", out, re.M)
    assert re.search(r"^c\s+scalar\s+0\.1\s+10(\s+1/c)?\s*$", out, re.M)
    assert "c.grad = 1·10 = 10" in out


def test_one_element_output_implied_like_numel_1():
    out = human(["x*3", "x=[2]"])
    assert "implied: y has one element (shape (1,))" in out
    assert "numel() == 1" in out


def test_repeat_says_grads_accumulate():
    out = human(["-f", str(ROOT / "samples" / "hindi_accumulate_two_calls.grad")])
    assert "grad (2 calls)" in out
    assert "accumulated over 2 backward calls" in out
    assert re.search(r"^a\s+scalar\s+1\s+6(\s+3)?\s*$", out, re.M)
    assert re.search(r"^b\s+scalar\s+1\s+8(\s+4·b)?\s*$", out, re.M)
    assert re.search(r"^c\s+scalar\s+1\s+2(\s+1/c)?\s*$", out, re.M)
    assert "b.grad = 2 × (1·4) = 2 × 4 = 8" in out
    assert re.search(r"^2×vᵀ·J\s+8\s*$", out, re.M)


def test_repeat_on_large_diagonal_shows_elementwise_product():
    out = human(["-f", str(ROOT / "samples" / "chinese_eye_second_call.grad")], columns=120)
    assert "J = ∂out/∂inp  25×25, diagonal" in out
    assert "inp.grad = vᵀ·J = v ⊙ diagonal of J (element by element), accumulated over 2" in out
    # the diagonal of J is 4 where inp is 1 and 2 elsewhere; two calls give 8 and 4
    assert "[[4, 2, 2, 2, 2]," in out
    assert "[[8, 4, 4, 4, 4]," in out
    assert "shown: a corner of the 25×25 matrix (min 0, max 4)" in out


def test_onehot_cotangent_picks_one_row():
    # Hindi page: z = 2*x, z.backward([[1, 0, 0, 0]]) gives the first row of J
    out = human(["-f", str(ROOT / "samples" / "hindi_onehot_first.grad")])
    assert re.search(r"x\.grad = 1·\[\[2, 0, 0, 0\]\] \+ 0·\[\[0, 2, 0, 0\]\] \+ "
                     r"0·\[\[0, 0, 2, 0\]\] \+ 0·\[\[0, 0, 0, 2\]\] = \[\[2, 0, 0, 0\]\]", out)


def test_precision_option():
    assert "[0.0167, 0.143, 1.25e-05]" in human(SEED_ARGS + ["--precision", "3"])
    assert "[0.0166666666667, 0.142857142857, 1.25e-05]" in human(
        SEED_ARGS + ["--precision", "12"], columns=200)


def test_no_path_and_constant_leaves():
    out = human(["a*2", "a=1", "b=3"])
    assert re.search(r"^b\s+scalar\s+3\s+0(\s+0)?\s*$", out, re.M)
    assert "no path: y does not depend on b" in out
    out = human(["a*b", "a=1", "b=3", "--wrt", "a"])
    assert "none: a constant (not in --wrt)" in out
    assert "J = ∂y/∂b" not in out


def test_nonfinite_report_with_caret():
    out = human(["y = log(a) + 1", "a=-1"])
    assert "non-finite numbers: log() produced a non-finite value at column 5" in out
    after = out.split("non-finite numbers:")[1].splitlines()
    text, caret = after[1], after[2]
    assert text.strip() == "y = log(a) + 1"
    assert caret.index("^") == text.index("log")


def test_jacobian_not_computed_note():
    out = human(SEED_ARGS + ["--no-jacobian"])
    assert "Jacobian J: not computed: --no-jacobian" in out
    assert "J = ∂y/∂a" not in out
    big = human(["x*2", "x=ones(200)", "-g", "1"])
    assert "not computed: 40,000 entries is more than 10,000; pass --jacobian" in big


def test_large_arrays_are_summarised_not_dropped():
    out = human(["x*2", "x=linspace(0,1,500)", "-g", "1", "--jacobian"], columns=80)
    assert "shape (500,), 500 values" in out
    assert "min 0, max 2" in out                      # the output
    assert "J = ∂y/∂x  500×500, diagonal: 2 × identity" in out
    assert "shown: a corner of the 500×500 matrix (min 0, max 2); all of it: --json" in out
    assert "--json prints every value" in out
    assert max(len(ln) for ln in out.splitlines()) <= 80


@pytest.mark.parametrize("columns", [60, 100, 160])
def test_widths_follow_the_terminal(columns):
    for args in (["-f", SEED], ["-f", str(ROOT / "samples" / "chinese_logistic_layer.grad")],
                 ["-f", str(ROOT / "samples" / "chinese_eye_second_call.grad")]):
        out = human(args, columns=columns)
        too_long = [ln for ln in out.splitlines() if len(ln) > columns]
        assert not too_long, too_long
        assert "grad" in out


def test_narrow_terminal_lists_leaves_one_by_one():
    out = human(["-f", SEED], columns=50)
    assert "  grad   [0.0166667, 0.142857, 1.25e-05]" in out
    assert "+ 0.0001·[0, 0, 3] = [0.3, 3, 0.0003]" in " ".join(out.split())


# -- the symbolic check beside the grads ---------------------------------------------------

FAKE_SYMBOLIC = {"passed": True, "max_abs_error": 0.0, "max_rel_error": 0.0,
                 "derivatives": {"a": "3", "b": "4*b", "c": "1/c"}}


def test_formulas_beside_grads(monkeypatch):
    import gradcalc.checks.symbolic
    monkeypatch.setattr(gradcalc.checks.symbolic, "check", lambda *a, **k: dict(FAKE_SYMBOLIC))
    out = human(["-f", SEED], columns=120)
    assert re.search(r"^b\s+\(3,\)\s+\[3, 4, 5\]\s+\[1\.2, 16, 0\.002\]\s+4·b\s*$", out, re.M)
    assert re.search(r"^c\s+.*\s1/c\s*$", out, re.M)
    assert "J = ∂y/∂b  3×3, diagonal; sympy: ∂y/∂b = 4·b" in out
    assert "symbolic check: ✓ agrees with autograd (max abs error 0; max rel error 0)" in out


def test_formulas_from_the_real_symbolic_check():
    """Whatever the symbolic check reports in --json shows up in the human view."""
    import json
    res = cli(["-f", SEED, "--json"], **REAL)
    sym = json.loads(res.stdout)["checks"]["symbolic"]
    out = cli(["-f", SEED], env={"COLUMNS": "140"}, **REAL).stdout
    if sym.get("passed") is None:
        assert "symbolic check: skipped" in out
    else:
        assert ("agrees" if sym["passed"] else "DISAGREES") in out
    from gradcalc.view.numbers import formula
    for leaf, f in (sym.get("derivatives") or {}).items():
        if f is not None:
            assert f"∂y/∂{leaf} = {formula(f)}" in out


def test_unusual_check_reports_render(monkeypatch):
    import gradcalc.checks.symbolic
    odd = {"passed": False, "max_abs_error": 2.5, "derivatives": {"a": None, "b": "oops"},
           "nondifferentiable": [{"leaf": "a", "at": "relu at 0"}], "note": "[bold]x[/bold]"}
    monkeypatch.setattr(gradcalc.checks.symbolic, "check", lambda *a, **k: odd)
    res = cli(["relu(a)*b", "a=0", "b=2"], env={"COLUMNS": "100"})
    assert res.status == 1                             # exit status 1: a check disagreed
    assert "symbolic check: ✗ DISAGREES with autograd (exit status 1)" in res.stdout
    assert "max abs error 2.5" in res.stdout
    assert re.search(r"^  nondifferentiable: leaf a, at relu at 0$", res.stdout, re.M)
    assert "[bold]x[/bold]" in res.stdout            # never read as markup
    assert "(per element)" in res.stdout               # a: no single formula
    many = {"passed": True, "disagreements": [{"leaf": "a", "index": [i]} for i in range(9)]}
    monkeypatch.setattr(gradcalc.checks.symbolic, "check", lambda *a, **k: many)
    out = human(["a*2", "a=1"])
    assert "  disagreements: leaf a, index [4]" in out
    assert "  disagreements: leaf a, index [5]" not in out
    assert "... 4 more disagreements (all of them: --json)" in out
    monkeypatch.setattr(gradcalc.checks.symbolic, "check", lambda *a, **k: {"derivatives": "junk"})
    assert "symbolic check: skipped" in human(["a*2", "a=1"])


# -- terminal manners ------------------------------------------------------------------------

def test_piped_output_is_plain_text():
    res = cli(["-f", SEED, "--graph"], env={"TERM": "xterm-256color"}, **REAL)
    assert res.status == 0
    assert not ANSI.search(res.stdout)
    assert "a.grad = 0.1·[3, 0, 0]" in res.stdout
    assert res.stderr == ""


def test_colour_only_without_no_color():
    coloured = cli(["-f", SEED], env={"FORCE_COLOR": "1", "TERM": "xterm-256color"}, **REAL).stdout
    assert COLOUR.search(coloured), "a terminal gets colour"
    plain = cli(["-f", SEED], env={"FORCE_COLOR": "1", "NO_COLOR": "1",
                                   "TERM": "xterm-256color"}, **REAL).stdout
    assert not COLOUR.search(plain), "NO_COLOR: no colour codes"
    assert "a.grad = 0.1·[3, 0, 0]" in re.sub(r"\x1b\[[0-9;]*m", "", plain)


class _Stream(io.StringIO):
    """A stream that is a terminal or not, with no file descriptor (as a test runner's)."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
@pytest.mark.parametrize("term", [None, "xterm-256color", "dumb", "unknown"])
@pytest.mark.parametrize("force", [None, "", "1"])
@pytest.mark.parametrize("compatible", [None, "0", "1"])
def test_the_plain_page_colours_where_rich_would(monkeypatch, tty, term, force, compatible):
    """The fit report's page (no rich) takes colour exactly where a rich console on the same
    stream would, over TERM, FORCE_COLOR and TTY_COMPATIBLE; NO_COLOR takes it away, as the
    view's consoles drop every escape under it."""
    from rich.console import Console

    from gradcalc.view.plain import wants_colour
    for name, value in (("TERM", term), ("FORCE_COLOR", force),
                        ("TTY_COMPATIBLE", compatible)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("NO_COLOR", raising=False)
    rich_colours = Console(file=_Stream(tty)).color_system is not None
    assert wants_colour(_Stream(tty)) is rich_colours
    monkeypatch.setenv("NO_COLOR", "1")
    assert wants_colour(_Stream(tty)) is False


@pytest.mark.parametrize("columns, width", [("50", 50), ("19", 80), ("0", 80), ("wide", 80),
                                            (None, 80)])
def test_the_plain_page_is_as_wide_as_the_view(monkeypatch, columns, width):
    """$COLUMNS, else the terminal's width (a stream without one: 80), and under 20 columns
    the width of a terminal nobody resized, as the rich consoles of the view."""
    from gradcalc.view.plain import Page
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert Page(_Stream(True)).width == width


def test_user_text_is_never_markup_and_control_characters_are_escaped():
    prog = "y = a*2  # [bold red]look[/bold red] \x1b[31mred\n"
    out = human(["-f", "-", "a=1"], stdin=prog)
    assert "[bold red]look[/bold red]" in out
    assert "\\x1b[31mred" in out
    assert "\x1b" not in out


def test_ascii_console_falls_back_to_ascii_symbols():
    res = cli(["-f", SEED], env={"PYTHONIOENCODING": "ascii"}, **REAL)
    assert res.status == 0, res.stderr
    assert "a.grad = 0.1*[3, 0, 0] + 1*[0, 3, 0] + 0.0001*[0, 0, 3] = [0.3, 3, 0.0003]" in res.stdout
    assert "v^T*J" in res.stdout


def test_failed_check_is_reported_on_stderr(monkeypatch):
    import gradcalc.checks.symbolic
    monkeypatch.setattr(gradcalc.checks.symbolic, "check",
                        lambda *a, **k: {"passed": False, "max_abs_error": 1.0})
    res = cli(["a*2", "a=1"], env={"COLUMNS": "100"})
    assert res.status == 1
    assert "gradcalc: the symbolic check disagreed with autograd (exit status 1)" in res.stderr
    assert "gradcalc: the symbolic check disagreed" not in res.stdout


# -- errors for people (stderr, exit 2, a caret under the column) -------------------------

@pytest.mark.parametrize("expr, col", [("3*a+", 4), ("(a+b", 4), ("a + $ b", 4), ("sum(a,", 6),
                                       ("a ** * 2", 5)])
def test_syntax_error_caret_under_the_column(expr, col):
    res = cli([expr, "a=1", "b=2"], **REAL)
    assert res.status == 2
    assert res.stdout == ""
    first, text, caret = res.stderr.splitlines()[:3]
    assert first.startswith("gradcalc: syntax error: ")
    assert f"(column {col + 1})" in first
    assert text == "  " + expr
    assert caret == " " * (2 + col) + "^"
    assert "Traceback" not in res.stderr


def test_syntax_error_in_a_program_names_line_and_column(tmp_path):
    p = tmp_path / "bad.grad"
    p.write_text("a = 1\nb = a +\n")
    res = cli(["-f", str(p)], **REAL)
    assert res.status == 2
    first, text, caret = res.stderr.splitlines()[:3]
    assert "(line 2, column 8)" in first
    assert text == "  b = a +" and caret == "         ^"


def test_shape_error_names_the_operation_and_both_shapes():
    res = cli(["a + b", "a=1,2", "b=1,2,3"], **REAL)
    assert res.status == 2
    assert "shape error: add: shapes (2,) and (3,) cannot be broadcast together" in res.stderr
    assert res.stderr.splitlines()[2] == "    ^"


def test_missing_cotangent_explains_and_shows_a_grad_that_works():
    res = cli(["a*2", "a=1,2,3"], **REAL)
    assert res.status == 2
    msg = res.stderr
    assert "the output has shape (3,), so a gradient cannot be implied" in msg
    assert "--grad 1,1,1" in msg
    ok = cli(["a*2", "a=1,2,3", "--grad", "1,1,1"], **REAL)
    assert ok.status == 0 and "[2, 2, 2]" in ok.stdout


def test_error_echo_escapes_control_characters():
    res = cli(["a+\x1b[31mb", "a=1", "b=2"], **REAL)
    assert res.status == 2
    assert "\x1b" not in res.stderr
    assert "  a+\\x1b[31mb" in res.stderr


def test_empty_output_and_empty_leaf():
    out = human(["x[3:]", "x=1,2,3", "-g", "1", "--check", "none"])
    assert "output y, shape (0,)" in out
    assert "J = ∂y/∂x  0×3, empty" in out
    assert "J is empty (y has no elements), so x.grad has nothing to add up: [0, 0, 0]" in out
    out = human(["sum(x)*a", "x=zeros(0)", "a=2", "--check", "none"])
    assert re.search(r"^x\s+\(0,\)\s+\[\]\s+\[\]", out, re.M)
    assert "a.grad = 1·0 = 0" in out


# -- large arrays: only what is shown is turned into text (issue 13 item 1) ---------------

class CountingNumbers(Numbers):
    """Numbers that count the values it turns into text."""
    calls = 0

    def num(self, x):
        CountingNumbers.calls += 1
        return super().num(x)


def _line_fitting_formatting_everything(fmt, a, width):
    """The one-line summary as it was first written: the whole array as text, then shorter
    forms until one fits, else the flat corner (the reference the lean version must equal)."""
    text = fmt.line(a)
    k = max(a.shape) if a.ndim else 1
    while len(text) > width and k > 2:
        k = max(2, k // 2 if k > 8 else k - 1)
        text = fmt.line(a, k)
    if len(text) > width and a.ndim > 1:
        return "flat " + _line_fitting_formatting_everything(fmt, a.reshape(-1), width - 5)
    return text


@pytest.mark.parametrize("shape", [(), (0,), (5,), (40,), (300,), (3, 300), (40, 50),
                                   (4, 5, 6, 7), (1, 1, 90), (2, 0, 9)])
@pytest.mark.parametrize("width", [20, 52, 92, 400])
def test_summary_line_is_the_same_as_formatting_everything(shape, width):
    a = np.random.default_rng(7).normal(size=shape) * 10.0 ** np.arange(-3, 4).repeat(
        -(-max(1, math.prod(shape)) // 7))[:math.prod(shape)].reshape(shape)
    fmt = Numbers()
    assert fmt.line_fitting(a, width) == _line_fitting_formatting_everything(fmt, a, width)


def test_a_summary_formats_a_corner_not_every_element():
    fmt = CountingNumbers()
    CountingNumbers.calls = 0
    lines = summary(np.linspace(0, 1, 100_001), fmt, width=80)
    assert lines == ["shape (100001,), 100,001 values", "min 0, max 1",
                     "values: [0, 1e-05, 2e-05, 3e-05, 4e-05, …, 1]"]
    assert CountingNumbers.calls < 100         # formatting everything made 100,001 calls
    fmt = CountingNumbers()
    CountingNumbers.calls = 0
    lines = summary(np.full((30, 40, 50), np.nan), fmt, width=60)
    assert lines[:2] == ["shape (30, 40, 50), 60,000 values, 60,000 non-finite", "60,000 nan"]
    assert lines[2] == "values: flat [nan, nan, nan, nan, nan, nan, …, nan]"
    assert CountingNumbers.calls < 100


def _peak_rss_kib(args):
    """stdout and peak resident memory (KiB) of `gradcalc ARGS` run by a wrapper process,
    whose RUSAGE_CHILDREN then holds that one child only. (Not the shared runner: this
    process's RUSAGE_CHILDREN holds every gradcalc the suite started.)"""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-m', 'gradcalc', *sys.argv[1:]], "
            "capture_output=True, text=True)\n"
            "sys.stdout.write(p.stdout)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    out, status_line = res.stdout.rsplit("\n", 2)[0], res.stdout.rsplit("\n", 2)[1]
    status, rss = map(int, status_line.split())
    assert status == 0, res.stdout + res.stderr
    return out, rss


def test_human_view_of_a_million_elements_shows_the_corner_in_little_memory():
    out, rss = _peak_rss_kib(["sum(x**2)", "x=linspace(0,1,1000000)", "--check", "none"])
    assert "output y, a scalar\n    333334\n" in out
    assert re.search(r"value +shape \(1000000,\), 1,000,000 values\n +min 0, max 1\n +"
                     r"values: \[0, 1e-06, 2e-06, 3e-06, 4e-06, 5\.00001e-06, …, 1\]\n", out), out
    assert re.search(r"grad +shape \(1000000,\), 1,000,000 values\n +min 0, max 2\n +"
                     r"values: \[0, 2e-06, 4e-06, 6\.00001e-06, 8\.00001e-06, 1e-05, …, 2\]\n",
                     out), out
    assert "Arrays too large for 100 columns are summarised" in out
    _, rss_small = _peak_rss_kib(["sum(x**2)", "x=linspace(0,1,10)", "--check", "none"])
    # x, x**2 and the grad are 8 MB each; text for every element took over 100 MB more
    assert rss - rss_small < 64 * 1024, (rss, rss_small)


@pytest.mark.parametrize("columns", ["0", "3"])
def test_a_width_it_cannot_use_falls_back_to_80(columns):
    """COLUMNS=0 printed nothing at all and exited 0 (issue 14 item 4)."""
    res = cli(["3*a", "a=2", "--check", "none"], env={"COLUMNS": columns}, **REAL)
    assert res.status == 0 and res.stderr == ""
    assert res.stdout.startswith("y = 3*a\n\noutput y, a scalar\n    6\n")
    assert ("  J = ∂y/∂leaf has one row per element of y and one column per element of the\n"
            "  leaf. v weights") in res.stdout              # wrapped at 80 columns
    assert res.stdout == cli(["3*a", "a=2", "--check", "none"], env={"COLUMNS": "80"},
                             **REAL).stdout


@pytest.mark.parametrize("columns", [60, 100])
def test_no_line_ends_in_blanks_and_wrapped_notes_hang(columns):
    """Seen in tmux and in files: the leaf table padded its last column with blanks, and a
    long 'Jacobian J: not computed' line or program statement wrapped to column 0 with a
    blank before the break."""
    env = {"COLUMNS": str(columns)}
    seed = cli(["-f", SEED], env=env, **REAL).stdout
    if columns == 100:              # wide enough for the leaf table
        assert re.search(r"^a +\(3,\) +\[1, 2, 3\] +\[0\.3, 3, 0\.0003\] +3$", seed, re.M), seed
    big = cli(["sum(x**2)", "x=linspace(0,1,100000)", "--check", "none"], env=env, **REAL).stdout
    layer = cli(["-f", str(ROOT / "samples" / "chinese_logistic_layer.grad")], env=env,
                **REAL).stdout
    for out in (seed, big, layer):
        lines = out.splitlines()
        assert not [ln for ln in lines if ln != ln.rstrip()], out
        assert max(len(ln) for ln in lines) <= columns
    w = layer.splitlines().index(next(ln for ln in layer.splitlines() if ln.startswith("w = [[")))
    assert layer.splitlines()[w + 1].startswith("    -"), layer      # a statement hangs too
    start = big.index("Jacobian J: not computed: 100,000 entries is more than")
    note = big[start:].split("\n  Each grad above")[0].split("\n")
    assert note[-1].endswith("anyway") and all(ln.startswith("  ") for ln in note[1:]), note


def test_a_many_axed_array_too_wide_even_for_its_corner_is_shown_flat():
    """Two entries per axis of a 4-d array are 16 numbers: at 60 columns that line ran past
    the edge and wrapped; the summary (and the sum under J) now give the flat first and last
    values."""
    out = human(["sum(A)", "A=linspace(0,1,7)+zeros(4,5,6,7)", "--check", "none"], columns=60)
    assert "shape (4, 5, 6, 7), 840 values" in out
    assert re.search(r"^ +values: flat \[0, 0\.166667, 0\.333333, 0\.5, …, 1\]$", out, re.M), out
    assert re.search(r"^ += flat \[1, 1, 1, .*…, 1\]$", out, re.M), out    # A.grad = 1·J = ...
    assert max(len(ln) for ln in out.splitlines()) <= 60
