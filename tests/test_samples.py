"""Every sample program in samples/ runs through the real CLI and gives PyTorch's numbers (SPEC 7).

A sample is a `.grad` program that opens with a comment naming the seed page and the worked
example it reproduces, may carry its options in a `#:` line, and records what PyTorch gives
for it in `#=` lines, one value per line, JSON after the `=`:

    #= out = 27.0                            the output (its name, or `output` for a bare expression)
    #= x.grad = [[4.5, 4.5], [4.5, 4.5]]     a leaf's grad

The numbers were recorded by running PyTorch (samples/record_torch.py, which needs torch and
is never imported here).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from clirun import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# the seed pages live beside the checkout (../shared/seeds), or where GRADCALC_SEEDS says
SEEDS_README = Path(os.environ.get("GRADCALC_SEEDS", ROOT.parent / "shared" / "seeds")) / "README.md"

RTOL = 1e-6
ATOL = 1e-9

# The seed pages (SPEC 7) and, for each worked example on them, the sample that reproduces it.
SEED_PAGES = {
    "000_aa0c7b74b129b2d4.txt": "Hindi: the gradient argument of y.backward(gradients)",
    "001_060ae18602dd6547.txt": "Chinese: autograd basics, the logistic layer, v^T.J",
    "002_6133961a3c27af38.txt": "German: cutting the graph, 2*x*w[0] + x**2*w[1]",
    "003_93d8051c035689b4.txt": "Russian: why the derivative of y = z is z",
}
EXPECTED_SAMPLES = {
    # 000 (Hindi)
    "hindi_vjp_weights": "y = 3*a + 2*b*b + log(c), y.backward([0.1, 1.0, 0.0001])",
    "hindi_scalar_backward": "the same y at scalars a=0.1, b=1, c=0.1 -> 3, 4, 10",
    "hindi_accumulate_two_calls": "two backward calls at a=b=c=1 -> 6, 8, 2",
    "hindi_onehot_first": "z = 2*x, z.backward([[1,0,0,0]]) -> 2 0 0 0",
    "hindi_onehot_second": "z = 2*x, z.backward([[0,1,0,0]]) -> 0 2 0 0",
    "hindi_ones_weights": "z = 2*x, z.backward([[1,1,1,1]]) -> 2 2 2 2",
    "hindi_sum_loss": "loss = z.sum(dim=1), loss.backward() -> 2 2 2 2",
    # 001 (Chinese)
    "chinese_mean_ones": "x = ones(2,2), y = x+2, z = y*y*3, out = mean(z) -> 27, 4.5",
    "chinese_logistic_layer": "z = x@w + b, binary_cross_entropy_with_logits(z, zeros(3))",
    "chinese_eye_first_call": "(eye(5)+1)**2, all-ones gradient -> 4 / 2",
    "chinese_eye_second_call": "the same, second backward call -> 8 / 4",
    # 002 (German)
    "german_f_at_one": "2*x*w[0] + x**2*w[1] at x=1, w=[1,1] -> 3, w.grad [2, 1]",
    "german_fit_first_batch": "the MSE fitting step of f against actual_w = 1.2, -3.4",
    "german_forward_difference": "the same step through the forward-difference backward",
    # 003 (Russian)
    "russian_identity": "y = z, y.backward(z) over linspace(-1,1,5) -> z.grad = z",
    "russian_square": "y = z**2, y.backward(z) over linspace(1,5,5) -> z.grad/z = 2z",
    "russian_sum": "y = sum(z) -> ones",
    "russian_sum_square": "y = sum(z**2) -> 2z",
    "russian_sum_square_grad_one": "y = sum(z**2), y.backward(torch.tensor(1.)) -> 2z",
}

SEED_NAME = re.compile(r"\b\d{3}_[0-9a-f]{16}\.txt\b")
RECORD = re.compile(r"^#=\s*([A-Za-z_][A-Za-z0-9_]*)(\.grad)?\s*=(.*)$")
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

SAMPLE_FILES = sorted(SAMPLES.glob("*.grad"))


def parse_sample(path: Path):
    """The sample's header comment, its recorded output (name, value) and grads {leaf: value}."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if line.startswith("#") and not line.startswith(("#:", "#=")):
            header.append(line)
        else:
            break
    outputs, grads = [], {}
    for number, line in enumerate(lines, 1):
        if not line.startswith("#="):
            continue
        match = RECORD.match(line)
        assert match, f"{path.name}:{number}: a #= line must read `#= NAME = JSON` or `#= NAME.grad = JSON`"
        name, is_grad, text = match.groups()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{path.name}:{number}: the value is not JSON: {exc}") from None
        if is_grad:
            assert name not in grads, f"{path.name}:{number}: {name}.grad recorded twice"
            grads[name] = value
        else:
            outputs.append((name, value))
    return header, outputs, grads


