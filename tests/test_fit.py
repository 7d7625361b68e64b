"""`gradcalc fit` through real processes (issue 11, SPEC 10): the German seed page's
training with PyTorch's numbers, Levenberg-Marquardt against scipy's curve_fit, the files
it writes, and how it stops (a non-finite loss, Ctrl-C, bad options)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gradcalc.errors import Limits

from clirun import ROOT, cli

REF = Path(ROOT) / "tests" / "reference"
GERMAN = json.loads((REF / "torch_german_fit.json").read_text())
LM = {p["name"]: p for p in json.loads((REF / "curve_fit_lm.json").read_text())["problems"]}
POINTS = str(Path(ROOT) / "samples" / "german_points.csv")
GERMAN_ARGS = ["fit", "mse_loss(2*x*w[0] + x**2*w[1], y)", "--data", POINTS, "--params",
               "w=0,0", "--optimizer", "adam", "--lr", "0.1", "--epochs", "20",
               "--batch-size", "10", "--dtype", "float32"]


def fit(*args, **kw):
    return cli(["fit", *args] if args and args[0] != "fit" else list(args), isolate=True,
               timeout=120, **kw)


def test_the_german_page_trains_to_pytorchs_weights():
    """200 points, batches of 10, 20 epochs of Adam(lr=0.1) in float32: torch 2.13 ends at
    w = [1.2000005, -3.4000008] (tests/reference/record_optim.py)."""
    r = fit(*GERMAN_ARGS, "--json")
    assert r.status == 0, r.stderr
    obj = r.json()
    np.testing.assert_allclose(obj["params"]["w"], GERMAN["w"], rtol=1e-5)
    assert obj["stopped"] == "epochs" and obj["epochs"] == 20 and obj["dtype"] == "float32"
    assert obj["optimizer"] == {"name": "adam", "lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-08,
                                "weight_decay": 0.0, "amsgrad": False}
    # each epoch's loss: the mean of its batch losses weighted by rows, as torch's run gave
    torch_history = [h["loss"] for h in GERMAN["history"]]
    # (float32 rounding of the batch means leaves ~1e-9 absolute once the loss is tiny)
    np.testing.assert_allclose([h["loss"] for h in obj["history"]], torch_history, rtol=1e-5,
                               atol=1e-9)
    assert [h["epoch"] for h in obj["history"]] == list(range(1, 21))
    # torch's final loss is 7.8e-14: float32 rounding noise of an exact fit, as is ours
    assert 0 <= obj["loss"] < 1e-12 and GERMAN["loss"] < 1e-12


def test_the_human_report_shows_parameters_and_the_loss_curve():
    r = fit(*GERMAN_ARGS, "--plot", env={"COLUMNS": "80"})
    assert r.status == 0, r.stderr
    out = r.stdout
    assert "adam (lr=0.1, betas=0.9,0.999" in out
    assert "w[0]" in out and "1.2" in out and "-3.4" in out
    assert "loss per epoch (log scale)" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert r.stderr == ""          # no progress bar when stderr is not a terminal
    # piped without --plot: the same report, less the curve (a picture for a terminal)
    piped = fit(*GERMAN_ARGS, env={"COLUMNS": "80"})
    assert piped.status == 0, piped.stderr
    assert "loss per epoch" not in piped.stdout
    assert out.startswith(piped.stdout.rstrip("\n"))


def test_the_report_of_a_program_file_echoes_its_statements_not_its_comments():
    """The sample's file: its two statements head the report, each on its line (the text had
    been echoed whole, comments and all, with its newlines written as \\n)."""
    prog = str(Path(ROOT) / "samples" / "fit" / "german_training.grad")
    r = fit("-f", prog, *GERMAN_ARGS[2:], env={"COLUMNS": "100"})
    assert r.status == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["f(x, w) = 2*x*w[0] + x**2*w[1]",
                                         "loss = mse_loss(f(x, w), y)"]
    assert "#" not in r.stdout and "\\n" not in r.stdout


LM_ARGS = ["a*exp(-k*t) - y", "t=linspace(0,4,50)",
           "y=3*exp(-1.3*linspace(0,4,50)) + 0.01*sin(7*linspace(0,4,50))", "--params", "a=1",
           "--params", "k=1", "--optimizer", "lm"]
ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def test_the_report_lays_out_its_tables_and_wraps_its_notes_within_the_width():
    """lm's report at 60 columns: the parameter table with standard errors, the correlation
    matrix's lower triangle, notes wrapped at spaces, and no line ending in a blank (rich
    padded the correlation's title and rows with them)."""
    out = fit(*LM_ARGS, env={"COLUMNS": "60", "NO_COLOR": None, "FORCE_COLOR": None}).ok().stdout
    lines = out.splitlines()
    assert lines[0] == "loss = a*exp(-k*t) - y"
    assert lines[1:3] == ["lm (max_iterations=100, tol=1e-15, xtol=1e-10), 6",
                          "iterations, float64: the loss stopped changing (--tol)"]
    assert lines[3] == "  no step lowers the sum of squares"
    at = lines.index("param    value  std. error   rel.")
    assert lines[at + 1:at + 3] == ["a      3.00517  0.00415952  0.14%",
                                    "k      1.30194  0.00268744  0.21%"]
    assert lines[at + 3] == "sum of squared residuals: 0.00239568"
    assert lines[at + 5:at + 9] == ["correlation", "       a      k", "a  1.000",
                                    "k  0.669  1.000"]
    assert [ln for ln in lines if ln != ln.rstrip() or len(ln) > 60] == []
    # a statement wider than the page: its continuation hangs, as the calculator's do
    long = fit("mse_loss(2*x*w[0] + x**2*w[1] + x**3*w[2], y)", "x=1,2,3", "y=1,2,3",
               "--params", "w=0,0,0", "--epochs", "2", env={"COLUMNS": "40"}).ok().stdout
    assert long.splitlines()[:2] == ["loss = mse_loss(2*x*w[0] + x**2*w[1] +",
                                     "    x**3*w[2], y)"]


