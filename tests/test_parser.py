"""Golden tests of the parser (SPEC sections 2 and 3): every construct of the language as an
S-expression, the precedence table, and syntax errors with their exact positions.

`sexpr` prints `(op a b)` for operators and calls, `([] x i ...)` for indexing, `(: lo hi
step)` for a slice (`_` for a missing part), `(. x T)` for transpose, `[a b]` for array
literals, `(= name e)` and `(def f (params) body)` for statements. A golden string is the
parse a Python programmer expects (`2**3**2` is `(** 2 (** 3 2))`, `-2**2` is
`(- (** 2 2))`), so a change of binding power shows up as a changed string.
"""

from __future__ import annotations

import pytest

import gradcalc
from gradcalc.errors import GradcalcError, caret_lines
from gradcalc.lexer import tokenize
from gradcalc.parser import parse_expression, parse_program, sexpr

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them


def parse(text: str) -> str:
    return " ; ".join(sexpr(s) for s in parse_program(text, LIMITS.max_depth))


# ---------------------------------------------------------------- golden parses
GOLDEN = [
    # numbers and constants
    ("3", "3"),
    ("2.5", "2.5"),
    (".5", ".5"),
    ("1e-4", "1e-4"),
    ("1E-4", "1E-4"),
    ("1.5E+3", "1.5E+3"),
    ("1.", "1."),
    ("pi", "pi"),
    ("e", "e"),
    ("inf", "inf"),
    ("nan", "nan"),
    # the precedence table: + - < * / @ < unary - + < ** ^
    ("1+2*3", "(+ 1 (* 2 3))"),
    ("1*2+3", "(+ (* 1 2) 3)"),
    ("a-b-c", "(- (- a b) c)"),
    ("a/b/c", "(/ (/ a b) c)"),
    ("8/2*4", "(* (/ 8 2) 4)"),
    ("1-2-3**2", "(- (- 1 2) (** 3 2))"),
    ("a @ b @ c", "(@ (@ a b) c)"),
    ("a*b@c/d", "(/ (@ (* a b) c) d)"),
    ("a@b+c", "(+ (@ a b) c)"),
    ("a+b@c", "(+ a (@ b c))"),
    ("-a@b", "(@ (- a) b)"),
    ("-a*b", "(* (- a) b)"),
    ("2*-x", "(* 2 (- x))"),
    ("a - -b", "(- a (- b))"),
    ("a--b", "(- a (- b))"),
    ("+-a", "(+ (- a))"),
    ("-(a)", "(- a)"),
    ("(a+b)*c", "(* (+ a b) c)"),
    # power: right-associative, tighter than unary minus, signed exponents as in Python
    ("2**3**2", "(** 2 (** 3 2))"),
    ("2^3^2", "(** 2 (** 3 2))"),
    ("2**3^2", "(** 2 (** 3 2))"),
    ("-2**2", "(- (** 2 2))"),
    ("-2^2", "(- (** 2 2))"),
    ("(-2)**2", "(** (- 2) 2)"),
    ("2**-1", "(** 2 (- 1))"),
    ("2^-1", "(** 2 (- 1))"),
    ("2**+1", "(** 2 (+ 1))"),
    ("-a**-b", "(- (** a (- b)))"),
    ("2**-x**2", "(** 2 (- (** x 2)))"),
    ("2**-x*3", "(* (** 2 (- x)) 3)"),
    ("a*-b**2", "(* a (- (** b 2)))"),
    ("a**b[0]", "(** a ([] b 0))"),
    ("x**2*3", "(* (** x 2) 3)"),
    # indexing and slicing
    ("w[0]", "([] w 0)"),
    ("w[-1]", "([] w (- 1))"),
    ("x[1:3]", "([] x (: 1 3 _))"),
    ("x[1:]", "([] x (: 1 _ _))"),
    ("x[:2]", "([] x (: _ 2 _))"),
    ("x[:]", "([] x (: _ _ _))"),
    ("x[::2]", "([] x (: _ _ 2))"),
    ("x[1::2]", "([] x (: 1 _ 2))"),
    ("x[::-1]", "([] x (: _ _ (- 1)))"),
    ("x[1:-1]", "([] x (: 1 (- 1) _))"),
    ("M[:, 0]", "([] M (: _ _ _) 0)"),
    ("M[ : , 0 ]", "([] M (: _ _ _) 0)"),
    ("M[0, 1]", "([] M 0 1)"),
    ("M[-1, 1:]", "([] M (- 1) (: 1 _ _))"),
    ("M[0][:, 1:2]", "([] ([] M 0) (: _ _ _) (: 1 2 _))"),
    ("x[1+1]", "([] x (+ 1 1))"),
    ("(a+b)[0]", "([] (+ a b) 0)"),
    ("f(x)[1]", "([] (f x) 1)"),
    ("-x[0]", "(- ([] x 0))"),
    ("x [0]", "([] x 0)"),
    # transpose
    ("M.T", "(. M T)"),
    ("M.T.T", "(. (. M T) T)"),
    ("x.T[0]", "([] (. x T) 0)"),
    ("(a@b).T", "(. (@ a b) T)"),
    ("-M.T", "(- (. M T))"),
    ("M.T**2", "(** (. M T) 2)"),
    ("x .T", "(. x T)"),
    # calls and keyword arguments
    ("sum(x)", "(sum x)"),
    ("sum (x)", "(sum x)"),
    ("sum(x, dim=1)", "(sum x dim=1)"),
    ("sum(x, dim=-1)", "(sum x dim=(- 1))"),
    ("linspace(-1, 1, steps=5)", "(linspace (- 1) 1 steps=5)"),
    ("norm(x, p=inf, dim=0, keepdim=True)", "(norm x p=inf dim=0 keepdim=True)"),
    ("clamp(x, max=1, min=-1)", "(clamp x max=1 min=(- 1))"),
    ("stack(a, b, dim=1)", "(stack a b dim=1)"),
    ("sum(x,)", "(sum x)"),
    ("f()", "(f)"),
    ("sum(x,\n dim=1)", "(sum x dim=1)"),
    ("exp(log(x))", "(exp (log x))"),
    ("maximum(a*b, -c)", "(maximum (* a b) (- c))"),
    # array literals
    ("[1, 2, 3]", "[1 2 3]"),
    ("[[1, 2], [3, 4]]", "[[1 2] [3 4]]"),
    ("[[1,2],\n [3,4]]", "[[1 2] [3 4]]"),
    ("[-1, 2e3, pi, 2*pi]", "[(- 1) 2e3 pi (* 2 pi)]"),
    ("[1, 2,]", "[1 2]"),
    ("[1, 2] @ x", "(@ [1 2] x)"),
    # statements, separators and comments
    ("a=1;b=2\nc=a+b", "(= a 1) ; (= b 2) ; (= c (+ a b))"),
    (";;a;;", "a"),
    ("\n\na\n\n", "a"),
    ("a=1\r\nb=2", "(= a 1) ; (= b 2)"),
    ("x = 2\nx = x*3", "(= x 2) ; (= x (* x 3))"),
    ("#: --grad 1\nx = 1  # a leaf\ny = x*2  # the output", "(= x 1) ; (= y (* x 2))"),
    ("x # c\n+1", "x ; (+ 1)"),
    ("x = ones(2, 2)        # a leaf\ny = x + 2\nz = y * y * 3\nout = mean(z)",
     "(= x (ones 2 2)) ; (= y (+ x 2)) ; (= z (* (* y y) 3)) ; (= out (mean z))"),
    # function definitions
    ("f(x, w) = 2*x*w[0] + x**2*w[1]",
     "(def f (x w) (+ (* (* 2 x) ([] w 0)) (* (** x 2) ([] w 1))))"),
    ("f(x)=x**2; f(a)+1", "(def f (x) (** x 2)) ; (+ (f a) 1)"),
    ("g() = 3\ny = g()", "(def g () 3) ; (= y (g))"),
]


