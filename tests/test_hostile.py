"""Hostile and broken input (issue 5, SPEC section 8): a corpus of bad inputs, each run through
the real command line.

Every case asserts the exit status, the error kind (on stderr's first line, and in the JSON
on stdout: each error case runs twice, with and without --json), a one-line reason (plus the
echoed text and a caret when the error has a position), no traceback and no escape byte on
stdout or stderr, and a time bound; and every case asserts that the marker file that the
injection cases try to create was never created.

Categories: syntax, unknown names and functions, calls (arity, keywords, dims, indices),
shapes, cotangents, malformed VALUEs and files, options, injection, non-ASCII look-alikes,
control characters and ANSI escapes, huge and deep input, non-finite results, JSON Lines
garbage, and internal errors.

Cases that could allocate a lot if a limit regressed run in a subprocess under an
address-space cap (`isolate=True`), so that a regression fails a test instead of the machine.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field

import numpy as np
import pytest

from clirun import cli, strict_json
from gradcalc.errors import escape_text

NUL_ID = object()


# ---------------------------------------------------------------------------- fixtures
class Evil:
    """Unpickling this runs a shell command that creates the marker file: a .npy holding
    it proves np.load is called with allow_pickle=False."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    m = d / "MARKER"

    def w(name, data):
        p = d / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return p

    w("bad.json", '{"a": [1, 2')
    w("obj.json", '{"a": 1}')
    w("code.json", json.dumps(f"__import__('os').system('touch {m}')"))
    w("nan.json", "[1, NaN]")
    w("deep.json", "[" * 100000 + "]" * 100000)
    w("ragged.json", "[[1], [2, 3]]")
    w("bools.json", "[true, false]")
    w("nulls.json", "[1, null]")
    w("empty.json", "")
    w("atfile.json", json.dumps("@" + str(d / "ok.csv")))
    w("ok.csv", "1,2\n3,4\n")
    w("bad.csv", "1,2\n3,x\n")
    w("ragged.csv", "1,2\n3\n")
    w("empty.csv", "")
    w("quoted.csv", '"1","two"\n')     # quoted cells are read; this one is no number
    w("arabic.csv", "1,\u0662\n")
    w("opts_fullwidth.grad", "#: --repeat \uff12\nx = 1\n")
    w("bad.npy", "garbage")
    w("latin1.txt", b"1,2,\xe9")
    w("code.txt", f"__import__('os').system('touch {m}')")
    w("ansi.txt", "\x1b[31m1\x1b[0m")
    w("big.txt", "1," * 600000 + "1")
    w("evil.pkl", pickle.dumps(Evil(m)))
    np.save(d / "complex.npy", np.array([1 + 2j]))
    np.save(d / "str.npy", np.array(["a", "b"]))
    np.save(d / "dims40.npy", np.ones((1,) * 40))
    np.save(d / "ok.npy", np.arange(4.0))
    with open(d / "evil.npy", "wb") as fh:          # an object array whose pickle runs a shell
        np.save(fh, np.array([Evil(m), 1], dtype=object), allow_pickle=True)
    good = np.lib.format
    with open(d / "lying.npy", "wb") as fh:          # header says 10^12 floats, holds 8 bytes
        good.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                         "shape": (10**6, 10**6)})
        fh.write(b"\0" * 8)
    raw = (d / "ok.npy").read_bytes()
    w("truncated.npy", raw[:-9])
    (d / "adir").mkdir()
    # programs
    w("deep.grad", "(" * 100000 + "x" + ")" * 100000)
    w("neg.grad", "-" * 100000 + "x")
    w("brk.grad", "[" * 100000 + "1" + "]" * 100000)
    w("big.grad", "x" * 1_000_001)
    w("binary.grad", b"\xff\xfe\x00x")
    w("syntax2.grad", "x = ones(2)\ny = x +* 2\nz = sum(y)\n")
    w("name2.grad", "x = ones(2)\n\ny = foo(x)\n")
    w("opts_bad.grad", "#: --bogus 1\nx = 1\n")
    w("opts_quote.grad", '#: --grad "unclosed\nx = 1\n')
    w("opts_repeat.grad", "#: --repeat 99999999\nx = 1\n")
    w("opts_shell.grad", f"#: --grad $(touch {m})\nx = 1\n")
    w("opts_dot.grad", f"#: --dot {m}\nx = 1\n")
    w("empty.grad", "# nothing but a comment\n\n")
    w("onlydef.grad", "f(x) = x*2\n")
    return d


@dataclass
class C:
    """A corpus case. `kind` set: exit 2 with that error kind. Else `status` (0 or 1)."""
    id: str
    args: list
    kind: str | None = None
    status: int = 2
    stdin: bytes | str = b""
    isolate: bool = False
    seconds: float = 5.0          # time bound
    has: tuple = ()               # substrings the reason (stderr first line) must contain
    out_has: tuple = ()           # substrings stdout must contain (success cases)
    position: int | None | object = NUL_ID   # expected JSON error position (NUL_ID: any)
    json_extra: dict = field(default_factory=dict)   # expected extra keys of the JSON error
    xfail: str = ""               # a known bug owned elsewhere (strict: fails once fixed)


def fill(args, d):
    return [a.replace("{d}", str(d)).replace("{m}", str(d / "MARKER")) for a in args]


X = ["x=1,2,3"]
M = "M=[[1,2],[3,4]]"
D70 = ",".join(["1"] * 70)

