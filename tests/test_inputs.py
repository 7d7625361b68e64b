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

from clirun import cli


def run(*args, stdin=b""):
    return cli(list(args), stdin, isolate=True, timeout=60)


def ok(r):
    r.assert_clean()
    assert r.status == 0, r.stderr
    return r


# ------------------------------------------------------ issue 13.3: reading its own JSON
def test_json_file_nonfinite_strings_are_numbers(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('[1, "NaN", "Infinity", "-Infinity"]')
    obj = ok(run("x*2", f"x=@{p}", "-g", "1", "--json", "--check", "none")).json()
    # 2*[1, nan, inf, -inf]; d(2x)/dx = 2 everywhere
    assert obj["output"]["value"] == [2.0, "NaN", "Infinity", "-Infinity"]
    assert obj["grads"]["x"] == [2.0, 2.0, 2.0, 2.0]


def test_round_trip_of_its_own_output(tmp_path):
    first = ok(run("1/x", "x=[0, 1, -0.0]", "-g", "1", "--json", "--check", "none")).json()
    assert first["output"]["value"] == ["Infinity", 1.0, "-Infinity"]
    p = tmp_path / "out.json"
    p.write_text(json.dumps(first["output"]["value"]))
    # exp(-inf) = 0, exp(1) = e, exp(inf) = inf
    obj = ok(run("exp(-y)", f"y=@{p}", "-g", "1", "--json", "--check", "none")).json()
    assert obj["output"]["value"] == [0.0, pytest.approx(math.exp(-1)), "Infinity"]
    scalar = tmp_path / "s.json"
    scalar.write_text('"-Infinity"')
    assert ok(run("-y", f"y=@{scalar}", "--json", "--check", "none")).json()["output"]["value"] \
        == "Infinity"


@pytest.mark.parametrize("bad", ['"nan"', '"Inf"', '"inf"', '" NaN"', '"1"', '"NaN "'])
def test_other_strings_in_arrays_stay_value_errors(tmp_path, bad):
    p = tmp_path / "x.json"
    p.write_text(f"[1, {bad}]")
    r = run("x*2", f"x=@{p}", "--json")
    r.assert_error("value", json_too=True)
    assert "found a string" in r.message


def test_jsonl_vars_read_nonfinite_strings():
    req = {"id": 1, "expr": "sum(x*x)", "vars": {"x": [[3, "Infinity"], ["-Infinity", "NaN"]]},
           "check": "none"}
    r = ok(run("-", stdin=json.dumps(req) + "\n"))
    (line,) = r.json_lines()
    # d/dx sum(x*x) = 2x
    assert line["grads"]["x"] == [[6.0, "Infinity"], ["-Infinity", "NaN"]]
    bad = dict(req, vars={"x": [1, "infinity"]})
    r = run("-", stdin=json.dumps(bad) + "\n")
    assert r.status == 2 and r.json_lines()[0]["error"]["kind"] == "value"


def test_language_knows_NaN():
    obj = ok(run("x + NaN", "x=1", "--json", "--check", "none")).json()
    assert obj["output"]["value"] == "NaN"
    assert obj["grads"]["x"] == 1.0          # d(x + c)/dx = 1 whatever c is
    obj = ok(run("x*2", "x=[1, NaN]", "-g", "1", "--json", "--check", "none")).json()
    assert obj["output"]["value"] == [2.0, "NaN"]


# ------------------------------------------------------ issue 14.17: short echoes
def test_huge_unknown_name_is_echoed_short():
    name = "a" * 100_000
    r = run(f"{name} + 1", "--json")
    r.assert_error("name", json_too=True)
    assert len(r.err) < 1500, len(r.err)
    assert len(r.out) < 1500, len(r.out)
    assert "unknown name 'aaaa" in r.message and "..." in r.message
    r = run(f"{name}(1)")
    r.assert_error("name")
    assert len(r.err) < 1500 and "unknown function" in r.message