def test_the_report_is_coloured_only_where_colour_is_on():
    """FORCE_COLOR colours a piped report (as it does rich's views), NO_COLOR takes every
    escape away, and the coloured report is the plain one with styles around its words."""
    plain = fit(*LM_ARGS, env={"NO_COLOR": None, "FORCE_COLOR": None}).ok().stdout
    forced = fit(*LM_ARGS, env={"FORCE_COLOR": "1", "NO_COLOR": None})
    assert forced.status == 0 and forced.stderr == ""
    forced = forced.stdout
    both = fit(*LM_ARGS, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).ok().stdout
    assert "\x1b" not in plain and "\x1b" not in both and both == plain
    assert "\x1b[36m" in forced and "\x1b[32m" in forced        # names cyan, values green
    assert ESCAPES.sub("", forced) == plain


def test_user_text_in_the_report_is_escaped_and_symbols_fall_back_to_ascii():
    """A statement's control characters reach a coloured report only escaped; on a stream
    that is not UTF-8 the warning sign is '!' and nothing fails to encode."""
    r = fit("mean(log(w - x))  # \x1b[2J\x1b]0;pwned\x07", "x=1,2,3,4", "--params", "w=5",
            "--optimizer", "sgd", "--lr", "1", "--epochs", "50", "--batch-size", "2",
            env={"FORCE_COLOR": "1", "NO_COLOR": None, "PYTHONIOENCODING": "ascii"})
    assert r.status == 1, r.stderr
    out = r.stdout
    assert "\x1b[2J" not in out and "\x1b]0;" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "\\x07" in out
    assert re.search(r"^\S*! epoch \d+, batch [12]: log\(\) produced", ESCAPES.sub("", out),
                     re.M), out


@pytest.mark.parametrize("name", ["decay", "quadratic"])
def test_lm_agrees_with_curve_fit(name, tmp_path):
    p = LM[name]
    data = tmp_path / "points.csv"
    data.write_text("t,y\n" + "".join(f"{t!r},{y!r}\n" for t, y in zip(p["t"], p["y"])))
    names = {"decay": ["a", "k", "c"], "quadratic": ["p0", "p1", "p2"]}[name]
    model = p["model"].replace("exp", "exp")
    starts = [f"--params={n}={v!r}" for n, v in zip(names, p["p0"])]
    r = fit(f"{model} - y", "--data", str(data), *starts, "--optimizer", "lm", "--json")
    assert r.status == 0, r.stderr
    obj = r.json()
    exact = p["exact"]
    got = [obj["params"][n] for n in names]
    np.testing.assert_allclose(got, exact["popt"], rtol=1e-8)
    np.testing.assert_allclose([obj["stderr"][n] for n in names],
                               np.sqrt(np.diag(exact["pcov"])), rtol=1e-6)
    pcov = np.array(exact["pcov"])
    d = np.sqrt(np.diag(pcov))
    np.testing.assert_allclose(obj["correlation"], pcov / np.outer(d, d), rtol=1e-6, atol=1e-9)
    assert obj["optimizer"]["name"] == "lm" and obj["stopped"] in ("tol", "epochs")