@pytest.mark.parametrize("text,expected", GOLDEN, ids=[t for t, _ in GOLDEN])
def test_golden_parse(text, expected):
    assert parse(text) == expected


def test_parse_expression_skips_surrounding_newlines():
    # VALUEs (`x='linspace(-1, 1, 5)'`, or a file's text) go through parse_expression
    assert sexpr(parse_expression("\nlinspace(-1, 1, 5)\n", LIMITS.max_depth)) == "(linspace (- 1) 1 5)"


def test_parse_expression_rejects_a_second_statement():
    with pytest.raises(GradcalcError) as exc:
        parse_expression("1; 2", LIMITS.max_depth)
    assert exc.value.kind == "syntax"
    assert exc.value.position == 1


# ---------------------------------------------------------------- the numbers the parse means
# SPEC 2 states these values; evaluating them end to end proves the parse is not merely
# printed right. `0*x` gives the expression a leaf so it is a calculation.
VALUES = [
    ("-2**2", -4.0),            # -(2**2)
    ("2**-1", 0.5),             # 2**(-1)
    ("2**3**2", 512.0),         # 2**(3**2) = 2**9
    ("2^3^2", 512.0),
    ("(2**3)**2", 64.0),
    ("-2^2", -4.0),
    ("(-2)**2", 4.0),
    ("2**-1*4", 2.0),           # (2**-1)*4
    ("1-2-3", -4.0),            # (1-2)-3
    ("8/2/2", 2.0),             # (8/2)/2
    ("2*3+4*5", 26.0),
    ("[1, 2, 3, 4][1:][::2][1]", 4.0),  # [2, 3, 4] every other -> [2, 4]
    ("[[1, 2], [3, 4]].T[0, 1]", 3.0),  # transpose row 0 = [1, 3]
    ("[1, 2] @ [3, 4]", 11.0),         # 1*3 + 2*4
]


