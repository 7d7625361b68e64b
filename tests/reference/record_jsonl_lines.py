"""Record today's JSON Lines answers to a corpus of varied requests, byte for byte.

Run from the checkout, with the gradcalc whose output is the contract (before a speed change
to the JSON Lines path, never after one):

    python tests/reference/record_jsonl_lines.py

The corpus (jsonl_corpus.py) covers what a shortcut of the request path could change: ids
of every JSON type, non-finite and extreme numbers (NaN, infinities, -0.0, below 1e-4, from
1e16 up), errors of every kind, unknown fields, every option of a request, `#:` lines,
float32, large arrays and repeated requests. The answers (jsonl_lines.json, with the exit
status) are replayed by tests/test_jsonl_equivalence.py, as objects (every number the same
double) in the writer's own text: the file holds the lines of json.dumps's layout, which
gradcalc wrote when they were recorded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from jsonl_corpus import ARGS, corpus  # noqa: E402

OUT_PATH = HERE / "jsonl_lines.json"


def main():
    lines = corpus()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "gradcalc", "-", *ARGS], input=b"".join(lines),
                       capture_output=True, env=env, timeout=600)
    answers = p.stdout.decode("utf-8").splitlines()
    OUT_PATH.write_text(json.dumps({"args": ARGS, "status": p.returncode, "answers": answers},
                                   indent=0) + "\n")
    print(f"{len(lines)} requests, {len(answers)} answers, exit {p.returncode} -> {OUT_PATH}")


if __name__ == "__main__":
    main()