def test_lm_forward_and_reverse_jacobians_agree(monkeypatch):
    """lm's Jacobian of a residual vector by one backward pass over the parameters spread to
    the residuals' shape (a pointwise program), by forward mode (one J·e_k per parameter
    element: fewer parameters than residuals) and by the reverse batched pass give the same
    fit; at 100,000 residuals the reverse pass would need a 100,000² identity (75 GiB), the
    other two are O(n) per column or per pass."""
    from gradcalc.fit import loop
    p = LM["decay"]
    req = dict(text=f"{p['model']} - y", values={"t": np.array(p["t"]), "y": np.array(p["y"]),
                                                 **dict(zip("akc", map(np.array, p["p0"])))},
               params=["a", "k", "c"], optimizer="lm", epochs=100, limits=Limits())
    pointwise = loop.fit(loop.FitRequest(**req))     # one backward pass for every column
    monkeypatch.setattr(loop, "LM_POINTWISE", False)
    forward = loop.fit(loop.FitRequest(**req))
    monkeypatch.setattr(loop, "LM_FORWARD_MODE", False)
    reverse = loop.fit(loop.FitRequest(**req))
    for n in "akc":
        for got in (forward, pointwise):
            assert got.params[n] == pytest.approx(reverse.params[n], rel=1e-12)
            assert got.stderr[n] == pytest.approx(reverse.stderr[n], rel=1e-9)
    np.testing.assert_allclose(forward.params["a"], p["exact"]["popt"][0], rtol=1e-8)
    monkeypatch.setattr(loop, "LM_FORWARD_MODE", True)
    monkeypatch.setattr(loop, "LM_POINTWISE", True)
    t = np.linspace(0, 5, 100_000)
    big = dict(req, values={"t": t, "y": 2.5 * np.exp(-1.3 * t) + 0.5, "a": np.array(1.0),
                            "k": np.array(1.0), "c": np.array(0.0)})
    got = loop.fit(loop.FitRequest(**big)).params
    assert [float(got[n]) for n in "akc"] == pytest.approx([2.5, 1.3, 0.5], rel=1e-9)


def test_saved_parameters_feed_back_as_data(tmp_path):
    saved = tmp_path / "w.json"
    r = fit(*GERMAN_ARGS, "--epochs", "3", "--save-params", str(saved), "--json")
    assert r.status == 0, r.stderr
    w = json.loads(saved.read_text())["w"]
    assert w == r.json()["params"]["w"]
    again = cli(["2*x*w[0] + x**2*w[1]", "x=1", "--data", str(saved), "--json", "--check",
                 "none"], isolate=True)
    assert again.status == 0, again.stderr
    assert again.json()["output"]["value"] == pytest.approx(2 * w[0] + w[1])


def test_history_is_streamed_one_line_per_epoch(tmp_path):
    hist = tmp_path / "h.jsonl"
    r = fit(*GERMAN_ARGS, "--epochs", "4", "--history", str(hist), "--json")
    lines = [json.loads(line) for line in hist.read_text().splitlines()]
    assert lines == r.json()["history"] and [h["epoch"] for h in lines] == [1, 2, 3, 4]


def test_a_history_file_on_a_full_disk_is_a_usage_error_naming_the_option():
    """(It was an internal error, exit 3: the close after the failed write failed again.)"""
    r = fit("mean((w*x - 1)**2)", "x=1,2", "--params", "w=0", "--history", "/dev/full")
    r.assert_error("usage")
    assert r.stderr == ("gradcalc: usage error: --history: cannot write to '/dev/full': "
                        "No space left on device\n")


