"""The JSON Lines request path against today's answers, byte for byte.

tests/reference/jsonl_lines.json holds the answers the request path gave, before its speed
work (issue 15, figure 8a), to the corpus of tests/reference/jsonl_corpus.py: ids of every
JSON type, numbers orjson and repr write differently, NaN and the infinities, errors of
every kind, unknown fields, every option of a request, repeats of one request shape between
others. Every shortcut of the path (a faster writer, settings or answers kept per request
shape) must give the same lines and the same exit status, in one stream, twice over, and
with each line alone (nothing kept from another request).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent / "reference"
sys.path.insert(0, str(REFERENCE))

from jsonl_corpus import corpus  # noqa: E402

RECORDED = json.loads((REFERENCE / "jsonl_lines.json").read_text())


def first_difference(got: list, want: list) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            at = next((j for j, (p, q) in enumerate(zip(g, w)) if p != q), min(len(g), len(w)))
            return f"line {i}, at {at}: {g[at - 60:at + 60]!r} != {w[at - 60:at + 60]!r}"
    return f"{len(got)} lines != {len(want)}"


def test_one_stream_answers_as_recorded(cli):
    r = cli(["-", *RECORDED["args"]], b"".join(corpus()), timeout=300)
    got = r.stdout.splitlines()
    assert got == RECORDED["answers"], first_difference(got, RECORDED["answers"])
    assert r.status == RECORDED["status"]


def test_the_stream_twice_over_answers_as_recorded(cli):
    """Every shape seen once already: whatever is kept per shape serves the second pass."""
    lines = corpus()
    r = cli(["-", *RECORDED["args"]], b"".join(lines + lines), timeout=300)
    got = r.stdout.splitlines()
    want = RECORDED["answers"] * 2
    assert got == want, first_difference(got, want)


@pytest.mark.parametrize("index", range(len(corpus())))
def test_a_line_alone_answers_as_recorded(cli, index):
    """A line in a stream of its own (nothing kept from another request)."""
    lines = corpus()
    # the answers skip blank lines: find this line's answer
    blank = [not line.strip(b" \t\r\n") for line in lines]
    if blank[index]:
        pytest.skip("a blank line has no answer")
    at = index - sum(blank[:index])
    got = cli(["-", *RECORDED["args"]], lines[index], timeout=60).stdout.splitlines()
    assert got == [RECORDED["answers"][at]]