@pytest.mark.parametrize("text,value", VALUES, ids=[t for t, _ in VALUES])
def test_value_of_parse(text, value):
    r = gradcalc.compute(f"{text} + 0*x", x=1.0, check="none")
    assert float(r.output) == value


# ---------------------------------------------------------------- syntax errors and positions
# (text, kind, 0-based position, a fragment of the message)
ERRORS = [
    ("1+", "syntax", 2, "expected an expression but found end of input"),
    ("(1+2", "syntax", 4, "expected ')' to close '(' at column 1"),
    ("1+2)", "syntax", 3, "unmatched ')'"),
    ("a b", "syntax", 2, "unexpected 'b'"),
    ("sum(x", "syntax", 5, "to close '(' at column 4"),
    ("sum(x,,)", "syntax", 6, "expected an expression but found ','"),
    ("sum(x dim=1)", "syntax", 6, "expected ')'"),
    ("x[1", "syntax", 3, "expected ']' to close '[' at column 2"),
    ("x[]", "syntax", 2, "expected an expression but found ']'"),
    ("x[,1]", "syntax", 2, "found ','"),
    ("x[1:2:3:4]", "syntax", 7, "expected ']'"),
    ("[1,2", "syntax", 4, "expected ']' to close '[' at column 1"),
    ("3 = x", "syntax", 2, "can only assign to a name"),
    ("f(x+1) = 2", "syntax", 7, "can only assign to a name"),
    ("f(1)=x", "syntax", 4, "can only assign to a name"),
    ("x = y = 1", "syntax", 6, "unexpected '='"),
    ("f(x, x) = x", "syntax", 0, "repeated parameter name"),
    ("M.X", "syntax", 2, "the only attribute is '.T'"),
    ("M.", "syntax", 1, "the only attribute is '.T'"),
    ("x.T(1)", "syntax", 3, "only a function name can be called"),
    ("2a", "syntax", 0, "invalid number '2a'"),
    ("1e", "syntax", 0, "invalid number"),
    ("1..2", "syntax", 2, "unexpected"),
    ("a\u2212b", "syntax", 1, "U+2212 MINUS SIGN"),        # a look-alike minus sign
    ("x = \uff11", "syntax", 4, "non-ASCII"),               # a fullwidth digit
    ("a\u200b+b", "syntax", 1, "non-ASCII"),                # a zero-width space
    ("x$", "syntax", 1, "unexpected character '$'"),
    ("sum(dim=1, x)", "syntax", 11, "a positional argument cannot follow a keyword"),
    ("sum(x, dim=1, dim=2)", "call", 14, "keyword argument 'dim' given twice"),
    ("1 2", "syntax", 2, "unexpected '2'"),
    ("a +* b", "syntax", 3, "found '*'"),
    ("**2", "syntax", 0, "found '**'"),
    ("a=", "syntax", 2, "end of input"),
    ("=3", "syntax", 0, "found '='"),
    (".T", "syntax", 0, "expected an expression"),
    ("", "syntax", 0, "the program has no statement"),
    ("  ;\n# only a comment", "syntax", 20, "the program has no statement"),
    ("a=1;\n\nb=+;", "syntax", 9, "found ';'"),
    ("a=1\nb=(2+\n3\nc=4", "syntax", 12, "expected ')' to close '(' at column 7 but found 'c'"),
]