CASES = [
    # ---------------------------------------------------------------- syntax
    C("syn-trailing-op", ["3*a+", "a=1"], "syntax", position=4, has=("end of input",)),
    C("syn-leading-op", ["*a", "a=1"], "syntax", position=0),
    C("syn-juxtaposed", ["a b", "a=1", "b=1"], "syntax", position=2),
    C("syn-unclosed-paren", ["(a", "a=1"], "syntax", position=2, has=("')'",)),
    C("syn-unmatched-paren", ["a)", "a=1"], "syntax", position=1, has=("unmatched",)),
    C("syn-unclosed-bracket", ["[1,2", "a=1"], "syntax"),
    C("syn-unmatched-bracket", ["1,2]"], "syntax"),
    C("syn-empty-index", ["x[]", *X], "syntax", position=2),
    C("syn-double-dot", ["x..T", *X], "syntax"),
    C("syn-bare-dot", ["x.", *X], "syntax"),
    C("syn-attr-foo", ["x.foo", *X], "syntax", has=(".T",)),
    C("syn-attr-shape", ["x.shape", *X], "syntax", has=(".T",)),
    C("syn-power-dangling", ["2**", *X], "syntax"),
    C("syn-power-leading", ["**2", *X], "syntax", position=0),
    C("syn-double-assign", ["a = = 1"], "syntax"),
    C("syn-assign-to-number", ["1 = a", "a=1"], "syntax"),
    C("syn-funcdef-number-param", ["f(1) = 2; f(1)"], "syntax"),
    C("syn-funcdef-repeated-param", ["f(x, x) = x; f(1, 2)"], "syntax", has=("repeated",)),
    C("syn-positional-after-kw", ["sum(dim=0, x)", *X], "syntax", has=("positional",)),
    C("syn-four-colons", ["x[1:2:3:4]", *X], "syntax"),
    C("syn-number-1e", ["1e+x", *X], "syntax", has=("invalid number",)),
    C("syn-number-dots", ["1.2.3"], "syntax"),
    C("syn-hex", ["0x10"], "syntax", has=("invalid number",)),
    C("syn-underscore-number", ["1_000"], "syntax", has=("invalid number",)),
    C("syn-number-then-name", ["3a", "a=1"], "syntax", has=("invalid number",)),
    C("syn-single-quotes", ["'a'", "a=1"], "syntax", position=0),
    C("syn-double-quotes", ['"a"', "a=1"], "syntax", position=0),
    C("syn-backticks", ["`ls`"], "syntax", position=0),
    C("syn-dollar", ["$x", *X], "syntax", position=0),
    C("syn-bang", ["x!", *X], "syntax", position=1),
    C("syn-ampersand", ["x & x", *X], "syntax"),
    C("syn-pipe", ["x | x", *X], "syntax"),
    C("syn-percent", ["x % 2", *X], "syntax"),
    C("syn-floordiv", ["x // 2", *X], "syntax"),
    # `<` and `==` are comparisons since issue 10; what is still no operator:
    C("syn-compare", ["x <> 2", *X], "syntax"),
    C("syn-equality", ["x === 2", *X], "syntax"),
    C("syn-compare-chain", ["x < 2 < 3", *X], "syntax"),
    C("syn-braces", ["{x}", *X], "syntax"),
    C("syn-ternary", ["x ? 1 : 2", *X], "syntax"),
    C("syn-backslash", ["x \\ 2", *X], "syntax"),
    C("syn-python-if", ["x if x else x", *X], "syntax"),
    C("syn-empty", [""], "syntax", has=("no statement",)),
    C("syn-blank", ["   "], "syntax", has=("no statement",)),
    C("syn-semicolons", [";;;"], "syntax", has=("no statement",)),
    C("syn-only-comment", ["# x"], "syntax", has=("no statement",)),
    C("syn-last-is-def", ["f(x) = x"], "syntax", has=("output",)),
    C("syn-call-a-call", ["sum(x)(1)", *X], "syntax"),
    C("syn-program-line2", ["-f", "{d}/syntax2.grad"], "syntax", position=19,
      json_extra={"line": 2, "column": 8}),
    C("syn-program-empty", ["-f", "{d}/empty.grad"], "syntax"),
    C("syn-program-only-def", ["-f", "{d}/onlydef.grad"], "syntax"),
    # ---------------------------------------------------------------- names
    C("name-unknown-function", ["foo(x)", *X], "name", position=0, has=("unknown function",)),
    C("name-unknown-variable", ["y * 2", *X], "name", position=0, has=("unknown name 'y'",)),
    C("name-near-miss", ["sumx(x)", *X], "name", has=("did you mean",)),
    C("name-variable-called", ["x(1)", *X], "name", has=("variable",)),
    C("name-function-uncalled", ["exp * 2"], "name", has=("function",)),
    C("name-NAN", ["NAN", *X], "name", position=0),      # NaN is a constant (issue 13.3); NAN not
    C("name-Infinity", ["Infinity * 2", *X], "name", position=0),
    C("name-recursion", ["f(x) = f(x); f(1)"], "name", position=7),
    C("name-mutual-recursion", ["f(x) = g(x); g(x) = f(x); f(1)"], "name"),
    C("name-program-line3", ["-f", "{d}/name2.grad"], "name", position=17,
      json_extra={"line": 3, "column": 5}),
    # ---------------------------------------------------------------- calls
    C("call-too-many", ["sum(x, 0, 0, 0)", *X], "call"),
    C("call-unknown-kw", ["sum(x, foo=1)", *X], "call", has=("foo",)),
    C("call-kw-twice", ["sum(x, dim=0, dim=0)", *X], "call", has=("twice",)),
    C("call-dim-range", ["sum(x, dim=5)", *X], "call", has=("dim 5",)),
    C("call-dim-fraction", ["sum(x, dim=0.5)", *X], "call", has=("whole number",)),
    C("call-dim-variable", ["sum(x, dim=x)", *X], "call"),
    C("call-no-args", ["sum()", *X], "call"),
    C("call-exp-no-args", ["exp()"], "call"),
    C("call-exp-two-args", ["exp(x, x)", *X], "call"),
    C("call-max-two-arrays", ["max(x, x)", *X], "call", has=("maximum",)),
    C("call-reshape-two-minus-one", ["reshape(x, -1, -1)", *X], "call"),
    C("call-ones-fraction", ["ones(2.5)"], "call"),
    C("call-ones-negative", ["ones(-1)"], "call"),
    C("call-ones-nan", ["ones(nan)"], "call"),
    C("call-ones-variable", ["ones(x)", *X], "call"),
    C("call-eye-negative", ["eye(-1)"], "call"),
    C("call-full-no-value", ["full(2, 2)"], "call", has=("value",)),
    C("call-linspace-short", ["linspace(0, 1)"], "call"),
    C("call-arange-zero-step", ["arange(0, 1, 0)"], "call"),
    C("call-arange-inf", ["arange(0, inf)"], "call"),
    C("call-index-fraction", ["x[1.5]", *X], "call", has=("whole number",)),
    C("call-index-range", ["x[5]", *X, "-g", "1"], "call", has=("out of range",)),
    C("call-index-none", ["x[None]", *X], "call"),
    C("call-slice-step-zero", ["x[::0]", *X, "-g", "1"], "call"),
    C("call-too-many-indices", ["x[0, 0, 0]", *X], "call"),
    C("call-index-variable", ["x[x]", *X], "call"),
    C("call-userfn-arity", ["f(a) = a; f(1, 2)"], "call"),
    C("call-userfn-kw", ["f(a) = a; f(b=1)"], "call"),
    C("call-loss-one-arg", ["mse_loss(x)", *X], "call"),
    C("call-array-of-variables", ["sum([x, 1])", *X], "call", has=("stack",)),
    C("call-norm-p-variable", ["norm(x, p=x)", *X], "call"),
    C("call-softmax-dim", ["softmax(x, dim=3)", *X, "-g", "1"], "call"),
    C("call-stack-empty", ["stack()"], "call"),
    # ---------------------------------------------------------------- shapes
    C("shape-add", ["x + y", *X, "y=1,2", "-g", "1"], "shape", position=2),
    C("shape-matmul", ["x @ y", *X, "y=1,2"], "shape", position=2),
    C("shape-dot", ["dot(x, y)", *X, "y=1,2"], "shape"),
    C("shape-trace-vector", ["trace(x)", *X], "shape"),
    C("shape-outer-matrix", ["outer(M, x)", M, *X, "-g", "1"], "shape"),
    C("shape-reshape", ["reshape(x, 5)", *X, "-g", "1"], "shape"),
    C("shape-mse", ["mse_loss(x, y)", *X, "y=1,2"], "shape"),
    C("shape-cat-scalars", ["cat(a, b)", "a=1", "b=2", "-g", "1"], "shape"),
    C("shape-matrix-vector", ["M @ x", M, *X, "-g", "1"], "shape"),
    C("shape-broadcast-2d", ["ones(2, 3) + x", "x=1,2,3,4", "-g", "1"], "shape"),
    # ---------------------------------------------------------------- cotangents
    C("cot-too-long", ["2*x", *X, "-g", "1,2"], "shape", has=("--grad",)),
    C("cot-extra-dim", ["2*x", *X, "-g", "[[1,2,3]]"], "shape", has=("(1, 3)",)),
    C("cot-for-scalar", ["sum(x)", *X, "-g", "1,2"], "shape"),
    C("cot-matrix-for-matrix", ["2*M", M, "-g", "1,2"], "shape"),
    C("cot-name", ["2*x", *X, "-g", "foo"], "value"),
    C("cot-empty", ["2*x", *X, "-g", ""], "value"),
    C("cot-ragged", ["2*x", *X, "-g", "[[1],[2,3]]"], "value", has=("rectangular",)),
    C("cot-missing-file", ["2*x", *X, "-g", "@{d}/nope.json"], "value"),
    C("cot-implied-vector", ["2*x", *X], "usage", has=("--grad",)),
    C("cot-implied-matrix", ["2*M", M], "usage", has=("ones(2, 2)",)),
    # ---------------------------------------------------------------- VALUEs and files
    C("val-double-comma", ["sum(a)", "a=1,,2"], "value"),
    C("val-ragged", ["sum(a)", "a=[[1],[2,3]]"], "value", has=("rectangular",)),
    C("val-ragged-deep", ["sum(a)", "a=[[1,2],[3]]"], "value"),
    C("val-mixed-depth", ["sum(a)", "a=[1,[2]]"], "value"),
    C("val-missing-file", ["sum(a)", "a=@missing"], "value", has=("no such file",)),
    C("val-at-only", ["sum(a)", "a=@"], "value"),
    C("val-directory", ["sum(a)", "a=@{d}/adir"], "value", has=("directory",)),
    C("val-bad-json", ["sum(a)", "a=@{d}/bad.json"], "value", has=("not valid JSON",)),
    C("val-json-object", ["sum(a)", "a=@{d}/obj.json"], "value", has=("object",)),
    C("val-json-nan", ["sum(a)", "a=@{d}/nan.json"], "value"),
    C("val-json-deep", ["sum(a)", "a=@{d}/deep.json"], "value"),
    C("val-json-ragged", ["sum(a)", "a=@{d}/ragged.json"], "value"),
    C("val-json-bools", ["sum(a)", "a=@{d}/bools.json"], "value", has=("boolean",)),
    C("val-json-null", ["sum(a)", "a=@{d}/nulls.json"], "value", has=("null",)),
    C("val-json-empty", ["sum(a)", "a=@{d}/empty.json"], "value"),
    C("val-json-at-file", ["sum(a)", "a=@{d}/atfile.json"], "usage"),
    C("val-bad-csv", ["sum(a)", "a=@{d}/bad.csv"], "value", has=("line 2",)),
    C("val-ragged-csv", ["sum(a)", "a=@{d}/ragged.csv"], "value"),
    C("val-empty-csv", ["sum(a)", "a=@{d}/empty.csv"], "value"),
    C("val-quoted-csv", ["sum(a)", "a=@{d}/quoted.csv"], "value"),
    C("val-bad-npy", ["sum(a)", "a=@{d}/bad.npy"], "value", has=(".npy",)),
    C("val-complex-npy", ["sum(a)", "a=@{d}/complex.npy"], "value"),
    C("val-string-npy", ["sum(a)", "a=@{d}/str.npy"], "value"),
    C("val-truncated-npy", ["sum(a)", "a=@{d}/truncated.npy"], "value"),
    C("val-lying-npy", ["sum(a)", "a=@{d}/lying.npy"], "value", isolate=True, seconds=20),
    C("val-latin1", ["sum(a)", "a=@{d}/latin1.txt"], "value", has=("UTF-8",)),
    C("val-empty", ["sum(a)", "a="], "value", has=("empty",)),
    C("val-comma", ["sum(a)", "a=,"], "value"),
    C("val-null-in-array", ["sum(a)", "a=[1,null]"], "value", has=("null",)),
    C("val-string-in-array", ["sum(a)", 'a=[1,"a"]'], "value", has=("string",)),
    C("val-bool-in-array", ["sum(a)", "a=[true]"], "value", has=("boolean",)),
    C("val-set", ["sum(a)", "a={1,2}"], "value"),
    C("val-complex", ["sum(a)", "a=1+2j"], "value"),
    C("val-None", ["sum(a)", "a=None"], "value", has=("None",)),
    C("val-None-in-array", ["sum(a)", "a=[1, None]"], "value", has=("None",)),
    C("val-Nan-word", ["sum(a)", "a=Nan"], "value"),
    C("val-Infinity-word", ["sum(a)", "a=[Infinity]"], "value"),
    C("val-variable", ["sum(a)", "a=b", "b=1"], "value", has=("not variables",)),
    C("val-1e", ["sum(a)", "a=1e"], "value"),
    C("val-hex", ["sum(a)", "a=0x10"], "value"),
    C("val-minus-only", ["sum(a)", "a=-"], "value"),
    C("val-unclosed", ["sum(a)", "a=[1,2"], "value"),
    C("val-40-dims", ["sum(a)", "a=" + "[" * 40 + "1" + "]" * 40], "value", has=("32",)),
    C("val-npy-40-dims", ["sum(a)", "a=@{d}/dims40.npy"], "limit"),
    C("val-name-starts-digit", ["sum(a)", "1a=2"], "usage"),
    C("val-no-name", ["sum(a)", "=1"], "usage"),
    C("val-no-equals", ["sum(a)", "a"], "usage"),
    C("val-given-twice", ["sum(a)", "a=1", "a=2"], "usage", has=("twice",)),
    C("val-nonascii-name", ["sum(a)", "\u00e9=1"], "usage"),
    C("val-none-as-output", ["None"], "value"),
    C("val-none-assigned", ["a = None; a * 2"], "value"),
    C("val-none-array", ["[None, 1]"], "value"),
    # ---------------------------------------------------------------- options
    C("opt-repeat-zero", ["x", "x=1", "--repeat", "0"], "usage"),
    C("opt-repeat-negative", ["x", "x=1", "--repeat", "-1"], "usage"),
    C("opt-repeat-word", ["x", "x=1", "--repeat", "x"], "usage"),
    C("opt-repeat-huge", ["x", "x=1", "--repeat", "1000000000"], "limit", has=("10,000",)),
    C("opt-memory-word", ["x", "x=1", "--max-memory", "lots"], "usage"),
    C("opt-memory-inf", ["x", "x=1", "--max-memory", "inf"], "usage"),
    C("opt-memory-overflow", ["x", "x=1", "--max-memory", "1e400"], "usage"),
    C("opt-memory-zero", ["x", "x=1", "--max-memory", "0"], "usage"),
    C("opt-depth-zero", ["x", "x=1", "--max-depth", "0"], "usage"),
    C("opt-elements-negative", ["x", "x=1", "--max-elements", "-5"], "usage"),
    C("opt-timeout-nan", ["x", "x=1", "--symbolic-timeout", "nan"], "usage"),
    C("opt-timeout-negative", ["x", "x=1", "--symbolic-timeout", "-1"], "usage"),
    C("opt-timeout-inf", ["x", "x=1", "--symbolic-timeout", "inf"], "usage"),
    C("opt-timeout-huge", ["x", "x=1", "--symbolic-timeout", "1e300"], "usage"),
    C("opt-text-zero", ["x", "x=1", "--max-text", "0"], "usage"),
    C("opt-rtol-nan", ["x", "x=1", "--rtol", "nan"], "usage"),
    C("opt-atol-negative", ["x", "x=1", "--atol", "-1"], "usage"),
    C("opt-seed-negative", ["x", "x=1", "--seed", "-1"], "usage"),
    C("opt-dtype-float16", ["x", "x=1", "--dtype", "float16"], "usage"),
    C("opt-check-bogus", ["x", "x=1", "--check", "bogus"], "usage"),
    C("opt-precision-zero", ["x", "x=1", "--precision", "0"], "usage"),
    C("opt-dot-unwritable", ["x", "x=1", "--dot", "/nonexistent/dir/g.dot"], "usage"),
    C("opt-dot-directory", ["x", "x=1", "--dot", "{d}/adir"], "usage"),
    C("opt-of-unknown", ["x*2", "x=1", "--of", "zz"], "usage"),
    C("opt-wrt-unknown", ["x*2", "x=1", "--wrt", "zz"], "usage"),
    C("opt-wrt-intermediate", ["y = x*2; y*3", "x=1", "--wrt", "y"], "usage"),
    C("opt-stdin-twice", ["a+b", "a=@-", "b=@-"], "usage", stdin="1", has=("only once",)),
    C("opt-stdin-program-and-value", ["-f", "-", "a=@-"], "usage", stdin="a*2"),
    C("opt-stdin-grad-and-value", ["a*2", "a=@-", "-g", "@-"], "usage", stdin="1"),
    C("opt-file-missing", ["-f", "{d}/nope.grad"], "usage"),
    C("opt-file-directory", ["-f", "{d}/adir"], "usage"),
    C("opt-file-binary", ["-f", "{d}/binary.grad"], "usage", has=("UTF-8",)),
    C("opt-unknown-option", ["x", "x=1", "--bogus"], "usage"),
    C("opt-jsonl-with-bindings", ["-", "x=1"], "usage"),
    C("opt-nothing", [], "usage"),
    C("opt-hash-colon-bogus", ["-f", "{d}/opts_bad.grad"], "usage", has=("--bogus",)),
    C("opt-hash-colon-quote", ["-f", "{d}/opts_quote.grad"], "usage"),
    C("opt-hash-colon-repeat", ["-f", "{d}/opts_repeat.grad"], "limit"),
    # ---------------------------------------------------------------- injection
    C("inj-import", ["__import__('os').system('touch {m}')"], "syntax"),
    C("inj-import-no-quotes", ["__import__(os)"], "name"),
    C("inj-class-bases", ["().__class__.__bases__"], "syntax"),
    C("inj-subclasses", ["x.__class__.__subclasses__()", *X], "syntax"),
    C("inj-exec", ["exec(\"open('{m}','w')\")"], "syntax"),
    C("inj-exec-name", ["exec(x)", *X], "name"),
    C("inj-eval-name", ["eval(x)", *X], "name"),
    C("inj-compile", ["compile(x)", *X], "name"),
    C("inj-open", ["open(x)", *X], "name"),
    C("inj-globals", ["globals()"], "name"),
    C("inj-builtins", ["__builtins__", *X], "name"),
    C("inj-lambda", ["lambda: 0"], "syntax"),
    C("inj-lambda-x", ["lambda x: x"], "syntax"),
    C("inj-dunder-attr", ["x.__dict__", *X], "syntax"),
    C("inj-T-then-attr", ["x.T.__class__", *X], "syntax"),
    C("inj-Symbol", ["Symbol('x')"], "syntax"),
    C("inj-Symbol-name", ["Symbol(x)", *X], "name"),
    C("inj-sympify", ["sympify(x)", *X], "name"),
    C("inj-S", ["S(x)", *X], "name"),
    C("inj-value-import", ["a*2", "a=__import__('os').system('touch {m}')"], "value"),
    C("inj-value-exec", ["a*2", "a=exec(\"1\")"], "value"),
    C("inj-value-Symbol", ["a*2", "a=Symbol('x')"], "value"),
    C("inj-grad-import", ["a*2", "a=1", "-g", "__import__('os')"], "value"),
    C("inj-file-code", ["a*2", "a=@{d}/code.txt"], "value"),
    C("inj-json-code", ["a*2", "a=@{d}/code.json"], "value"),
    C("inj-npy-pickle", ["a*2", "a=@{d}/evil.npy"], "value", has=(".npy",)),
    C("inj-pickle-file", ["a*2", "a=@{d}/evil.pkl"], "value"),
    C("inj-hash-colon-shell", ["-f", "{d}/opts_shell.grad"], "usage"),
    C("inj-hash-colon-dot", ["-f", "{d}/opts_dot.grad"], "usage"),
    C("inj-at-shell", ["a*2", "a=@$(touch {m})"], "value"),
    C("inj-semicolon-shell", ["a*2; touch MARKER", "a=1"], "syntax"),
    # ---------------------------------------------------------------- non-ASCII look-alikes
    C("uni-minus-sign", ["\u22121"], "syntax", position=0, has=("U+2212",)),
    C("uni-fullwidth-digit", ["\uff11 + 1"], "syntax", position=0, has=("U+FF11",)),
    C("uni-zero-width-space", ["x\u200b+1", *X, "-g", "1"], "syntax", position=1,
      has=("U+200B",)),
    C("uni-nbsp", ["x\u00a0+1", *X], "syntax", position=1),
    C("uni-fullwidth-x", ["\uff58 + 1", *X], "syntax", position=0),
    C("uni-greek-alpha", ["\u03b1 * 2"], "syntax", position=0),
    C("uni-cyrillic-a", ["\u0430 * 2", "a=1"], "syntax", position=0, has=("CYRILLIC",)),
    C("uni-rtl-override", ["x\u202e+1", *X], "syntax", position=1),
    C("uni-bom", ["\ufeffx", *X], "syntax", position=0),
    C("uni-times-sign", ["x\u00d72", *X], "syntax", position=1),
    C("uni-superscript-two", ["x\u00b2", *X], "syntax", position=1),
    C("uni-en-dash", ["x \u2013 1", *X], "syntax", position=2),
    C("uni-fullwidth-plus", ["x\uff0b1", *X], "syntax", position=1),
    C("uni-asterisk-operator", ["x\u22172", *X], "syntax", position=1),
    C("uni-combining", ["x\u0301", *X], "syntax", position=1),
    C("uni-emoji", ["x + \U0001F600", *X], "syntax", position=4),
    C("uni-smart-quotes", ["\u201cx\u201d", *X], "syntax", position=0),
    C("uni-digit-then-fullwidth", ["1\uff11"], "syntax", position=1, has=("U+FF11",)),
    C("uni-arabic-digit", ["x * \u0661", *X], "syntax", position=4),
    C("uni-dot-fullwidth-digit", [".\uff11"], "syntax"),
    C("uni-decimal-fullwidth-digit", ["1.\uff15"], "syntax", position=2),
    C("uni-value-minus", ["a*2", "a=\u22121"], "value", has=("U+2212",)),
    C("uni-value-arabic-digit", ["a*2", "a=\u0661"], "value", has=("U+0661",)),
    C("uni-value-nbsp", ["a*2", "a=\u00a01"], "value", has=("U+00A0",)),
    C("uni-value-list-fullwidth", ["sum(a)", "a=1,\uff12"], "value"),
    C("uni-csv-arabic-digit", ["sum(a)", "a=@{d}/arabic.csv"], "value"),
    C("uni-hash-colon-fullwidth", ["-f", "{d}/opts_fullwidth.grad"], "usage"),
    C("uni-value-fullwidth", ["a*2", "a=\uff11"], "value"),
    C("uni-value-zero-width", ["a*2", "a=1\u200b"], "value"),
    C("uni-name-cyrillic", ["a*2", "\u0430=1"], "usage"),
    C("uni-grad-minus", ["a*2", "a=1", "-g", "\u22121"], "value"),
    # ---------------------------------------------------------------- control characters
    C("ctl-ansi-in-expr", ["x\x1b[31m+1", *X], "syntax", position=1, has=("\\x1b",)),
    C("ctl-bell", ["x\x07", *X], "syntax", position=1, has=("\\x07",)),
    C("ctl-nul", ["x\x00+1", *X], "syntax", position=1),
    C("ctl-backspace", ["x\x08\x08y", *X], "syntax", position=1),
    C("ctl-c1-csi", ["x\x9b31m", *X], "syntax", position=1),
    C("ctl-delete", ["x\x7f", *X], "syntax", position=1),
    C("ctl-escape-in-value", ["a*2", "a=\x1b[2J1"], "value", has=("\\x1b",)),
    C("ctl-escape-in-grad", ["a*2", "a=1", "-g", "\x1b]0;title\x07"], "value"),
    C("ctl-escape-in-name", ["a*2", "\x1b=1"], "usage", has=("\\x1b",)),
    C("ctl-escape-in-file-path", ["a*2", "a=@\x1b[31mnope"], "value", has=("\\x1b",)),
    C("ctl-escape-in-file", ["a*2", "a=@{d}/ansi.txt"], "value"),
    C("ctl-escape-in-dot-path", ["x", "x=1", "--dot", "/nonexistent/\x1b[31m.dot"], "usage",
      has=("\\x1b",)),
    C("ctl-escape-in-program-path", ["-f", "/nonexistent/\x1b[2J.grad"], "usage",
      has=("\\x1b",)),
    C("ctl-escape-in-wrt", ["x*2", "x=1", "--wrt", "\x1b[31m"], "usage"),
    C("ctl-escape-in-of", ["x*2", "x=1", "--of", "\x1b[31m"], "usage"),
    C("ctl-escape-stdin-value", ["a*2", "a=@-"], "value", stdin="\x1b[31m1"),
    C("ctl-invalid-utf8-stdin", ["a*2", "a=@-"], "value", stdin=b"\xff\xfe1"),
    C("ctl-long-line-caret", ["x + " * 300 + "y", *X], "name", position=1200),
    # ---------------------------------------------------------------- huge and deep
    C("deep-parens", ["-f", "{d}/deep.grad", "x=1"], "limit", has=("--max-depth",)),
    C("deep-unary", ["-f", "{d}/neg.grad", "x=1"], "limit", has=("--max-depth",)),
    C("deep-brackets", ["-f", "{d}/brk.grad"], "limit", has=("--max-depth",)),
    C("deep-power-chain", ["x" + "**x" * 300, "x=1"], "limit", has=("--max-depth",)),
    C("deep-value", ["sum(a)", "a=" + "(" * 50000 + "1" + ")" * 50000], "limit"),
    C("deep-value-brackets", ["sum(a)", "a=" + "[" * 50000 + "1" + "]" * 50000], "limit"),
    C("deep-grad", ["a*2", "a=1", "-g", "[" * 50000 + "1" + "]" * 50000], "limit"),
    C("huge-text", ["-f", "{d}/big.grad"], "limit", has=("1,000,000",)),
    C("huge-value-file", ["sum(a)", "a=@{d}/big.txt"], "limit", has=("--max-text",)),
    C("huge-dev-zero", ["sum(a)", "a=@/dev/zero"], "limit", isolate=True, seconds=30),
    C("huge-dev-urandom", ["sum(a)", "a=@/dev/urandom"], "value", isolate=True, seconds=30),
    C("huge-program-dev-zero", ["-f", "/dev/zero"], "limit", isolate=True, seconds=30),
    C("huge-stdin", ["sum(a)", "a=@-"], "limit", stdin=b"1," * 1_000_000, seconds=20),
    C("huge-ones-1e12", ["ones(1e12)"], "limit", isolate=True, seconds=30,
      has=("--max-elements",)),
    C("huge-ones-square", ["sum(ones(100000, 100000))"], "limit", isolate=True, seconds=30,
      has=("--max-elements",)),
    C("huge-eye", ["eye(1e30)"], "limit", isolate=True, seconds=30),
    C("huge-linspace", ["linspace(0, 1, 1e12)"], "limit", isolate=True, seconds=30),
    C("huge-arange", ["arange(0, 1e15)"], "limit", isolate=True, seconds=30),
    C("huge-broadcast", ["sum(reshape(x, 100000, 1) + x)", "x=ones(100000)"], "limit",
      isolate=True, seconds=30, has=("--max-elements",)),
    C("huge-outer", ["sum(outer(x, x))", "x=ones(20000)"], "limit", isolate=True, seconds=30),
    C("huge-jacobian", ["x * ones(10000)", "x=ones(10000)", "-g", "1", "--jacobian"], "limit",
      isolate=True, seconds=30, has=("Jacobian", "--max-memory")),
    C("huge-memory-limit", ["sum(x*2)", "x=ones(1000, 1000)", "--max-memory", "1M"], "limit",
      has=("--max-memory",)),
    C("huge-elements-option", ["sum(x)", "x=ones(20)", "--max-elements", "10"], "limit"),
    C("huge-70-dims", [f"ones({D70})"], "limit", has=("dimensions",)),
    C("huge-reshape-70-dims", [f"sum(reshape(x, {D70}))", "x=1"], "limit"),
    C("huge-npy-lying-header", ["sum(a)", "a=@{d}/lying.npy", "--max-memory", "1M"], "value",
      isolate=True, seconds=30),
    C("huge-repeat-option", ["x", "x=1", "--repeat", "11", "--max-repeat", "10"], "limit"),
    C("huge-depth-option", ["((x))", "x=1", "--max-depth", "2"], "limit"),
    C("huge-text-option", ["x + x", "x=1", "--max-text", "3"], "limit"),
    # ---------------------------------------------------------------- results, not errors
    C("ok-log-minus-one", ["log(-1)", "--check", "none"], status=0,
      out_has=('"NaN"', "log() produced a non-finite value at column 1")),
    C("ok-one-over-zero", ["1/0", "--check", "none"], status=0,
      out_has=('"Infinity"', "div() produced a non-finite value at column 2")),
    C("ok-sqrt-zero-grad", ["sum(sqrt(x))", "x=0,1", "--check", "none"], status=0,
      out_has=('"Infinity"', "SqrtBackward0 at column 5 returned inf")),
    C("ok-1e999", ["x * 1e999", "x=1", "--check", "none"], status=0,
      out_has=("the number 1e999 at column 5",)),
    C("ok-nan-grad", ["x * 2", "x=1", "-g", "nan", "--check", "none"], status=0,
      out_has=("the cotangent",)),
    C("ok-numeric-inf-error", ["x * inf", "x=1", "--check", "numeric"], status=None,
      out_has=('"checks"',)),
    C("ok-names-of-builtins", ["exec*2 + eval + open + lambda_ + E + I + S + N",
                               "exec=1", "eval=2", "open=3", "lambda_=4", "E=5", "I=6", "S=7",
                               "N=8", "--check", "none"], status=0, out_has=('"exec":2.0',)),
    C("ok-comment-with-escape", ["x * 2 # \x1b[2J\x1b]0;pwned\x07", "x=1", "--check", "none"],
      status=0),
    C("ok-comment-unicode", ["x * 2 # \u2212 \uff11 \u202e", "x=1", "--check", "none"], status=0),
    C("ok-dot-weird-name", ["x*2", "x=1", "--dot", "$(touch MARKER).dot", "--check", "none"],
      status=0),
    C("ok-empty-slice", ["x[3:]", *X, "-g", "1", "--check", "none"], status=0),
    C("ok-flat-chain", ["+".join(["x"] * 5000), "x=1", "--check", "none"], status=0,
      out_has=('"x":5000.0',)),
    C("ok-deep-200", ["(" * 190 + "x" + ")" * 190, "x=1", "--check", "none"], status=0),
    C("ok-many-T", ["x" + ".T" * 5000, "x=1", "--check", "none"], status=0),
]

