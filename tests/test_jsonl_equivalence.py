"""The JSON Lines request path against the answers recorded before its speed work.

tests/reference/jsonl_lines.json holds the answers the request path gave, before its speed
work (issue 15, figure 8a), to the corpus of tests/reference/jsonl_corpus.py: ids of every
JSON type, numbers orjson and repr write differently, NaN and the infinities, errors of
every kind, unknown fields, every option of a request, repeats of one request shape between
others. They were written by json.dumps; gradcalc now writes orjson's layout (jsontext.py).
Every shortcut of the path (a faster writer, settings or answers kept per request shape)
must give the same objects, every number the same double (-0.0 is not 0.0, 1.0 is not 1),
each line in the writer's own text, and the same exit status: in one stream, twice over,
and with each line alone (nothing kept from another request).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent / "reference"
sys.path.insert(0, str(REFERENCE))

from jsonl_corpus import corpus  # noqa: E402

from gradcalc.jsontext import encode  # noqa: E402

RECORDED = json.loads((REFERENCE / "jsonl_lines.json").read_text())


def exact(line: str):
    """A line's object, each float as the repr of its double (told apart from an int)."""
    return json.loads(line, parse_float=lambda t: ("float", repr(float(t))))


def as_recorded(got: list) -> list:
    """The recorded answers' lines where `got`'s lines hold the same objects in the writer's
    text, else got's own lines (so that first_difference shows where they part)."""
    out = []
    for g, w in zip(got, RECORDED["answers"] * 2):
        try:
            ok = exact(g) == exact(w) and encode(json.loads(g)).decode() == g
        except ValueError:
            ok = False
        out.append(w if ok else g)
    return out + got[len(out):]


def first_difference(got: list, want: list) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            at = next((j for j, (p, q) in enumerate(zip(g, w)) if p != q), min(len(g), len(w)))
            return f"line {i}, at {at}: {g[at - 60:at + 60]!r} != {w[at - 60:at + 60]!r}"
    return f"{len(got)} lines != {len(want)}"


def test_one_stream_answers_as_recorded(cli):
    r = cli(["-", *RECORDED["args"]], b"".join(corpus()), timeout=300)
    got = as_recorded(r.stdout.split("\n")[:-1])
    assert got == RECORDED["answers"], first_difference(got, RECORDED["answers"])
    assert r.status == RECORDED["status"]


def test_the_stream_twice_over_answers_as_recorded(cli):
    """Every shape seen once already: whatever is kept per shape serves the second pass."""
    lines = corpus()
    r = cli(["-", *RECORDED["args"]], b"".join(lines + lines), timeout=300)
    got = as_recorded(r.stdout.split("\n")[:-1])
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
    got = cli(["-", *RECORDED["args"]], lines[index], timeout=60).stdout.split("\n")[:-1]
    assert len(got) == 1
    w = RECORDED["answers"][at]
    assert exact(got[0]) == exact(w)
    assert encode(json.loads(got[0])).decode() == got[0]