# the lexer cuts the text with one regex and classifies each piece by its first character:
# every kind of piece, with the positions a caret uses
TOKENS = [
    (".5+x.T", [("num", ".5", 0), ("op", "+", 2), ("name", "x", 3), ("op", ".", 4),
                ("name", "T", 5)]),
    ("1.5e-3*_a1", [("num", "1.5e-3", 0), ("op", "*", 6), ("name", "_a1", 7)]),
    ("a!=b\t<=c**2", [("name", "a", 0), ("op", "!=", 1), ("name", "b", 3), ("op", "<=", 5),
                      ("name", "c", 7), ("op", "**", 8), ("num", "2", 10)]),
    ("f(a,\n b) # c\n[1]; y", [
        ("name", "f", 0), ("op", "(", 1), ("name", "a", 2), ("op", ",", 3), ("name", "b", 6),
        ("op", ")", 7), ("sep", "\n", 12), ("op", "[", 13), ("num", "1", 14),
        ("op", "]", 15), ("sep", ";", 16), ("name", "y", 18)]),
    ("x)\n1.", [("name", "x", 0), ("op", ")", 1), ("sep", "\n", 2), ("num", "1.", 3)]),
]


@pytest.mark.parametrize("text,expected", TOKENS, ids=[repr(t[0]) for t in TOKENS])
def test_tokens_and_positions(text, expected):
    assert [tuple(t) for t in tokenize(text)] == expected + [("eof", "", len(text))]


@pytest.mark.parametrize("text,position,message", [
    ("1.5e", 0, "invalid number '1.5e'"), ("x+.5x", 2, "invalid number '.5x'"),
    ("1_000", 0, "invalid number '1_'"), ("a ! b", 2, "unexpected character '!'"),
    ("1\u00e9", 1, "U+00E9 LATIN SMALL LETTER E WITH ACUTE"), ("# \u00e9 ok\n@", 8, "")])
def test_lexer_errors(text, position, message):
    if not message:                      # a comment may hold any character
        assert [t.kind for t in tokenize(text)] == ["sep", "op", "eof"]
        return
    with pytest.raises(GradcalcError) as exc:
        tokenize(text)
    assert exc.value.position == position and message in exc.value.message