ERROR_CASES = [c for c in CASES if c.kind is not None]
OK_CASES = [c for c in CASES if c.kind is None]


def test_corpus_size():
    """The issue asks for at least 150 hostile inputs across the categories."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) + len(JSONL_LINES) >= 150
    categories = {c.id.split("-")[0] for c in CASES}
    assert categories >= {"syn", "name", "call", "shape", "cot", "val", "opt", "inj", "uni",
                          "ctl", "deep", "huge", "ok"}


def _check_marker(d):
    assert not (d / "MARKER").exists(), "an injection created the marker file"


def _params(cases):
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)]
                         if c.xfail else []) for c in cases]


@pytest.mark.parametrize("mode", ["human", "json"])
@pytest.mark.parametrize("case", _params(ERROR_CASES))
def test_error_case(case, mode, hostile_dir):
    if case.isolate and mode == "human":
        pytest.skip("subprocess cases run once, with --json (stderr is checked there too)")
    args = fill(case.args, hostile_dir)
    if mode == "json":
        args = args + ["--json"]
    stdin = case.stdin
    r = cli(args, stdin, isolate=case.isolate, timeout=max(30.0, 2 * case.seconds),
            cwd=str(hostile_dir))
    _check_marker(hostile_dir)
    r.assert_error(case.kind, json_too=(mode == "json"))
    assert r.seconds < case.seconds, f"took {r.seconds:.1f} s"
    for s in case.has:
        assert s in r.message, f"{s!r} not in the reason: {r.message!r}"
    if mode == "json":
        err = r.json()["error"]
        assert err["kind"] == case.kind
        if case.position is not NUL_ID:
            assert err["position"] == case.position, err
        for k, v in case.json_extra.items():
            assert err.get(k) == v, err
        # the JSON message is the same reason (escaped on stderr)
        assert escape_text(err["message"])[:40] in r.stderr
    elif args[:1] == ["-"]:
        assert "error" in r.json(), "JSON Lines mode answers in JSON even before a request"
    else:
        assert r.stdout == "", "a bad input without --json printed to stdout"
        if case.position not in (NUL_ID, None):
            lines = r.stderr.rstrip("\n").split("\n")
            assert len(lines) == 3, "an error with a position shows the text and a caret"


@pytest.mark.parametrize("case", _params(OK_CASES))
def test_result_case(case, hostile_dir):
    r = cli(fill(case.args, hostile_dir) + ["--json"], case.stdin, isolate=case.isolate,
            timeout=max(30.0, 2 * case.seconds), cwd=str(hostile_dir))
    _check_marker(hostile_dir)
    r.assert_clean()
    if case.status is not None:
        assert r.status == case.status, r.stderr
    obj = r.json()                      # strict: NaN/Infinity only as strings
    assert "error" not in obj, obj
    text = r.stdout
    for s in case.out_has:
        assert s in text, f"{s!r} not in {text[:600]}"
    assert r.seconds < case.seconds, f"took {r.seconds:.1f} s"
    # and the human view of the same input: no escape byte (checked by assert_clean)
    h = cli(fill(case.args, hostile_dir), case.stdin, isolate=case.isolate,
            timeout=max(30.0, 2 * case.seconds), cwd=str(hostile_dir))
    h.assert_clean()
    _check_marker(hostile_dir)


def test_nonfinite_messages_name_the_first_node():
    """Issue 5 item 5: log(-1), 1/0 and sqrt(0)'s gradient give exit 0, valid JSON, and name
    the first node whose value or gradient went non-finite, with its position."""
    def nf(*args):
        r = cli([*args, "--json", "--check", "none"])
        r.assert_clean()
        assert r.status == 0
        return r.json()["nonfinite"]

    n = nf("log(-1)")
    assert (n["node"], n["in"], n["column"], n["value"]) == ("log", "value", 1, "NaN")
    n = nf("2 * (1/0)")
    assert (n["node"], n["column"], n["value"]) == ("div", 7, "Infinity")
    n = nf("sum(sqrt(x))", "x=0,1")
    assert (n["node"], n["in"], n["column"]) == ("SqrtBackward0", "gradient", 5)
    assert n["message"] == "SqrtBackward0 at column 5 returned inf (the gradient of sqrt())"
    n = nf("y = log(a) + 1", "a=-1")
    assert n["message"] == "log() produced a non-finite value at column 5 (NaN)"
    n = nf("x + 2*(-inf)", "x=1")          # folded constants: the literal inf is the cause
    assert (n["node"], n["column"], n["value"]) == ("const", 9, "Infinity")
    n = nf("sum(x*[1, 1/0])", "x=1,2")     # inside an array literal: the division
    assert (n["node"], n["column"]) == ("div", 12)
    n = nf("x * 2", "x=-inf")
    assert (n["node"], n["value"]) == ("x", "-Infinity")
    n = nf("exp(-exp(x))", "x=1000")       # finite output, NaN gradient: exp at column 6
    assert (n["node"], n["in"], n["column"], n["value"]) == ("ExpBackward0", "gradient", 6,
                                                              "NaN")
    assert nf("x * 2", "x=3") is None


def test_program_nonfinite_has_line_and_column(tmp_path):
    p = tmp_path / "nf.grad"
    p.write_text("x = 0\ny = sqrt(x)\nz = y * 2\n")
    r = cli(["-f", str(p), "--json", "--check", "none"])
    n = r.json()["nonfinite"]
    assert (n["line"], n["column"], n["position"]) == (2, 5, 10)
    assert n["message"].startswith("SqrtBackward0 at line 2, column 5 returned inf")


def test_echo_is_escaped_and_short():
    """SPEC 8: echoed input has control characters escaped and at most 200 characters
    around the error."""
    long = "x + " * 2000 + "\x1b[31m" + " + x" * 2000
    r = cli([long, "x=1"])
    r.assert_error("syntax")
    text, caret = r.stderr.split("\n")[1:3]
    assert "\\x1b[31m" in text
    assert len(text) <= 2 + 3 + 200 + 3 + 3          # indent, "...", 200 chars, escapes, "..."
    assert text.startswith("  ...") and text.endswith("...")
    assert caret.index("^") == text.index("\\x1b")


def test_rich_markup_in_input_is_shown_literally(hostile_dir):
    r = cli(["x*2 # [bold red]boom[/] [link=http://x]y[/link]", "x=1", "--check", "none"])
    r.assert_clean()
    assert r.status == 0
    assert "[bold red]boom[/]" in r.stdout
    r = cli(["x*[bold]", "x=1"])
    r.assert_error("name")
    assert "[bold]" in r.stderr


# ---------------------------------------------------------------- JSON Lines garbage
GOOD = b'{"id": "after", "expr": "sum(x*x)", "vars": {"x": [1, 2]}, "check": "none"}'

JSONL_LINES = [
    # (id, line, expected kind, expected id (NUL_ID: no id in the answer))
    ("not-json", b"not json", "usage", NUL_ID),
    ("array", b'[1, 2]', "usage", NUL_ID),
    ("string", b'"expr"', "usage", NUL_ID),
    ("number", b"42", "usage", NUL_ID),
    ("null", b"null", "usage", NUL_ID),
    ("empty-object", b"{}", "usage", NUL_ID),
    ("missing-expr", b'{"id": 0, "vars": {"x": 1}}', "usage", 0),
    ("both", b'{"id": "", "expr": "x", "program": "x", "vars": {"x": 1}}', "usage", ""),
    ("expr-number", b'{"id": false, "expr": 5}', "usage", False),
    ("expr-null", b'{"id": null, "expr": null}', "usage", None),
    ("expr-list", b'{"id": [1], "expr": ["x"]}', "usage", [1]),
    ("vars-list", b'{"id": {"a": 1}, "expr": "x", "vars": [1]}', "usage", {"a": 1}),
    ("var-name", b'{"id": 1.5, "expr": "x", "vars": {"1x": 1}}', "usage", 1.5),
    ("var-object", b'{"id": -0, "expr": "x", "vars": {"x": {"a": 1}}}', "value", 0),
    ("var-bool", b'{"id": 12345678901234567890, "expr": "x", "vars": {"x": true}}', "value",
     12345678901234567890),
    ("var-null", b'{"id": "\\u00e9", "expr": "x", "vars": {"x": null}}', "value", "\u00e9"),
    ("var-ragged", b'{"id": 1, "expr": "x", "vars": {"x": [[1], [2, 3]]}}', "value", 1),
    ("var-bad-string", b'{"id": 2, "expr": "x", "vars": {"x": "1,,2"}}', "value", 2),
    ("repeat-string", b'{"id": 3, "expr": "x", "vars": {"x": 1}, "repeat": "x"}', "usage", 3),
    ("repeat-huge", b'{"id": 4, "expr": "x", "vars": {"x": 1}, "repeat": 1000000000}', "limit",
     4),
    ("repeat-zero", b'{"expr": "x", "vars": {"x": 1}, "repeat": 0}', "usage", NUL_ID),
    ("repeat-float", b'{"expr": "x", "vars": {"x": 1}, "repeat": 1.5}', "usage", NUL_ID),
    ("repeat-bool", b'{"expr": "x", "vars": {"x": 1}, "repeat": true}', "usage", NUL_ID),
    ("repeat-overflow", b'{"expr": "x", "vars": {"x": 1}, "repeat": 1e400}', "usage", NUL_ID),
    ("seed-negative", b'{"expr": "x", "vars": {"x": 1}, "seed": -1}', "usage", NUL_ID),
    ("seed-string", b'{"expr": "x", "vars": {"x": 1}, "seed": "x"}', "usage", NUL_ID),
    ("dtype-bad", b'{"expr": "x", "vars": {"x": 1}, "dtype": "float16"}', "usage", NUL_ID),
    ("check-bad", b'{"expr": "x", "vars": {"x": 1}, "check": "yes"}', "usage", NUL_ID),
    ("wrt-number", b'{"expr": "x", "vars": {"x": 1}, "wrt": 5}', "usage", NUL_ID),
    ("wrt-unknown", b'{"expr": "x", "vars": {"x": 1}, "wrt": ["zz"]}', "usage", NUL_ID),
    ("of-number", b'{"expr": "x", "vars": {"x": 1}, "of": 5}', "usage", NUL_ID),
    ("of-unknown", b'{"expr": "x", "vars": {"x": 1}, "of": "zz"}', "usage", NUL_ID),
    ("grad-shape", b'{"expr": "x", "vars": {"x": 1}, "grad": [1, 2]}', "shape", NUL_ID),
    ("grad-bool", b'{"expr": "x", "vars": {"x": 1}, "grad": true}', "value", NUL_ID),
    ("grad-object", b'{"expr": "x", "vars": {"x": 1}, "grad": {"a": 1}}', "value", NUL_ID),
    ("jacobian-string", b'{"expr": "x", "vars": {"x": 1}, "jacobian": "yes"}', "usage",
     NUL_ID),
    ("rtol-string", b'{"expr": "x", "vars": {"x": 1}, "rtol": "x"}', "usage", NUL_ID),
    ("nan-literal", b'{"id": 5, "expr": "x", "vars": {"x": NaN}}', "usage", NUL_ID),
    ("infinity-literal", b'{"expr": "x", "vars": {"x": Infinity}}', "usage", NUL_ID),
    ("minus-infinity-literal", b'{"expr": "x", "vars": {"x": -Infinity}}', "usage", NUL_ID),
    ("at-stdin", b'{"id": 6, "expr": "x", "vars": {"x": "@-"}}', "usage", 6),
    ("at-file", b'{"id": 7, "expr": "x", "vars": {"x": "@/etc/passwd"}}', "usage", 7),
    ("at-grad", b'{"id": 8, "expr": "x", "vars": {"x": 1}, "grad": "@-"}', "usage", 8),
    ("at-hash-colon", b'{"id": 9, "program": "#: --grad @-\\nx = 1"}', "usage", 9),
    ("duplicate-key", b'{"expr": "x", "expr": "y", "vars": {"x": 1, "y": 2}}', "usage", NUL_ID),
    ("trailing-garbage", b'{"expr": "x", "vars": {"x": 1}} trailing', "usage", NUL_ID),
    ("two-objects", b'{"expr": "x"}{"expr": "x"}', "usage", NUL_ID),
    ("deep-array", b"[" * 100000, "usage", NUL_ID),
    ("deep-object", b'{"a":' * 100000, "usage", NUL_ID),
    ("invalid-utf8", b'{"expr": "x\xff"}', "usage", NUL_ID),
    ("latin1-line", b"\xe9\xe8", "usage", NUL_ID),
    ("bom", b'\xef\xbb\xbf{"expr": "x", "vars": {"x": 1}}', "usage", NUL_ID),
    ("id-overflow", b'{"id": 1e400, "expr": "x", "vars": {"x": 1}}', "usage", NUL_ID),
    ("expr-syntax", b'{"id": 11, "expr": "x +* 2", "vars": {"x": 1}}', "syntax", 11),
    ("expr-escape", b'{"id": 12, "expr": "x\\u001b[31m", "vars": {"x": 1}}', "syntax", 12),
    ("expr-import", b'{"id": 13, "expr": "__import__(\'os\')"}', "syntax", 13),
    ("expr-deep", b'{"id": 14, "expr": "' + b"(" * 100000 + b'x"}', "limit", 14),
    ("expr-huge-ones", b'{"id": 15, "expr": "ones(1e12)"}', "limit", 15),
    ("expr-lone-surrogate", b'{"id": 16, "expr": "\\ud800"}', "syntax", 16),
    ("program-line2", b'{"id": 17, "program": "x = 1\\ny = x +* 2"}', "syntax", 17),
]


@pytest.mark.parametrize("case", JSONL_LINES, ids=[c[0] for c in JSONL_LINES])
def test_jsonl_bad_line_then_good(case):
    """Each bad line yields one error object (with its id when it had one), nothing on
    stderr, and the good request after it is answered; exit 2 at the end."""
    _, line, kind, rid = case
    r = cli(["-"], line + b"\n" + GOOD + b"\n")
    r.assert_clean()
    assert r.stderr == ""
    outs = r.json_lines()
    assert len(outs) == 2, outs
    bad, good = outs
    assert bad["error"]["kind"] == kind, bad
    assert set(bad["error"]) >= {"kind", "message", "position"}
    if rid is NUL_ID:
        assert "id" not in bad
    else:
        assert "id" in bad and bad["id"] == rid and type(bad["id"]) is type(rid), bad
        assert list(bad)[0] == "id"
    assert good["id"] == "after" and good["grads"]["x"] == [2.0, 4.0]
    assert r.status == 2
    assert r.seconds < 20


def test_jsonl_program_error_has_line_and_column():
    r = cli(["-"], b'{"program": "x = 1\\ny = x +* 2"}\n')
    err = r.json_lines()[0]["error"]
    assert (err["kind"], err["position"], err["line"], err["column"]) == ("syntax", 13, 2, 8)


def test_jsonl_blank_lines_are_skipped():
    r = cli(["-"], b"\n   \n\t\n" + GOOD + b"\r\n\n" + GOOD)     # last line: no newline
    r.assert_clean()
    outs = r.json_lines()
    assert [o["id"] for o in outs] == ["after", "after"]
    assert r.status == 0 and r.stderr == ""


def test_jsonl_ten_megabyte_line_is_one_error_and_the_stream_goes_on():
    big = b'{"id": 99, "expr": "x", "vars": {"x": [' + b"1," * 5_000_000 + b'1]}}'
    assert len(big) > 10_000_000
    r = cli(["-"], big + b"\n" + GOOD + b"\n", isolate=True, timeout=60)
    r.assert_clean()
    outs = r.json_lines()
    assert len(outs) == 2
    assert outs[0] == {"id": 99, "error": outs[0]["error"]}
    assert outs[0]["error"]["kind"] == "limit"
    assert outs[1]["id"] == "after"
    assert r.status == 2 and r.stderr == ""


def test_jsonl_endless_line_does_not_exhaust_memory():
    """A line with no end (here 20 MB without a newline) is cut at the line limit."""
    r = cli(["-", "--max-text", "1000"], b"x" * 20_000_000, isolate=True, timeout=60)
    r.assert_clean()
    outs = r.json_lines()
    assert len(outs) == 1 and outs[0]["error"]["kind"] == "limit"
    assert "8,000 bytes" in outs[0]["error"]["message"]


def test_jsonl_whole_garbage_stream_keeps_order():
    """All the bad lines in one stream, good requests interleaved: one answer per non-blank
    line, in order, and every good request answered correctly."""
    lines, expect = [], []
    for i, (_, line, kind, rid) in enumerate(JSONL_LINES):
        lines.append(line)
        expect.append(("error", kind))
        good = json.dumps({"id": i, "expr": "sum(x*x)", "vars": {"x": [i, 1]},
                           "check": "none"}).encode()
        lines.append(good)
        expect.append(("ok", i))
        lines.append(b"")
    r = cli(["-"], b"\n".join(lines) + b"\n", timeout=60)
    r.assert_clean()
    outs = r.json_lines()
    assert len(outs) == len(expect)
    for (what, v), o in zip(expect, outs):
        if what == "error":
            assert o["error"]["kind"] == v
        else:
            assert o["id"] == v and o["output"]["value"] == v * v + 1
    assert r.status == 2 and r.stderr == ""


def test_jsonl_nothing_runs_from_requests(tmp_path):
    m = tmp_path / "MARKER"
    reqs = [
        {"expr": f"__import__('os').system('touch {m}')"},
        {"expr": "x", "vars": {"x": f"__import__('os').system('touch {m}')"}},
        {"expr": "x", "vars": {"x": f"@{tmp_path}/nope"}},
        {"program": f"#: --grad $(touch {m})\nx = 1"},
        {"expr": "exec*2", "vars": {"exec": 1}, "check": "none"},
    ]
    r = cli(["-"], "".join(json.dumps(q) + "\n" for q in reqs), cwd=str(tmp_path))
    r.assert_clean()
    outs = r.json_lines()
    assert [("error" in o) for o in outs] == [True, True, True, True, False]
    assert outs[4]["grads"]["exec"] == 2.0
    assert not m.exists()


# ---------------------------------------------------------------- internal errors
def test_internal_error_exit_3_short_message_traceback_only_with_debug(monkeypatch):
    from gradcalc import api

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(api, "run", boom)
    r = cli(["x*2", "x=1"])
    assert r.status == 3
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.startswith("gradcalc: internal error (ZeroDivisionError: simulated bug)")
    assert "report" in r.stderr and "--debug" in r.stderr
    assert r.stderr.count("\n") == 1
    r = cli(["x*2", "x=1", "--json"])
    assert r.status == 3 and r.json()["error"]["kind"] == "internal"
    r = cli(["x*2", "x=1", "--debug"])
    assert r.status == 3
    assert "Traceback" in r.stderr and "ZeroDivisionError: simulated bug" in r.stderr


def test_internal_error_in_jsonl_keeps_the_stream(monkeypatch):
    from gradcalc import api
    real = api.calculate            # (what serve calls, with the request's settings resolved)

    def flaky(text, *a, **k):
        if text == "boom":
            raise KeyError("simulated")
        return real(text, *a, **k)

    monkeypatch.setattr(api, "calculate", flaky)
    r = cli(["-"], b'{"id": 1, "expr": "boom"}\n' + GOOD + b"\n")
    outs = r.json_lines()
    assert outs[0]["id"] == 1 and outs[0]["error"]["kind"] == "internal"
    assert outs[1]["id"] == "after"
    assert r.status == 3
    assert "Traceback" not in r.stderr


def test_closed_stdout_is_not_a_traceback():
    """`gradcalc ... | head -c0`: the reader went away; no BrokenPipeError traceback."""
    for args in (["x*", "x=1", "--json"], ["x*2", "x=1", "--json"], ["-"]):
        r, w = os.pipe()
        os.close(r)                                    # nobody will read stdout
        try:
            p = cli(args, (GOOD + b"\n") * 2000, isolate=True, stdout=w, timeout=60)
        finally:
            os.close(w)
        assert b"Traceback" not in p.err and b"Exception ignored" not in p.err, p.err[-2000:]
        assert p.status in (0, 2), (args, p.status, p.err[-500:])


def test_numpy_warnings_do_not_reach_stderr():
    r = cli(["sum(exp(x) * 0)", "x=1000,1", "--check", "numeric", "--json"])
    assert r.status in (0, 1)
    assert "Warning" not in r.stderr and "warn" not in r.stderr
    r = cli(["-"], b'{"expr": "x*inf", "vars": {"x": 1}, "check": "numeric"}\n')
    assert r.stderr == ""
    assert "checks" in r.json_lines()[0]


def _run_on_a_terminal(args, env_extra):
    """Run the command with a pseudo-terminal as stdin, stdout and stderr: what a person
    sees. Returns (exit status, everything written). (Popen, not the shared runner: the
    output is read from the terminal's master side while the process runs.)"""
    import pty
    import subprocess
    import sys
    m, s = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", **env_extra)
    env.pop("FORCE_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "gradcalc", *args], stdin=s, stdout=s,
                         stderr=s, env=env, close_fds=True)
    os.close(s)
    out = b""
    while True:
        try:
            chunk = os.read(m, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(m)
    return p.wait(timeout=60), out


def test_terminal_echo_of_hostile_text_is_escaped():
    """On a terminal, user text (a comment with an escape sequence that would clear the
    screen and retitle the window; an error echo) reaches it only escaped."""
    status, out = _run_on_a_terminal(["x*2 # \x1b[2J\x1b]0;pwned\x07", "x=1"], {})
    assert status == 0
    assert b"\x1b[2J" not in out and b"\x1b]0;" not in out and b"\x07" not in out
    status, out = _run_on_a_terminal(["x*2\x1b[2J", "x=1"], {})
    assert status == 2 and b"\x1b[2J" not in out and b"\\x1b[2J" in out


def test_no_color_terminal_gets_no_escape_bytes():
    status, out = _run_on_a_terminal(["x*2", "x=1"], {"NO_COLOR": "1"})
    assert status == 0 and b"output" in out
    assert b"\x1b" not in out


@pytest.mark.parametrize("redirect, args, status", [
    ("<&-", ["-"], 0),                           # no stdin: no requests
    ("<&-", ["x", "x=@-"], 2),                   # no stdin: an empty VALUE
    (">&-", ["x*2", "x=1"], 0),                  # no stdout: nothing to show, no crash
    (">&-", ["x*2", "x=1", "--json"], 0),
    (">&- 2>&-", ["x*", "x=1"], 2),              # nowhere to say it, still exit 2
])
def test_closed_standard_streams(redirect, args, status):
    # bash, not the shared runner: only a shell starts a process with a stream closed
    import shlex
    import subprocess
    import sys
    cmd = f"exec {shlex.quote(sys.executable)} -m gradcalc {shlex.join(args)} {redirect}"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=60,
                       cwd=os.path.dirname(__file__))
    assert p.returncode == status, p.stderr
    assert b"Traceback" not in p.stderr + p.stdout


def test_no_path_from_text_to_eval_pickle_or_a_shell():
    """Issue 5 item 4, checked on the source: no module of gradcalc calls eval/exec/compile/
    __import__, sympy's string parsers (sympify, parse_expr, S) or lambdify, a shell or a
    subprocess, or imports pickle-like modules; every np.load passes allow_pickle=False.
    One exception, by SPEC 11: extern.py starts the commands the user names with --extern,
    as an argument list from shlex.split and never through a shell."""
    import ast
    import pathlib
    pkg = pathlib.Path(__file__).resolve().parent.parent / "gradcalc"
    banned_names = {"eval", "exec", "compile", "__import__", "breakpoint", "input"}
    banned_attrs = {"sympify", "parse_expr", "lambdify", "system", "popen", "Popen",
                    "check_output", "check_call", "getoutput", "getstatusoutput", "spawnl",
                    "execv", "execvp", "import_module", "load_module"}
    banned_modules = {"pickle", "cPickle", "dill", "shelve", "marshal", "subprocess", "pty",
                      "code", "codeop", "runpy", "importlib"}
    problems = []
    extern_popens = 0
    for path in sorted(pkg.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                for mod in mods:
                    # importlib.metadata reads the installed package's version, runs nothing
                    if mod.split(".")[0] in banned_modules and mod != "importlib.metadata" \
                            and (path.name, mod) != ("extern.py", "subprocess"):
                        problems.append(f"{where} imports {mod}")
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sympy"):
                    for a in node.names:
                        if a.name in {"sympify", "parse_expr", "lambdify", "S"}:
                            problems.append(f"{where} imports sympy's {a.name}")
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id in banned_names:
                problems.append(f"{where} calls {f.id}()")
            if isinstance(f, ast.Attribute):
                if (path.name, f.attr) == ("extern.py", "Popen"):
                    extern_popens += 1
                    argv = node.args[0] if node.args else None
                    if any(k.arg in ("shell", "executable", "preexec_fn") for k in node.keywords) \
                            or not (isinstance(argv, ast.Attribute) and argv.attr == "argv"):
                        problems.append(f"{where} starts a command other than self.argv")
                elif f.attr in banned_attrs:
                    problems.append(f"{where} calls .{f.attr}()")
                if f.attr == "S" and isinstance(f.value, ast.Name) and f.value.id in ("sp",
                                                                                     "sympy"):
                    problems.append(f"{where} calls sympy.S()")
                if f.attr == "load" and isinstance(f.value, ast.Name) and f.value.id in (
                        "np", "numpy"):
                    kw = {k.arg: k.value for k in node.keywords}
                    ap = kw.get("allow_pickle")
                    if not (isinstance(ap, ast.Constant) and ap.value is False):
                        problems.append(f"{where} calls np.load without allow_pickle=False")
    assert not problems, problems
    assert extern_popens == 1