def test_plot_writes_a_png_and_an_svg(tmp_path):
    pytest.importorskip("matplotlib")
    for name, magic in (("loss.png", b"\x89PNG\r\n\x1a\n"), ("loss.svg", b"<?xml")):
        r = fit(*GERMAN_ARGS, "--epochs", "3", "--plot", str(tmp_path / name), "--json")
        assert r.status == 0, r.stderr
        assert (tmp_path / name).read_bytes().startswith(magic)


def test_a_non_finite_loss_stops_with_exit_1_naming_where():
    r = fit("mean(log(w - x))", "x=1,2,3,4", "--params", "w=5", "--optimizer", "sgd", "--lr",
            "1", "--epochs", "50", "--batch-size", "2", "--json")
    assert r.status == 1
    obj = r.json()
    assert obj["stopped"] == "nonfinite"
    nf = obj["nonfinite"]
    assert nf["epoch"] >= 1 and nf["batch"] in (1, 2) and nf["node"] == "log"


@pytest.mark.parametrize("args,says", [
    (["--params", "w=0", "--optimizer", "adam", "--momentum", "0.9"],
     "--momentum does not apply to --optimizer adam"),
    (["--params", "w=0", "--optimizer", "rmsprop"], "--optimizer must be one of"),
    (["--params", "w=0", "--lr", "-1"], "--lr must be >= 0"),
    (["w=0", "--params", "q"], "--params: no value for 'q'"),
    (["w=0"], "--params names the leaves to optimise"),
    (["--params", "w=0", "--optimizer", "lm", "--lr", "0.1"], "--lr does not apply"),
])
def test_bad_options_are_usage_errors_naming_the_option(args, says):
    r = fit("mean((w*x - 1)**2)", "x=1,2", *args)
    r.assert_error("usage")
    assert says in r.stderr


def test_a_vector_loss_needs_lm():
    r = fit("w*x - 1", "x=1,2", "--params", "w=0")
    r.assert_error("usage")
    assert "--optimizer lm" in r.stderr


def test_ctrl_c_stops_with_the_parameters_so_far():
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "gradcalc", "fit", "mean((w*x - 1)**2)",
                          "x=linspace(0,1,2000)", "--params", "w=0", "--batch-size", "1",
                          "--epochs", "10000", "--optimizer", "sgd", "--lr", "0.01", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130
    obj = json.loads(out)
    assert obj["stopped"] == "interrupted"
    assert isinstance(obj["params"]["w"], float)
    assert "interrupted" in err.decode()


FIT_SAMPLES = sorted((Path(ROOT) / "samples" / "fit").glob("*.grad"))


@pytest.mark.parametrize("path", FIT_SAMPLES, ids=lambda p: p.stem)
def test_every_fit_sample_gives_pytorchs_trained_parameters(path):
    """Each samples/fit/*.grad carries its command (`#$`) and PyTorch's trained parameters
    and final loss (`#=`, recorded by samples/record_torch.py)."""
    import shlex
    text = path.read_text()
    (command,) = [ln[2:].strip() for ln in text.splitlines() if ln.startswith("#$")]
    args = shlex.split(command)
    assert args[:2] == ["gradcalc", "fit"]
    expected = {k.strip(): json.loads(v) for k, _, v in
                (ln[2:].partition("=") for ln in text.splitlines() if ln.startswith("#="))}
    r = fit(*args[1:], "--json", cwd=ROOT)
    assert r.status == 0, r.stderr
    obj = r.json()
    float32 = "--dtype" in args and args[args.index("--dtype") + 1] == "float32"
    for name, value in expected.items():
        got = obj["loss"] if name == "loss" else obj["params"][name]
        np.testing.assert_allclose(got, value, rtol=1e-5 if float32 else 1e-12,
                                   atol=1e-10 if name == "loss" else 0)


def test_every_fit_help_example_runs():
    """`gradcalc fit --help`'s examples need no file of the repository."""
    import shlex
    from gradcalc.cli.fit import FIT_EXAMPLES
    joined = FIT_EXAMPLES.replace("\\\n", " ")
    commands = [shlex.split(line.strip())[2:] for line in joined.splitlines()
                if line.strip().startswith("gradcalc fit ")]
    assert len(commands) == 2
    for args in commands:
        r = fit(*args, "--json", cwd="/")
        assert r.status == 0, (args, r.stderr)
        assert r.json()["stopped"] in ("epochs", "tol")