@pytest.mark.parametrize("text,kind,position,message", ERRORS, ids=[repr(e[0]) for e in ERRORS])
def test_syntax_error_position(text, kind, position, message):
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, LIMITS.max_depth)
    err = exc.value
    assert err.kind == kind
    assert err.position == position
    assert message in err.message
    assert err.source == text


@pytest.mark.parametrize("text,line,column", [
    ("1 + (2 * x", 1, 11),                  # end of input, one past the last character
    ("a=1\nb = 2 +* a", 2, 8),              # the '*' on line 2
    ("x = 1\ny = 2\nz = (x +\n)", 4, 1),    # newlines inside brackets are spaces
    ("# comment\n\nf(x, x) = x", 3, 1),
])
def test_error_line_and_column(text, line, column):
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, LIMITS.max_depth)
    assert exc.value.line_column() == (line, column)
    if "\n" in text:
        js = exc.value.to_json()
        assert (js["line"], js["column"]) == (line, column)
        assert js["kind"] == "syntax"


def test_caret_sits_under_the_offending_character():
    text = "a=1\nb = 2 +* a"
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, LIMITS.max_depth)
    shown, caret = caret_lines(exc.value.source, exc.value.position)
    assert shown == "b = 2 +* a"
    assert caret == "       ^"                # column 8: seven spaces
    assert shown[caret.index("^")] == "*"


def test_caret_with_escaped_control_character():
    # the ESC before the error is shown as \x1b (4 characters), so the caret moves right by 3
    text = "\x1b + $"
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, LIMITS.max_depth)
    shown, caret = caret_lines(text, exc.value.position)
    assert exc.value.position == 0            # the ESC itself is the bad character
    assert shown.startswith("\\x1b")
    assert caret == "^"
    text = "x + \x1b"
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, LIMITS.max_depth)
    shown, caret = caret_lines(text, exc.value.position)
    assert exc.value.position == 4
    assert shown == "x + \\x1b" and caret == "    ^"


# ---------------------------------------------------------------- depth and length
def test_nesting_within_the_limit_parses():
    text = "(" * 199 + "x" + ")" * 199
    assert parse(text) == "x"


@pytest.mark.parametrize("text", [
    "(" * 201 + "x" + ")" * 201,
    "-" * 250 + "x",
    "2**" * 300 + "2",
    "f(" * 300 + "x" + ")" * 300,
    "[" * 250 + "1" + "]" * 250,
])
def test_nesting_over_the_limit_is_a_limit_error(text):
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, LIMITS.max_depth)
    assert exc.value.kind == "limit"
    assert "nesting depth" in exc.value.message


def test_max_depth_is_adjustable():
    text = "(" * 20 + "x" + ")" * 20
    with pytest.raises(GradcalcError) as exc:
        parse_program(text, max_depth=10)
    assert exc.value.kind == "limit"
    assert parse_program(text, max_depth=30)


def test_long_flat_chain_is_a_loop_not_recursion():
    # 20,000 terms would overflow Python's recursion limit if the parser recursed per term
    stmts = parse_program("+".join(["a"] * 20000), LIMITS.max_depth)
    node = stmts[0].a
    depth = 0
    while node.kind == "binary":
        assert node.a == "+" and node.c.kind == "name"     # left-associative: (((a+a)+a)+...)
        node = node.b
        depth += 1
    assert depth == 19999
    r = gradcalc.compute("+".join(["a"] * 20000), a=1.0, check="none")
    assert float(r.output) == 20000.0 and float(r.grads["a"]) == 20000.0


def test_positions_of_nodes():
    # positions are 0-based offsets of the node's first token (operators: the operator)
    (st,) = parse_program("  foo + bar[2]", LIMITS.max_depth)
    e = st.a
    assert (e.kind, e.pos) == ("binary", 6)
    assert (e.b.kind, e.b.pos) == ("name", 2)
    assert (e.c.kind, e.c.pos) == ("index", 11)
    assert (e.c.a.pos, e.c.b[0].pos) == (8, 12)