def as_array(value):
    """A JSON value of the SPEC 4 object as a float array ("NaN"/"Infinity" strings decoded)."""

    def decode(v):
        if isinstance(v, list):
            return [decode(x) for x in v]
        if isinstance(v, str):
            assert v in NON_FINITE, f"unexpected string {v!r} in a numeric value"
            return NON_FINITE[v]
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"not a number: {v!r}"
        return float(v)

    return np.asarray(decode(value), dtype=np.float64)


def assert_close(what, got, expected):
    got, expected = as_array(got), as_array(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, PyTorch gives {expected.shape}"
    assert np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True), (
        f"{what}: gradcalc gives {got.tolist()}, PyTorch gives {expected.tolist()}"
    )


def test_samples_exist():
    assert SAMPLE_FILES, f"no samples in {SAMPLES}"


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_is_well_formed(path):
    header, outputs, grads = parse_sample(path)
    assert header, f"{path.name} must open with a comment naming its seed page and example"
    assert header[0].startswith("# "), f"{path.name}: the first line must be a `# ` comment"
    seeds = set(SEED_NAME.findall("\n".join(header)))
    assert seeds, f"{path.name}: the header must name the seed page file (e.g. 000_aa0c7b74b129b2d4.txt)"
    assert seeds <= set(SEED_PAGES), f"{path.name}: unknown seed page {sorted(seeds - set(SEED_PAGES))}"
    assert grads, f"{path.name} must record at least one `#= LEAF.grad = ...` line"
    assert len(outputs) == 1, f"{path.name} must record its output in exactly one `#= NAME = ...` line"
    assert not path.read_text(encoding="utf-8").lstrip().startswith("\ufeff")


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_matches_pytorch(path):
    _, outputs, grads = parse_sample(path)
    proc = cli(["-f", path, "--json"], isolate=True, timeout=300, env={"NO_COLOR": "1"})
    assert proc.status == 0, (
        f"gradcalc -f {path.name} --json exited {proc.status}\n"
        f"stderr: {proc.stderr.strip()}\nstdout: {proc.stdout.strip()[:2000]}"
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"stdout is not one JSON object ({exc}): {proc.stdout[:2000]!r}")
    assert isinstance(result, dict) and "output" in result and "grads" in result, result

    assert len(outputs) == 1, f"{path.name} must record exactly one output"
    (name, value), = outputs
    output = result["output"]
    if name == "output":
        assert output.get("name") is None, f"a bare final expression has no name, got {output.get('name')!r}"
    else:
        assert output.get("name") == name, f"output name {output.get('name')!r}, expected {name!r}"
    assert list(output["shape"]) == list(np.shape(value)), (
        f"output shape {output['shape']}, PyTorch gives {list(np.shape(value))}"
    )
    assert_close(f"output {name}", output["value"], value)

    assert set(result["grads"]) == set(grads), (
        f"grads for {sorted(result['grads'])}, PyTorch has grads for {sorted(grads)}"
    )
    for leaf, expected in grads.items():
        assert_close(f"{leaf}.grad", result["grads"][leaf], expected)


def test_every_seed_example_has_a_sample():
    names = {p.stem for p in SAMPLE_FILES}
    missing = {name: what for name, what in EXPECTED_SAMPLES.items() if name not in names}
    assert not missing, f"seed examples without a sample: {missing}"


def test_every_sample_is_listed():
    unlisted = sorted({p.stem for p in SAMPLE_FILES} - set(EXPECTED_SAMPLES))
    assert not unlisted, f"samples not listed in EXPECTED_SAMPLES (add what they reproduce): {unlisted}"


def test_every_seed_page_has_a_sample():
    named = set()
    for path in SAMPLE_FILES:
        header, _, _ = parse_sample(path)
        named |= set(SEED_NAME.findall("\n".join(header)))
    assert set(SEED_PAGES) <= named, f"seed pages without a sample: {sorted(set(SEED_PAGES) - named)}"


@pytest.mark.skipif(not SEEDS_README.exists(), reason="the seed pages are not on this machine")
def test_seed_readme_table_is_covered():
    table = SEEDS_README.read_text(encoding="utf-8")
    pages = set(SEED_NAME.findall(table))
    assert pages == set(SEED_PAGES), f"README lists {sorted(pages)}, the test knows {sorted(SEED_PAGES)}"


def test_every_sample_has_a_torch_recording():
    """record_torch.py (read as text, never imported) has a hand-written torch function per sample."""
    script = (SAMPLES / "record_torch.py").read_text(encoding="utf-8")
    recorded = set(re.findall(r'@sample\("([A-Za-z0-9_]+)"\)', script))
    names = {p.stem for p in SAMPLE_FILES}
    assert names == recorded, (
        f"samples without a torch function: {sorted(names - recorded)}; "
        f"torch functions without a sample: {sorted(recorded - names)}"
    )
