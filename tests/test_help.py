"""--help teaches, and the README documents what the CLI has.

Every click option must appear in --help and in the README; every example in --help must
run; the README's first command must name a sample that exists; the language reference must
name every function of the op table; the JSON schema section must name every key --json
writes.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from clirun import cli, human
from gradcalc.cli.calc import EXAMPLES, command

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def help_text():
    # the click command itself in standalone mode: --help is click's own
    r = cli(["--help"], env={"COLUMNS": "100"}, click=True)
    assert r.status == 0
    return r.stdout


def option_names():
    names = []
    for p in command.params:
        names += [o for o in list(p.opts) + list(p.secondary_opts) if o.startswith("-")]
    return names


def test_every_option_is_in_help_and_readme():
    text = help_text()
    missing_help = [o for o in option_names() if o not in text]
    assert not missing_help, f"options missing from --help: {missing_help}"
    missing_readme = [o for o in option_names() + ["--version", "--help"]
                      if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", README)]
    assert not missing_readme, f"options missing from README.md: {missing_readme}"


def test_help_shows_the_seed_example_and_exit_codes():
    text = help_text()
    assert "gradcalc '3*a + 2*b*b + log(c)' a=1,2,3 b=3,4,5 c=6,7,8 -g 0.1,1.0,0.0001" in text
    assert "a.grad = [0.3, 3, 0.0003]" in text
    # every example runs after a plain `pip install` (no file of the repository needed)
    assert "samples/" not in text
    assert ("0 ok, 1 a cross-check disagreed, 2 bad input, 3 internal error, 4 the output "
            "could not be written, 130 interrupted") in " ".join(text.split())


def example_commands():
    """(argv, stdin) of each example line of --help."""
    out = []
    for line in EXAMPLES.splitlines():
        line = line.strip()
        if line.startswith("gradcalc "):
            argv = shlex.split(line.split(" | ")[0])[1:]
            out.append((argv, None))
        elif line.startswith("echo ") and "| gradcalc" in line:
            left, right = line.split(" | gradcalc")
            out.append((shlex.split(right), shlex.split(left)[1] + "\n"))
    return out


@pytest.mark.parametrize("argv, stdin", example_commands(), ids=lambda x: str(x)[:60])
def test_every_help_example_runs(argv, stdin, tmp_path, monkeypatch):
    argv = [str(ROOT / a) if a.startswith("samples/") else a for a in argv]
    monkeypatch.chdir(tmp_path)                    # --dot graph.dot writes here
    r = cli(argv, stdin or b"", env={"COLUMNS": "100"})
    assert r.status == 0, r.stdout + r.stderr
    assert r.stdout.strip()


def test_help_examples_numbers_are_what_gradcalc_prints():
    def grads(argv):
        return cli(argv + ["--json"]).json()["grads"]

    assert grads(["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g",
                  "0.1,1.0,0.0001"])["a"] == pytest.approx([0.3, 3, 0.0003])
    assert grads(["(x+1)**2", "x=eye(5)", "-g", "1", "--repeat", "2"])["x"][0] == [8, 4, 4, 4, 4]
    assert grads(["2*x", "x=[[1,2,3,4]]", "-g", "[[1,0,0,0]]"])["x"] == [[2, 0, 0, 0]]
    assert grads(["2*x*w[0] + x**2*w[1]", "x=1", "w=1,1"])["w"] == [2, 1]


# -- the README ------------------------------------------------------------------------------

def test_readme_first_lines_are_the_two_setup_commands():
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].endswith("pip install -e . && gradcalc -f samples/hindi_vjp_weights.grad")
    assert block[1].endswith("pip install -e '.[test]' && python -m pytest -q")
    for name in set(re.findall(r"samples/([\w-]+\.grad)", README + EXAMPLES)) - {"NAME.grad"}:
        assert (ROOT / "samples" / name).exists(), name


def test_readme_seed_output_is_what_gradcalc_prints():
    """The tour's output was copied from a run; the lines that explain a.grad (the rows of
    J beside v, vᵀ·J, the written-out sums) must still be what gradcalc prints at 90
    columns. (Regenerate the README's blocks when the view changes.)"""
    cmd = "$ gradcalc -f samples/hindi_vjp_weights.grad\n"
    block = README.split(cmd, 1)[1].split("```", 1)[0]
    out = human(["-f", str(ROOT / "samples" / "hindi_vjp_weights.grad")], columns=90,
                env={"NO_COLOR": "1"})
    actual = {ln.rstrip() for ln in out.splitlines()}
    key = re.compile(r"^(y\[\d\]|vᵀ·J|[abc]\.grad =|\s+= |output y|    \[)")
    lines = [ln for ln in block.splitlines() if key.match(ln)]
    assert len(lines) >= 15
    stale = [ln for ln in lines if ln not in actual]
    assert not stale, f"README lines gradcalc no longer prints: {stale}"


def test_readme_language_reference_names_every_function():
    from gradcalc.ops import OPS
    ref = README[README.index("## The language"):]
    missing = [n for n, op in OPS.items() if op.named and n not in ("neg", "add", "sub", "mul", "div")
               and f"{n}(" not in ref]
    assert not missing, f"functions missing from the README's language reference: {missing}"


def test_readme_json_schema_names_every_key():
    keys = set(cli(["3*a", "a=1", "--json"]).json())
    schema = README[README.index("## JSON output"):]
    missing = [k for k in keys if f'"{k}"' not in schema]
    assert not missing, f"--json keys missing from the README's schema: {missing}"


def test_readme_exit_codes_and_limits():
    from gradcalc.errors import Limits
    assert "## Exit status" in README and "## Limits" in README
    limits = README[README.index("## Limits"):]
    lim = Limits()
    for text in (f"{lim.max_text:,}", str(lim.max_depth), "10^8", "2 GiB", f"{lim.max_repeat:,}"):
        assert text in limits, text
