"""Reading inputs, through a real `python -m gradcalc` process: gradcalc reads back its own
JSON (issue 13 item 3), CSV/TSV/.npz files and a BOM (item 4), `.npy` without a memory map
(issue 14 item 7), limits that are the options' (items 15, 16) and echoes that stay short
(item 17). The `--data` reader (SPEC 12) is called directly.

Expected numbers are worked out by hand beside each assertion.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clirun import answer, cli

from gradcalc.errors import Limits as _Limits  # noqa: E402
LIMITS = _Limits()      # the edge: tests build the limits, the library takes them

REAL = {"isolate": True, "timeout": 60}       # a real `python -m gradcalc` process


# ------------------------------------------------------ issue 13.3: reading its own JSON
def test_json_file_nonfinite_strings_are_numbers(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('[1, "NaN", "Infinity", "-Infinity"]')
    obj = answer(["x*2", f"x=@{p}", "-g", "1"], **REAL)
    # 2*[1, nan, inf, -inf]; d(2x)/dx = 2 everywhere
    assert obj["output"]["value"] == [2.0, "NaN", "Infinity", "-Infinity"]
    assert obj["grads"]["x"] == [2.0, 2.0, 2.0, 2.0]


def test_round_trip_of_its_own_output(tmp_path):
    first = answer(["1/x", "x=[0, 1, -0.0]", "-g", "1"], **REAL)
    assert first["output"]["value"] == ["Infinity", 1.0, "-Infinity"]
    p = tmp_path / "out.json"
    p.write_text(json.dumps(first["output"]["value"]))
    # exp(-inf) = 0, exp(1) = e, exp(inf) = inf
    obj = answer(["exp(-y)", f"y=@{p}", "-g", "1"], **REAL)
    assert obj["output"]["value"] == [0.0, pytest.approx(math.exp(-1)), "Infinity"]
    scalar = tmp_path / "s.json"
    scalar.write_text('"-Infinity"')
    assert answer(["(-y)", f"y=@{scalar}"], **REAL)["output"]["value"] \
        == "Infinity"


@pytest.mark.parametrize("bad", ['"nan"', '"Inf"', '"inf"', '" NaN"', '"1"', '"NaN "'])
def test_other_strings_in_arrays_stay_value_errors(tmp_path, bad):
    p = tmp_path / "x.json"
    p.write_text(f"[1, {bad}]")
    r = cli(["x*2", f"x=@{p}", "--json"], **REAL)
    r.assert_error("value", json_too=True)
    assert "found a string" in r.message


def test_jsonl_vars_read_nonfinite_strings():
    req = {"id": 1, "expr": "sum(x*x)", "vars": {"x": [[3, "Infinity"], ["-Infinity", "NaN"]]},
           "check": "none"}
    r = cli(["-"], json.dumps(req) + "\n", **REAL).ok()
    (line,) = r.json_lines()
    # d/dx sum(x*x) = 2x
    assert line["grads"]["x"] == [[6.0, "Infinity"], ["-Infinity", "NaN"]]
    bad = dict(req, vars={"x": [1, "infinity"]})
    r = cli(["-"], json.dumps(bad) + "\n", **REAL)
    assert r.status == 2 and r.json_lines()[0]["error"]["kind"] == "value"


def test_language_knows_NaN():
    obj = answer(["x + NaN", "x=1"], **REAL)
    assert obj["output"]["value"] == "NaN"
    assert obj["grads"]["x"] == 1.0          # d(x + c)/dx = 1 whatever c is
    obj = answer(["x*2", "x=[1, NaN]", "-g", "1"], **REAL)
    assert obj["output"]["value"] == [2.0, "NaN"]


# ------------------------------------------------------ issue 14.17: short echoes
def test_huge_unknown_name_is_echoed_short():
    name = "a" * 100_000
    # x bound: not a derivative without numbers
    r = cli([f"{name} + x", "x=1", "--json"], **REAL)
    r.assert_error("name", json_too=True)
    assert len(r.err) < 1500, len(r.err)
    assert len(r.out) < 1500, len(r.out)
    assert "unknown name 'aaaa" in r.message and "..." in r.message
    r = cli([f"{name}(1)"], **REAL)
    r.assert_error("name")
    assert len(r.err) < 1500 and "unknown function" in r.message


# ------------------------------------------------------ issue 13.4: the inputs people have
@pytest.mark.parametrize("name,text", [
    ("header.csv", "x,y\n1,2\n3,4\n"),
    ("quoted.csv", '"1","2"\n"3", "4"\n'),
    ("semicolon.csv", "x;y\n1;2\n# a comment\n\n3;4\n"),
    ("tabs.tsv", "x\ty\n1\t2\n3\t4\n"),
    ("bom.csv", "\ufeffx,y\n1,2\n3,4\n"),
    ("crlf.csv", "x,y\r\n1,2\r\n3,4\r\n"),
    ("bom.json", "\ufeff[[1, 2], [3, 4]]"),
])
def test_table_forms_read_the_same_matrix(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    # sum(T * [[1, 10], [100, 1000]]) = 1 + 20 + 300 + 4000; its gradient is the weights
    obj = answer(["sum(T * [[1, 10], [100, 1000]])", f"T=@{p}"], **REAL)
    assert obj["output"]["value"] == 4321.0
    assert obj["grads"]["T"] == [[1.0, 10.0], [100.0, 1000.0]]


@pytest.mark.parametrize("text,words", [
    ("x,y\n1,2\n3\n", "line 3: 1 cell, where the first row has 2"),
    ("x,y\n1,2,\n", "line 2: 3 cells, where the first row has 2 (a separator at the end"),
    ("1,2\n3,x\n", "line 2, column 2: 'x' is not a number"),
    ("x;y\n1,5;2\n", "line 2, column 1: '1,5' is not a number (gradcalc reads '.' as the decimal"),
    ("1,\n", "line 1, column 2: the cell is empty"),
    ('1,"2\n', "line 1: cannot split it into cells"),
    ("x,y\n", "holds no numbers (only a header row)"),
    ("x,1\n2,3\n", "line 1, column 1: 'x' is not a number (a header row holds names only"),
])
def test_table_errors_say_what_is_wrong(tmp_path, text, words):
    p = tmp_path / "t.csv"
    p.write_text(text)
    r = cli(["sum(T)", f"T=@{p}"], **REAL)
    r.assert_error("value")
    assert words in r.message, r.message
    assert "Error" not in r.message


def test_program_file_with_a_bom(tmp_path):
    p = tmp_path / "p.grad"
    p.write_bytes("\ufeff# from a Windows editor\nx = 3\ny = x * x\n".encode("utf-8"))
    obj = answer(["-f", str(p)], **REAL)
    assert obj["output"]["value"] == 9.0 and obj["grads"]["x"] == 6.0     # d(x*x)/dx = 2x


def test_npz_with_one_array_is_an_at_file(tmp_path):
    p = tmp_path / "w.npz"
    np.savez_compressed(p, w=np.array([1.0, 2.0, 3.0]))
    obj = answer(["sum(w*w)", f"w=@{p}"], **REAL)
    assert obj["output"]["value"] == 14.0 and obj["grads"]["w"] == [2.0, 4.0, 6.0]
    np.savez(p, a=np.zeros(2), b=np.ones(2))
    r = cli(["sum(w)", f"w=@{p}"], **REAL)
    r.assert_error("value")
    assert "holds 2 arrays (a, b)" in r.message
    p.write_bytes(b"PK\x03\x04 not really a zip")
    r = cli(["sum(w)", f"w=@{p}"], **REAL)
    r.assert_error("value")
    assert "is not an .npz file" in r.message


# ------------------------------------------------------ issue 14.7: .npy without a map
def test_npy_errors_are_words_not_exception_names(tmp_path):
    good = tmp_path / "g.npy"
    np.save(good, np.arange(1000.0))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:600])
    r = cli(["sum(x)", f"x=@{cut}"], **REAL)
    r.assert_error("value")
    assert "is shorter than its header says" in r.message and "Error" not in r.message
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"\x93NUMPY\x01\x00garbage")
    r = cli(["sum(x)", f"x=@{junk}"], **REAL)
    r.assert_error("value")
    assert "is not a .npy file" in r.message and "Error" not in r.message
    text = tmp_path / "t.npy"
    np.save(text, np.array(["a"]))
    r = cli(["sum(x)", f"x=@{text}"], **REAL)
    r.assert_error("value")
    assert "does not hold a real numeric array (it holds text)" in r.message
    r = cli(["sum(x)", f"x=@{good}", "--max-elements", "999"], **REAL)
    r.assert_error("limit")
    assert "(--max-elements)" in r.message


def test_npy_is_read_without_a_memory_map(tmp_path, monkeypatch):
    """A mapped file rewritten while it is read kills the process (SIGBUS): the reader must
    not map it. Fortran order and big-endian files still read right."""
    import mmap
    from gradcalc.values import parse_value

    def no_map(*a, **k):
        raise AssertionError("the .npy was memory-mapped")
    monkeypatch.setattr(mmap, "mmap", no_map)
    monkeypatch.setattr(np, "memmap", no_map)
    p = tmp_path / "f.npy"
    m = np.arange(6.0).reshape(2, 3)
    np.save(p, np.asfortranarray(m))
    assert np.array_equal(parse_value(f"@{p}", limits=LIMITS), m)
    np.save(p, m.astype(">i4"))
    assert np.array_equal(parse_value(f"@{p}", limits=LIMITS), m)


# ------------------------------------------------------ SPEC 12: the --data reader
def test_data_file_forms(tmp_path):
    from gradcalc.datafile import read_data
    csv_ = tmp_path / "d.csv"
    csv_.write_text('\ufeffx;"y"\n1;2\n3;"4"\n')
    got = read_data(str(csv_), limits=LIMITS)
    assert list(got) == ["x", "y"]
    assert got["x"].tolist() == [1.0, 3.0] and got["y"].tolist() == [2.0, 4.0]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a\tb\n1\t2\n")
    assert {k: v.tolist() for k, v in read_data(str(tsv), limits=LIMITS).items()} == {"a": [1.0], "b": [2.0]}
    js = tmp_path / "d.json"
    js.write_text('{"W": [[1, 2], [3, "Infinity"]], "b": -1, "c": "NaN"}')
    got = read_data(str(js), dtype=np.float32, limits=LIMITS)
    assert got["W"].dtype == np.float32 and got["W"].tolist() == [[1, 2], [3, math.inf]]
    assert got["b"].shape == () and got["b"] == -1 and math.isnan(got["c"])
    npz = tmp_path / "d.npz"
    np.savez(npz, p=np.eye(2), q=np.array(5.0))
    got = read_data(str(npz), limits=LIMITS)
    assert got["p"].tolist() == [[1, 0], [0, 1]] and got["q"] == 5.0


@pytest.mark.parametrize("name,text,words", [
    ("d.csv", "1,2\n3,4\n", "has no header row"),
    ("d.csv", "x,x\n1,2\n", "names two columns 'x'"),
    ("d.csv", "my x,y\n1,2\n", "names an array 'my x', which is not a name"),
    ("d.json", "[1, 2]", "must hold a JSON object of arrays"),
    ("d.json", '{"x": "linspace(0, 1, 5)"}', "'x' is a string"),
    ("d.json", '{"x": "@/etc/passwd"}', "'x' is a string"),
    ("d.json", '{"x": [1, [2]]}', "not rectangular"),
    ("d.txt", "1,2", "a data file is .csv, .tsv, .json or .npz"),
])
def test_data_file_errors(tmp_path, name, text, words):
    from gradcalc.datafile import read_data
    from gradcalc.errors import GradcalcError
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(GradcalcError) as info:
        read_data(str(p), limits=LIMITS)
    assert info.value.kind == "value" and words in info.value.message, info.value.message
    assert info.value.message.startswith("--data")


def test_data_file_limits(tmp_path):
    from gradcalc.datafile import read_data
    from gradcalc.errors import GradcalcError, Limits
    p = tmp_path / "d.csv"
    p.write_text("x,y\n" + "1,2\n" * 10)
    assert read_data(str(p), limits=Limits(max_elements=20))["x"].shape == (10,)
    with pytest.raises(GradcalcError) as info:
        read_data(str(p), limits=Limits(max_elements=19))
    assert info.value.kind == "limit" and "--max-elements" in info.value.message
    with pytest.raises(GradcalcError) as info:      # 44 bytes > max_memory // 16
        read_data(str(p), limits=Limits(max_memory=16 * 40))
    assert info.value.kind == "limit" and "--max-memory" in info.value.message
    npz = tmp_path / "d.npz"
    np.savez_compressed(npz, z=np.zeros(1000))     # 8 KB of zeros, a few bytes compressed
    with pytest.raises(GradcalcError) as info:
        read_data(str(npz), limits=Limits(max_memory=4000))
    assert info.value.kind == "limit" and "--max-memory" in info.value.message


# ------------------------------------------------------ issue 14.15: --max-depth is the limit
def test_thousand_deep_nest_runs_under_a_raised_depth_limit():
    n = 1000
    text = "sin(" * n + "x" + ")" * n
    value, grad = 1.0, 1.0                 # the chain rule by hand: d sin(u) = cos(u) du
    for _ in range(n):
        grad *= math.cos(value)
        value = math.sin(value)
    obj = answer([text, "x=1", "--max-depth", "2000"], **REAL)
    assert obj["output"]["value"] == pytest.approx(value, rel=1e-12)
    assert obj["grads"]["x"] == pytest.approx(grad, rel=1e-12)
    # the checks too: sympy's diff cannot recurse that deep, so the symbolic check cuts the
    # form into pieces and composes their derivatives; both checks run and agree
    r = cli([text, "x=1", "--max-depth", "2000", "--json", "--check", "all"], **REAL).ok()
    checks = r.json()["checks"]
    assert checks["symbolic"]["passed"] is True
    assert checks["symbolic"]["elements_checked"] == 1
    assert checks["symbolic"]["derivatives"] == {"x": None}     # too long to print
    assert checks["numeric"]["passed"] is True
    r = cli([text, "x=1", "--max-depth", "999", "--json"], **REAL)
    r.assert_error("limit", json_too=True)
    assert "--max-depth" in r.message and r.json()["error"]["position"] == 4 * 999


@pytest.mark.parametrize("text,x,value,grad", [
    ("-" * 1001 + "x", "2", -2.0, -1.0),                       # an odd number of minus signs
    ("x" + "**1" * 1000, "2", 2.0, 1.0),                       # x**1**1... = x**1 = x
    ("sum(" * 1000 + "x" + ", dim=0)" * 1000, "2", 2.0, 1.0),  # a keyword at every level
    ("(" * 1000 + "x[0:1][0]" + ")" * 1000, "2,3", 2.0, [1.0, 0.0]),
], ids=["unary", "power", "call-keyword", "paren-slice"])
def test_other_deep_nestings(text, x, value, grad):
    obj = answer([text, f"x={x}", "--max-depth", "2000"], **REAL)
    assert obj["output"]["value"] == value
    assert obj["grads"]["x"] == grad


# ------------------------------------------------------ issue 14.16: doubling functions
def _doubling(n, out="y = f{n}(x)"):
    lines = ["f1(x) = sin(x) * 2"] + [f"f{i}(x) = f{i - 1}(f{i - 1}(x))" for i in range(2, n + 1)]
    return "\n".join(lines + [out.format(n=n)]) + "\n"


def test_doubling_functions_are_refused_before_they_are_expanded(tmp_path):
    import resource
    p = tmp_path / "double.grad"
    p.write_text(_doubling(30))               # 3 * 2**29 nodes if it were expanded
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    r = cli(["-f", str(p), "x=1", "--json"], **REAL)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    r.assert_error("limit", json_too=True)
    assert "more than 1,000,000 operations" in r.message
    assert r.json()["error"]["line"] == 31      # the statement that would expand
    assert cpu < 3.0, f"{cpu:.1f} s of CPU to refuse it"


def test_node_estimate_never_refuses_a_program_that_fits():
    """The estimate is a lower bound: a program of exactly max_nodes nodes compiles."""
    from gradcalc.compile import Compiler
    from gradcalc.errors import GradcalcError, Limits
    from gradcalc.parser import parse_program
    text = _doubling(8, "y = sum(f{n}(x) + [1, 2] * -x.T[0:2]) + f2(3)")

    def compile_with(max_nodes):
        return Compiler(text, {"x": np.ones(2)}, limits=Limits(max_nodes=max_nodes)).program(
            parse_program(text, LIMITS.max_depth))
    n = len(compile_with(10**6).nodes)
    assert n > 3 * 2**7                       # f8 alone inlines 2**7 copies of sin(x) * 2
    assert len(compile_with(n).nodes) == n
    with pytest.raises(GradcalcError) as info:
        compile_with(n - 1)
    assert info.value.kind == "limit"
