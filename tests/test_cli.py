"""The command line (SPEC 1, 3, 4, 8): `gradcalc EXPRESSION NAME=VALUE ... --json`, `-f FILE`,
every VALUE form, the cotangent rules, the options that shape a calculation, exit statuses,
and the Python API the CLI is a thin layer over.

Most tests run in-process through the shared runner (tests/clirun.py: `gradcalc.cli.main`
with stdin, stdout and stderr captured separately). A few run real subprocesses
(`python -m gradcalc` and the `gradcalc` console script) to prove the installed entry points
behave the same. All JSON is parsed strictly: a bare NaN or Infinity fails the test.

Expected numbers are derived by hand in the comments beside them, or come from PyTorch (the
seed example of SPEC 4, whose numbers PyTorch prints on the seed page).
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import gradcalc
from clirun import answer, cli, strict_json

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
REAL = {"isolate": True, "timeout": 60, "env": {"NO_COLOR": "1"}}     # a real process


def num(x):
    """SPEC 4 numbers (non-finite as strings) -> a float array."""
    def dec(v):
        if isinstance(v, list):
            return [dec(u) for u in v]
        if isinstance(v, str):
            return _NONFINITE[v]
        assert not isinstance(v, bool) and v is not None, v
        return float(v)
    return np.asarray(dec(x), dtype=np.float64)


SEED = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]


def assert_seed_example(obj):
    # y = 3a + 2b^2 + log(c); dy/da = 3, dy/db = 4b, dy/dc = 1/c; grads are v * those:
    # a: 0.1*3, 1*3, 1e-4*3; b: 0.1*12, 1*16, 1e-4*20; c: 0.1/6, 1/7, 1e-4/8
    # (PyTorch prints tensor([3.0000e-01, 3.0000e+00, 3.0000e-04]) etc. on the seed page)
    assert obj["expression"] == "3*a + 2*b*b + log(c)"
    assert obj["output"]["name"] is None
    assert obj["output"]["shape"] == [3]
    np.testing.assert_allclose(num(obj["output"]["value"]),
                               [3 + 18 + math.log(6), 6 + 32 + math.log(7), 9 + 50 + math.log(8)],
                               rtol=1e-15)
    assert obj["cotangent"] == [0.1, 1.0, 0.0001]
    np.testing.assert_allclose(num(obj["grads"]["a"]), [0.3, 3.0, 0.0003], rtol=1e-15)
    np.testing.assert_allclose(num(obj["grads"]["b"]), [1.2, 16.0, 0.002], rtol=1e-15)
    np.testing.assert_allclose(num(obj["grads"]["c"]), [0.1 / 6, 1 / 7, 1e-4 / 8], rtol=1e-15)
    np.testing.assert_array_equal(num(obj["jacobian"]["a"]), 3 * np.eye(3))
    np.testing.assert_array_equal(num(obj["jacobian"]["b"]), np.diag([12.0, 16.0, 20.0]))
    np.testing.assert_allclose(num(obj["jacobian"]["c"]), np.diag([1 / 6, 1 / 7, 1 / 8]),
                               rtol=1e-15)


# ---------------------------------------------------------------- --json (SPEC 4)
def test_seed_example_json():
    obj = answer(SEED)
    assert_seed_example(obj)
    assert obj["checks"] == {}               # --check none: no check ran
    assert obj["repeat"] == 1 and obj["dtype"] == "float64"


def test_json_is_strict_and_non_finite_numbers_are_strings():
    # log(-1) = NaN, log(0) = -inf; grads v/x: 1/-1 = -1, 1/0 = +inf (log'(0) = +inf)
    r = cli(["log(x)", "x=-1,0", "-g", "1", "--json", "--check", "none"])
    assert r.status == 0                       # non-finite numbers are results, not errors
    obj = r.json()
    assert obj["output"]["value"] == ["NaN", "-Infinity"]
    assert obj["grads"]["x"] == [-1.0, "Infinity"]
    assert obj["nonfinite"]["op"] == "log"
    # 1/0 is +inf by IEEE arithmetic; 1e999 reads as infinity
    assert answer(["x/0 + 1e999*0 + 1", "x=1"])["output"]["value"] == "NaN"     # inf*0 = NaN
    assert answer(["x/0", "x=1"])["output"]["value"] == "Infinity"
    assert answer(["-x/0", "x=1"])["output"]["value"] == "-Infinity"


def test_json_via_click_command():
    # the click command itself (standalone mode), as click users call it
    r = cli([*SEED, "--json", "--check", "none"], click=True)
    assert r.status == 0, r.stderr
    assert_seed_example(r.json())


# ---------------------------------------------------------------- VALUE forms (SPEC 1)
@pytest.mark.parametrize("value,expected", [
    ("2.5", 2.5),
    ("-1e-3", -1e-3),
    (".5", 0.5),
    ("1,2,3", [1.0, 2.0, 3.0]),
    (" 1 , -2 ", [1.0, -2.0]),
    ("[[1,2],[3,4]]", [[1.0, 2.0], [3.0, 4.0]]),
    ("[[[1],[2]]]", [[[1.0], [2.0]]]),
    ("ones(2,2)", [[1.0, 1.0], [1.0, 1.0]]),
    ("linspace(-1,1,5)", [-1.0, -0.5, 0.0, 0.5, 1.0]),
    ("eye(2)", [[1.0, 0.0], [0.0, 1.0]]),
    ("2*pi", 2 * math.pi),
    ("arange(3)", [0.0, 1.0, 2.0]),
    ("[1, 2**3, -2**2]", [1.0, 8.0, -4.0]),
])
def test_value_forms(value, expected):
    # output x*1 shows the value; its grad is all ones in the value's shape
    obj = answer(["x*1", f"x={value}", "-g", "1"])
    np.testing.assert_allclose(num(obj["output"]["value"]), expected, rtol=1e-15)
    assert obj["output"]["shape"] == list(np.shape(expected))
    np.testing.assert_array_equal(num(obj["grads"]["x"]), np.ones(np.shape(expected)))


def test_value_files(tmp_path):
    (tmp_path / "m.json").write_text("[[1, 2], [3, 4]]")
    np.save(tmp_path / "v.npy", np.array([1.0, 2.0]))
    np.save(tmp_path / "i.npy", np.array([[1, 0], [0, 1]], dtype=np.int32))
    (tmp_path / "t.csv").write_text("1,2\n3,4\n")
    (tmp_path / "col.csv").write_text("1\n2\n")
    # sum(M @ v) with M = [[1,2],[3,4]], v = [1,2]: M@v = [5, 11], sum 16;
    # d/dM[i,k] = v[k] -> [[1,2],[1,2]]; d/dv[k] = sum_i M[i,k] -> [4, 6]
    obj = answer(["sum(M @ v)", f"M=@{tmp_path / 'm.json'}", f"v=@{tmp_path / 'v.npy'}"])
    assert obj["output"]["value"] == 16.0
    assert obj["grads"] == {"M": [[1.0, 2.0], [1.0, 2.0]], "v": [4.0, 6.0]}
    # sum(T * I): T from CSV, I an integer .npy read as floats; d/dT = I, d/dI = T
    obj = answer(["sum(T * I)", f"T=@{tmp_path / 't.csv'}", f"I=@{tmp_path / 'i.npy'}"])
    assert obj["output"]["value"] == 5.0                     # 1 + 4
    assert obj["grads"] == {"T": [[1.0, 0.0], [0.0, 1.0]], "I": [[1.0, 2.0], [3.0, 4.0]]}
    # a one-column CSV is a vector
    obj = answer(["c * 1", f"c=@{tmp_path / 'col.csv'}", "-g", "1"])
    assert obj["output"]["shape"] == [2]


def test_value_from_stdin():
    # x = [1, 2, 3] from stdin: sum(x*x) = 14, grad 2x
    obj = answer(["sum(x*x)", "x=@-"], "[1, 2, 3]\n")
    assert obj["output"]["value"] == 14.0
    assert obj["grads"]["x"] == [2.0, 4.0, 6.0]
    obj = answer(["sum(x)", "x=@-"], "linspace(0, 1, 3)")
    assert obj["output"]["value"] == 1.5


def test_stdin_read_twice_is_a_usage_error():
    r = cli(["a*b", "a=@-", "b=@-", "--json"], "5\n")
    assert r.status == 2
    err = r.json()["error"]
    assert err["kind"] == "usage"
    assert "@-" in err["message"]


@pytest.mark.parametrize("value,kind", [
    ("[1,[2]]", "value"),               # ragged
    ("[[1,2],[3]]", "value"),
    ("[1,null]", "value"),
    ('["a"]', "value"),
    ("1+2j", "value"),                  # complex
    ("{1,2}", "value"),                 # a set
    ("None", "value"),
    ("", "value"),
    ("1,,2", "value"),
    ("x+1", "value"),                   # a variable inside a VALUE
    ("@/nonexistent/file.json", "value"),
])
def test_bad_values(value, kind):
    r = cli(["sum(x)", f"x={value}", "--json"])
    assert r.status == 2, r.stdout
    assert r.json()["error"]["kind"] == kind
    assert r.stderr.startswith("gradcalc: ") and "Traceback" not in r.stderr


# ---------------------------------------------------------------- cotangent rules (SPEC 1)
def test_scalar_output_implies_one():
    obj = answer(["sum(x*x)", "x=1,2"])
    assert obj["cotangent"] == 1.0
    assert obj["grads"]["x"] == [2.0, 4.0]


def test_scalar_output_with_a_number():
    # backward(2.5) on sum(x*x): 2.5 * 2x
    assert answer(["sum(x*x)", "x=1,2", "-g", "2.5"])["grads"]["x"] == [5.0, 10.0]


def test_non_scalar_output_without_grad_says_why_and_how():
    r = cli(["x*2", "x=1,2,3"])
    assert r.status == 2
    assert "Traceback" not in r.stderr
    assert "--grad" in r.stderr                          # shows how to pass one
    assert "(3,)" in r.stderr                            # the output's shape
    assert "scalar" in r.stderr or "implied" in r.stderr    # why: only a scalar implies one
    r = cli(["x*2", "x=1,2,3", "--json"])
    assert r.status == 2 and r.json()["error"]["kind"] in ("usage", "shape")
    assert "--grad" in r.json()["error"]["message"]


@pytest.mark.parametrize("grad,got", [("1,2", "(2,)"), ("[[1,2,3]]", "(1, 3)"), ("[1]", "(1,)")])
def test_wrong_cotangent_shape_names_both(grad, got):
    r = cli(["x*2", "x=1,2,3", "-g", grad, "--json"])
    assert r.status == 2
    err = r.json()["error"]
    assert err["kind"] == "shape"
    assert got in err["message"] and "(3,)" in err["message"]
    assert got in r.stderr and "(3,)" in r.stderr


def test_scalar_output_rejects_a_vector_cotangent():
    r = cli(["sum(x)", "x=1,2", "-g", "1,1", "--json"])
    assert r.status == 2 and r.json()["error"]["kind"] == "shape"


def test_mse_loss_broadcasts_its_target():
    # torch's mse_loss broadcasts (with a warning): mean((x - 1)^2) over x = [1, 2, 3] is
    # (0 + 1 + 4) / 3; grad 2 (x - 1) / 3 = [0, 2/3, 4/3]; the scalar target's grad is
    # -sum(2 (x - 1) / 3) = -2
    obj = answer(["mse_loss(x, t)", "x=1,2,3", "t=1"])
    assert obj["output"]["value"] == 5 / 3
    np.testing.assert_allclose(obj["grads"]["x"], [0.0, 2 / 3, 4 / 3], rtol=1e-15)
    assert obj["grads"]["t"] == -2.0


def test_single_number_broadcasts():
    # v = 0.5 everywhere: grad of x*y w.r.t. x is 0.5*y
    obj = answer(["x*y", "x=1,2", "y=[[3,4],[5,6]]", "-g", "0.5"])
    assert obj["cotangent"] == [[0.5, 0.5], [0.5, 0.5]]
    # x (2,) is broadcast over 2 rows: 0.5*(3+5), 0.5*(4+6)
    assert obj["grads"]["x"] == [4.0, 5.0]
    assert obj["grads"]["y"] == [[0.5, 1.0], [0.5, 1.0]]


def test_cotangent_in_every_value_form(tmp_path):
    (tmp_path / "g.json").write_text("[1, 0, 2]")
    for g in ("1,0,2", "[1,0,2]", f"@{tmp_path / 'g.json'}"):
        assert answer(["x*3", "x=1,2,3", "-g", g])["grads"]["x"] == [3.0, 0.0, 6.0]
    # a constant expression: linspace(0, 1, 3) = [0, 0.5, 1] -> 3 * that
    assert answer(["x*3", "x=1,2,3", "-g", "linspace(0,1,3)"])["grads"]["x"] == [0.0, 1.5, 3.0]


# ---------------------------------------------------------------- programs (SPEC 3)
def test_semicolon_program_named_output():
    # x = 2 (a leaf); y = x*x = 4; z = 3y = 12; dz/dx = 6x = 12
    obj = answer(["x = 2; y = x*x; z = y*3"])
    assert obj["output"] == {"name": "z", "shape": [], "value": 12.0}
    assert obj["grads"] == {"x": 12.0}


def test_program_bare_last_expression_has_no_name():
    obj = answer(["x = 2; x*x"])
    assert obj["output"]["name"] is None and obj["output"]["value"] == 4.0


def test_rebinding_a_name():
    # x = 1 is the leaf, x = x*2 rebinds the name: the output is named x, d(2x)/dx = 2;
    # x=5 on the command line overrides the leaf: output 10
    assert answer(["x = 1; x = x*2"])["grads"] == {"x": 2.0}
    obj = answer(["x = 1; x = x*2", "x=5"])
    assert obj["output"]["value"] == 10.0 and obj["grads"] == {"x": 2.0}


def test_function_definition():
    # f(x, w) = 2 x w0 + x^2 w1 at x = 1, w = [1, 1]: f = 3; df/dx = 2 w0 + 2 x w1 = 4;
    # df/dw = [2x, x^2] = [2, 1] (the German seed page)
    obj = answer(["f(x, w) = 2*x*w[0] + x**2*w[1]; out = f(x, w)", "x=1", "w=1,1"])
    assert obj["output"]["value"] == 3.0
    assert obj["grads"] == {"x": 4.0, "w": [2.0, 1.0]}


def test_function_parameters_shadow_outer_names():
    # inside f, x is the argument 5, not the leaf x = 3: f(5) + x = 10 + 3, d/dx = 1
    obj = answer(["x = 3; f(x) = x*2; f(5) + x"])
    assert obj["output"]["value"] == 13.0 and obj["grads"] == {"x": 1.0}


def test_functions_calling_functions():
    # g(y) = y + 1; f(x) = 2 g(x); out = f(a) = 2(a + 1) = 6 at a = 2; d/da = 2
    obj = answer(["g(y) = y+1; f(x) = g(x)*2; out = f(a)", "a=2"])
    assert obj["output"] == {"name": "out", "shape": [], "value": 6.0}
    assert obj["grads"] == {"a": 2.0}


def test_program_file_with_option_line(tmp_path):
    prog = tmp_path / "seed.grad"
    prog.write_text("#: --grad 0.1,1.0,0.0001 --repeat 2\n"
                    "# the seed example, called twice without zeroing\n"
                    "a = [1, 2, 3]\nb = [3, 4, 5]\nc = linspace(6, 8, 3)\n"
                    "y = 3*a + 2*b*b + log(c)\n")
    obj = answer(["-f", prog])
    assert obj["repeat"] == 2 and obj["output"]["name"] == "y"
    assert obj["cotangent"] == [0.1, 1.0, 0.0001]
    # two backward calls: twice the seed grads, e.g. a: 2 * [0.3, 3, 0.0003]
    np.testing.assert_allclose(num(obj["grads"]["a"]), [0.6, 6.0, 0.0006], rtol=1e-15)
    np.testing.assert_allclose(num(obj["grads"]["b"]), [2.4, 32.0, 0.004], rtol=1e-15)
    np.testing.assert_allclose(num(obj["grads"]["c"]), [0.2 / 6, 2 / 7, 2e-4 / 8], rtol=1e-15)
    # the command line overrides the #: line: one call, all-ones cotangent -> 3, 4b, 1/c
    obj = answer(["-f", prog, "--repeat", "1", "-g", "1"])
    assert obj["repeat"] == 1 and obj["cotangent"] == [1.0, 1.0, 1.0]
    assert obj["grads"]["a"] == [3.0, 3.0, 3.0]
    assert obj["grads"]["b"] == [12.0, 16.0, 20.0]
    # NAME=VALUE overrides a leaf of the program; --wrt keeps only some grads
    obj = answer(["-f", prog, "b=0,0,0", "--wrt", "a,b"])
    assert set(obj["grads"]) == {"a", "b"}
    assert obj["grads"]["b"] == [0.0, 0.0, 0.0]          # 2 calls * v * 4b with b = 0
    np.testing.assert_allclose(num(obj["output"]["value"]),
                               [3 + math.log(6), 6 + math.log(7), 9 + math.log(8)], rtol=1e-15)


def test_program_from_stdin_and_option_line_forms(tmp_path):
    # -f - reads the program from stdin; y = 3x, v = 1: grad 3
    obj = answer(["-f", "-", "-g", "1"], "x = [1, 2]\ny = x * 3\n")
    assert obj["output"]["name"] == "y" and obj["grads"]["x"] == [3.0, 3.0]
    # #: options written --opt=VALUE or with a quoted VALUE; --dtype and --seed there too
    prog = tmp_path / "o.grad"
    prog.write_text("#: --grad=[1,2] --dtype float32\n#: --seed 3\nx = [1, 2]\n"
                    "r = rand(2)\ny = x * 3 + r * 0\n")
    obj = answer(["-f", prog])
    assert obj["cotangent"] == [1.0, 2.0] and obj["dtype"] == "float32"
    assert obj["grads"]["x"] == [3.0, 6.0] and obj["grads"]["r"] == [0.0, 0.0]
    assert answer(["-f", prog]) == obj                     # --seed 3 from the #: line repeats
    prog.write_text("#: --grad '[1, 2]'\nx = [1, 2]\ny = x * 3\n")
    assert answer(["-f", prog])["cotangent"] == [1.0, 2.0]


def test_program_file_options_not_allowed(tmp_path):
    prog = tmp_path / "bad.grad"
    prog.write_text("#: --json\nx = 1\ny = x*2\n")
    r = cli(["-f", prog, "--json"])
    assert r.status == 2 and r.json()["error"]["kind"] == "usage"
    assert "--json" in r.json()["error"]["message"]


def test_program_file_missing():
    r = cli(["-f", "/nonexistent/prog.grad", "--json"])
    assert r.status == 2 and r.json()["error"]["kind"] == "usage"


def test_program_error_has_line_and_column(tmp_path):
    prog = tmp_path / "e.grad"
    prog.write_text("a = 1\nb = 2 +* a\n")
    r = cli(["-f", prog, "--json"])
    assert r.status == 2
    err = r.json()["error"]
    assert (err["kind"], err["position"], err["line"], err["column"]) == ("syntax", 13, 2, 8)
    # the human message: the line, then a caret under column 8
    lines = r.stderr.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip() == "b = 2 +* a")
    assert lines[i + 1].index("^") - lines[i].index("b") == 7


# ---------------------------------------------------------------- --of, --wrt, --repeat, detach
def test_of_intermediate():
    # y = x*w = [3, -2]; backward from y with v = [1, 1]: dy/dx = w, dy/dw = x
    obj = answer(["y = x * w; z = sum(y**2)", "x=1,2", "w=3,-1", "--of", "y", "-g", "1"])
    assert obj["output"] == {"name": "y", "shape": [2], "value": [3.0, -2.0]}
    assert obj["grads"] == {"x": [3.0, -1.0], "w": [1.0, 2.0]}
    assert obj["jacobian"]["x"] == [[3.0, 0.0], [0.0, -1.0]]
    # without --of: z = sum(y^2), dz/dx = 2 y w = [18, 4]
    assert answer(["y = x * w; z = sum(y**2)", "x=1,2", "w=3,-1"])["grads"]["x"] == [18.0, 4.0]


def test_of_and_wrt_naming_nothing_are_usage_errors():
    for args in (["--of", "q"], ["--wrt", "q"], ["--wrt", "y"]):
        r = cli(["y = x*2", "x=1", *args, "--json"])
        assert r.status == 2 and r.json()["error"]["kind"] == "usage", args


def test_wrt_subset():
    # only a requires grad: b is a constant and absent from grads and the Jacobian
    obj = answer(["sum(a * b)", "a=1,2", "b=3,4", "--wrt", "a"])
    assert obj["grads"] == {"a": [3.0, 4.0]}
    assert set(obj["jacobian"]) == {"a"}


def test_unused_leaf_gets_zeros_and_no_path():
    obj = answer(["sum(x)", "x=1,2", "y=3"])
    assert obj["grads"] == {"x": [1.0, 1.0], "y": 0.0}
    assert obj["no_path"] == ["y"]


def test_repeat_accumulates():
    # two backward calls of (eye(2)+x)**2 at x = 1 with v = 1: 2 * 2(I + 1) = [[8,4],[4,8]]
    obj = answer(["(eye(2)+x)**2", "x=[[1,1],[1,1]]", "-g", "1", "--repeat", "2"])
    assert obj["repeat"] == 2
    assert obj["grads"]["x"] == [[8.0, 4.0], [4.0, 8.0]]
    # the Jacobian is not accumulated (it is torch.autograd.functional.jacobian's)
    assert num(obj["jacobian"]["x"]).reshape(4, 4).diagonal().tolist() == [4.0, 2.0, 2.0, 4.0]


def test_repeat_accumulates_in_float32():
    # grad of 0.1*x is float32(0.1) = 0.100000001490116..., added 3 times in float32 as
    # PyTorch adds into .grad: 0.1f + 0.1f = 0.2000000029802322 (exact), + 0.1f =
    # 0.30000000447034836 exactly = 10066329.75 * 2**-25, which rounds to 10066330 * 2**-25
    # = 0.30000001192092896. (float64 would give 0.30000000000000004.)
    obj = answer(["x*0.1", "x=1", "--repeat", "3", "--dtype", "float32"])
    assert obj["grads"]["x"] == 10066330 * 2.0**-25 == 0.30000001192092896
    assert obj["dtype"] == "float32"


def test_repeat_limits():
    for n, kind in (("0", "usage"), ("10001", "limit")):
        r = cli(["x*2", "x=1", "--repeat", n, "--json"])
        assert r.status == 2 and r.json()["error"]["kind"] == kind


def test_detach():
    # z = detach(y) * x with y = 3x: the detached y is the constant 6 at x = 2, so dz/dx = 6
    # (not d(3x^2)/dx = 12)
    obj = answer(["x = 2; y = x * 3; z = detach(y) * x"])
    assert obj["output"]["value"] == 12.0
    assert obj["grads"] == {"x": 6.0}
    # a leaf reached only through detach has no path: zeros
    obj = answer(["sum(detach(x) * 2 + y)", "x=1,2", "y=3,4"])
    assert obj["grads"] == {"x": [0.0, 0.0], "y": [1.0, 1.0]}


def test_float32():
    # x/3 in float32: 1/3 rounds to 11184811 * 2**-25 = 0.3333333432674408 (2**25/3 =
    # 11184810.67), 2/3 to 0.6666666865348816 (twice that, exact); the grad 1/3 likewise
    obj = answer(["x/3", "x=1,2", "-g", "1", "--dtype", "float32"])
    assert obj["output"]["value"] == [11184811 * 2.0**-25, 2 * 11184811 * 2.0**-25]
    assert obj["grads"]["x"] == [0.3333333432674408, 0.3333333432674408]
    assert answer(["x/3", "x=1", "--dtype", "float64"])["grads"]["x"] == 1 / 3


def test_float32_seed_example_matches_torch():
    # torch 2.13 float32 tensors (tests/reference case op/seed-backward-gradients-f32); the
    # numbers are float32 values, so they must match exactly, not approximately
    obj = answer([*SEED, "--dtype", "float32"])
    assert obj["output"]["value"] == [22.791759490966797, 39.9459114074707, 61.07944107055664]
    assert obj["cotangent"] == [0.10000000149011612, 1.0, 9.999999747378752e-05]
    assert obj["grads"] == {
        "a": [0.30000001192092896, 3.0, 0.00029999998514540493],
        "b": [1.2000000476837158, 16.0, 0.001999999862164259],
        "c": [0.01666666753590107, 0.1428571492433548, 1.249999968422344e-05]}


@pytest.mark.parametrize("dtype,expected", [
    ("float64", -250000000998.9507),      # torch 2.13 (reference case kink/bce-input-zero-...)
    ("float32", -249999998976.0),
])
def test_bce_epsilon_is_torchs_to_the_last_digit(dtype, expected):
    # binary_cross_entropy at x = 0, t = 1: grad (x - t) / max((1 - x) x, EPS) / n with n = 4
    # and torch's EPS a float 1e-12 = 9.99999996e-13: -1 / (4 EPS). The reference suite's
    # relative tolerance would accept a double 1e-12 (-2.5e11) too, so this pins it exactly.
    obj = answer(["binary_cross_entropy(x, t)", "x=0,1,0.5,0", "t=0,1,1,1", "--wrt", "x",
                  "--dtype", dtype])
    assert obj["grads"]["x"] == [0.0, 0.0, -0.5, expected]


def test_seed_makes_rand_repeat():
    def draw(seed, what="rand"):
        obj = answer([f"x = {what}(4); y = sum(x)", "--of", "x", "-g", "1", "--seed", seed])
        return obj["output"]["value"]
    a, b, c = draw(0), draw(0), draw(1)
    assert a == b and a != c
    assert all(0.0 <= v < 1.0 for v in a + c) and len(set(a)) == 4
    n0, n1 = draw(7, "randn"), draw(7, "randn")
    assert n0 == n1 and n0 != draw(8, "randn")


def test_no_jacobian_and_large_jacobian_note():
    obj = answer(["x*2", "x=1,2", "-g", "1", "--no-jacobian"])
    assert obj["jacobian"] is None and "jacobian_note" in obj
    # 101 outputs x 100 inputs = 10,100 entries > 10,000: not computed by default
    obj = answer(["x*y", "x=ones(101)", "y=ones(101)", "-g", "1", "--wrt", "y"])
    assert obj["jacobian"] is None and "10,000" in obj["jacobian_note"]
    # exactly 10,000 entries (100 outputs x 100 inputs) is still computed
    obj = answer(["x*y", "x=ones(100)", "y=ones(100)", "-g", "1", "--wrt", "y"])
    assert num(obj["jacobian"]["y"]).shape == (100, 100) and "jacobian_note" not in obj
    obj = answer(["x*y", "x=ones(101)", "y=ones(101)", "-g", "1", "--wrt", "y", "--jacobian"])
    assert num(obj["jacobian"]["y"]).shape == (101, 101)


# ---------------------------------------------------------------- exit statuses and errors
@pytest.fixture
def wrong_exp_rule(monkeypatch):
    """A deliberately wrong VJP for exp (2 e^x instead of e^x), as a bug would be."""
    from gradcalc.ops import OPS
    monkeypatch.setattr(OPS["exp"], "vjps", (lambda g, ans, x: 2.0 * g * ans,))


@pytest.mark.parametrize("check", ["numeric", "symbolic", "all"])
def test_exit_1_when_a_check_disagrees(wrong_exp_rule, check):
    # autograd now says d/dx exp(x) = 2e at x = 1; finite differences and sympy say e
    r = cli(["exp(x)", "x=1", "--check", check, "--json"])
    assert r.status == 1, r.stderr
    assert r.json()["grads"]["x"] == 2 * math.e
    ran = ["symbolic", "numeric"] if check == "all" else [check]
    assert sorted(r.json()["checks"]) == sorted(ran)
    assert all(r.json()["checks"][k]["passed"] is False for k in ran)
    # --check none runs nothing, so nothing can disagree
    assert cli(["exp(x)", "x=1", "--check", "none", "--json"]).status == 0


@pytest.mark.parametrize("check", ["numeric", "symbolic"])
def test_exit_0_when_checks_agree(check):
    r = cli(["exp(x) * sin(x)", "x=1", "--check", check, "--json"])
    assert r.status == 0, r.stderr
    assert r.json()["checks"][check]["passed"] is True
    # d/dx e^x sin x = e^x (sin x + cos x)
    assert r.json()["grads"]["x"] == pytest.approx(math.e * (math.sin(1) + math.cos(1)),
                                                 rel=1e-15)


@pytest.mark.parametrize("argv,kind", [
    (["sum(x", "x=1"], "syntax"),
    (["sum(q)"], "name"),
    (["foo(x)", "x=1"], "name"),
    (["sum(x, dim=3)", "x=1,2"], "call"),
    (["x @ y", "x=1,2", "y=1,2,3"], "shape"),
    (["x + y", "x=1,2", "y=1,2,3", "-g", "1"], "shape"),
    # PyTorch requires the binary cross entropies' target to have the input's shape
    (["binary_cross_entropy_with_logits(x, y)", "x=[[1,2],[3,4]]", "y=0,1"], "shape"),
    (["binary_cross_entropy(x, 0.5)", "x=0.5,0.25"], "shape"),
    (["x", "x=[1,[2]]"], "value"),
    (["x*2", "x=1", "--max-elements", "0"], "usage"),
    (["ones(100000, 100000)"], "limit"),
    (["x*2", "x"], "usage"),
    (["x*2", "x=1", "--dtype", "float16"], "usage"),
    (["x*2", "x=1", "--dot", "/nonexistent/dir/g.dot"], "usage"),
    ([], "usage"),
])
def test_exit_2_bad_input(argv, kind):
    r = cli([*argv, "--json"])
    assert r.status == 2, (r.stdout, r.stderr)
    assert r.json()["error"]["kind"] == kind
    # one line on stderr (plus the source and caret lines for positions), no traceback
    assert r.stderr.startswith("gradcalc: ") and "Traceback" not in r.stderr
    r2 = cli([*argv])
    assert r2.status == 2 and r2.stdout == "" and "Traceback" not in r2.stderr


@pytest.mark.parametrize("expr", ["max(x, 0)", "min(x, y)", "max(x, 0, keepdim=True)"])
def test_second_positional_argument_to_max_is_an_error(expr):
    # SPEC 2: max(x) reduces; max(x, 0) written for an elementwise maximum must not silently
    # reduce over dim 0 (it would give 2 here, not [1, 2]); the message names maximum(x, y)
    r = cli([expr, "x=1,2", "y=3,4", "--json"])
    assert r.status == 2
    err = r.json()["error"]
    assert err["kind"] == "call" and err["position"] == 7
    assert "maximum(x, y)" in err["message"] or "minimum(x, y)" in err["message"]
    # by keyword, dim works: max over dim 0 of [1, 2] is 2, its grad one-hot at the max
    obj = answer(["max(x, dim=0)", "x=1,2"])
    assert obj["output"]["value"] == 2.0 and obj["grads"]["x"] == [0.0, 1.0]


def test_syntax_error_shows_caret():
    r = cli(["1 + (2 * x", "x=1"])
    assert r.status == 2
    lines = r.stderr.splitlines()
    assert "column 11" in lines[0]
    assert lines[1].strip() == "1 + (2 * x"
    assert lines[2].index("^") - lines[1].index("1") == 10


def test_exit_3_internal_error(monkeypatch):
    import gradcalc.api

    def broken(*a, **k):
        raise ZeroDivisionError("simulated bug")
    monkeypatch.setattr(gradcalc.api, "run", broken)
    r = cli(["x*2", "x=1"])
    assert r.status == 3
    assert "internal error" in r.stderr and "report" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli(["x*2", "x=1", "--debug"])
    assert r.status == 3 and "Traceback" in r.stderr and "simulated bug" in r.stderr


def test_help_and_version():
    r = cli(["--help"])
    assert r.status == 0
    assert "--grad" in r.stdout and "Examples" in r.stdout
    r = cli(["--version"])
    assert r.status == 0 and gradcalc.__version__ in r.stdout


# ---------------------------------------------------------------- the Python API (SPEC 6)
def test_api_compute_to_json_matches_the_cli():
    res = gradcalc.compute("3*a + 2*b*b + log(c)", a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8],
                           grad=[0.1, 1, 1e-4], check="none")
    obj = res.to_json()
    # the API's object goes through json.dumps strictly, and equals the CLI's
    text = json.dumps(obj, allow_nan=False)
    assert strict_json(text) == answer(SEED)
    assert_seed_example(strict_json(text))


def test_api_accepts_value_strings_and_arrays():
    res = gradcalc.compute("sum(x * y)", x="linspace(0, 1, 3)", y=np.array([1.0, 2.0, 3.0]),
                           check="none")
    # 0*1 + 0.5*2 + 1*3 = 4; grad x = y, grad y = x
    obj = res.to_json()
    assert obj["output"]["value"] == 4.0
    assert obj["grads"] == {"x": [1.0, 2.0, 3.0], "y": [0.0, 0.5, 1.0]}


def test_api_non_finite_to_json_is_strict():
    obj = gradcalc.compute("log(x)", x=[-1.0, 0.0], grad=1, check="none").to_json()
    strict_json(json.dumps(obj, allow_nan=False))
    assert obj["output"]["value"] == ["NaN", "-Infinity"]


def test_api_signature_names_every_option():
    """help(gradcalc.compute) shows every option the pipeline takes (SPEC 9's and the
    externs included), so none can only be passed blind through **vars."""
    import inspect
    from gradcalc.settings import NAMES
    public = inspect.signature(gradcalc.compute).parameters
    assert list(public)[1:len(NAMES) + 1] == list(NAMES)      # every setting, in its order
    assert {"limits", "externs"} <= set(public)
    r = gradcalc.compute("sum(x**3)", x=[1.0, 2.0], hessian=True, steps=True, check="none")
    assert np.asarray(r.hessian["x"]["x"]).tolist() == [[6.0, 0.0], [0.0, 12.0]]
    assert r.steps[-1]["formula"] == "g̅_x += g̅_t1 * (3 * (x ** 2))"
    assert r.steps[-1]["value"].tolist() == [3.0, 12.0]


def test_api_raises_gradcalc_error():
    with pytest.raises(gradcalc.GradcalcError) as exc:
        gradcalc.compute("x*2", x=[1, 2])
    assert "--grad" in exc.value.message or "grad" in exc.value.message


# ---------------------------------------------------------------- real processes
def test_subprocess_python_m_json():
    r = cli([*SEED, "--json", "--check", "none"], **REAL)
    assert r.status == 0, r.stderr
    assert_seed_example(r.json())
    assert r.stderr == ""


def test_subprocess_console_script_matches():
    exe = shutil.which("gradcalc")
    if exe is None:
        pytest.skip("the gradcalc console script is not on PATH")
    r = cli([*SEED, "--json", "--check", "none"], exe=[exe], **REAL)
    assert r.status == 0
    assert r.json() == cli([*SEED, "--json", "--check", "none"], **REAL).json()


def test_subprocess_stdin_value_and_errors():
    r = cli(["sum(x*x)", "x=@-", "--json", "--check", "none"], "[1, 2, 3]", **REAL)
    assert r.status == 0 and r.json()["grads"]["x"] == [2.0, 4.0, 6.0]
    r = cli(["a*b", "a=@-", "b=@-", "--json"], "5", **REAL)
    assert r.status == 2 and r.json()["error"]["kind"] == "usage"
    assert "Traceback" not in r.stderr
    r = cli(["x*2", "x=1,2,3"], **REAL)
    assert r.status == 2 and "--grad" in r.stderr and r.stdout == ""


def test_subprocess_sample_program():
    # the sample carries its cotangent in a #: line; PyTorch's numbers are in its #= lines
    r = cli(["-f", "samples/hindi_vjp_weights.grad", "--json", "--check", "none"], **REAL)
    assert r.status == 0, r.stderr
    obj = r.json()
    assert obj["output"]["name"] == "y"
    assert obj["output"]["value"] == [22.791759469228055, 39.945910149055315, 61.079441541679834]
    assert obj["grads"] == {"a": [0.30000000000000004, 3.0, 0.00030000000000000003],
                            "b": [1.2000000000000002, 16.0, 0.002],
                            "c": [0.016666666666666666, 0.14285714285714285, 1.25e-05]}
