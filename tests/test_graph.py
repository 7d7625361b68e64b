"""--graph (a tree of PyTorch's backward nodes) and --dot FILE (the same graph as Graphviz DOT).

The DOT is checked twice: by a small pure-Python reader of the DOT grammar we emit (so CI,
which installs no Graphviz, still fails on a broken file), and by `dot -Tsvg` when Graphviz is
installed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradcalc.cli import command
from gradcalc.view.graph import dot_quote

ROOT = Path(__file__).resolve().parent.parent
SEED = str(ROOT / "samples" / "hindi_vjp_weights.grad")


def invoke(args, columns=120):
    res = CliRunner().invoke(command, list(args), env={"COLUMNS": str(columns), "NO_COLOR": "1"},
                             catch_exceptions=False, standalone_mode=False)
    assert res.return_value in (0, 1), res.output
    return res.output


def tree_part(out):
    return out[out.index("autograd graph"):]


# -- the tree ----------------------------------------------------------------------------

def test_seed_tree_has_pytorch_names_from_output_to_leaves():
    out = tree_part(invoke(["-f", SEED, "--graph"]))
    lines = out.splitlines()
    assert lines[0] == ("autograd graph: from the output y back to the leaves, with PyTorch's "
                        "grad_fn names")
    assert lines[1] == "y = AddBackward0  (3,)  [22.7918, 39.9459, 61.0794]"
    body = "\n".join(lines[1:])
    # y = (3*a + 2*b*b) + log(c): the sum of products on one side, LogBackward0 on the other
    assert "├── AddBackward0  (3,)  [21, 38, 59]" in body
    assert "└── LogBackward0  (3,)  [1.79176, 1.94591, 2.07944]" in body
    assert "    └── c  AccumulateGrad  (3,)  [6, 7, 8]" in body
    assert body.count("MulBackward0") == 3
    assert body.count("b  AccumulateGrad  (3,)  [3, 4, 5]") == 2      # b*b: b twice
    assert body.count("a  AccumulateGrad") == 1
    assert "constant  3" in body and "constant  2" in body


def test_tree_depth_follows_indentation():
    out = tree_part(invoke(["-f", SEED, "--graph"]))
    depth = {}
    for ln in out.splitlines()[1:]:
        m = re.search(r"[A-Za-z]", ln)
        if m:
            depth[ln.strip("│├└─ ")] = m.start() // 4
    assert depth["c  AccumulateGrad  (3,)  [6, 7, 8]"] == 2
    assert depth["a  AccumulateGrad  (3,)  [1, 2, 3]"] == 3
    assert depth["MulBackward0  (3,)  [6, 8, 10]"] == 3


def test_shared_node_is_expanded_once():
    out = tree_part(invoke(["s = exp(x); y = sum(s*s)", "x=1,2", "--graph"]))
    assert out.count("s = ExpBackward0") == 2
    assert out.count("x  AccumulateGrad") == 1
    assert "(same node as above)" in out


def test_nodes_without_grad_are_shown_not_expanded():
    out = tree_part(invoke(["sum(a*detach(b*2) + c)", "a=1,2", "b=3,4", "c=1", "--wrt", "a,b",
                          "--graph"]))
    assert "detach  (2,)  [6, 8]  (graph cut: no gradient flows back)" in out
    assert "c  constant leaf  scalar  1  (not in --wrt: no grad)" in out
    assert "b  AccumulateGrad" not in out          # behind detach: PyTorch's graph ends there
    assert "SumBackward0" in out and "AddBackward0" in out


def test_torch_names_of_common_ops():
    out = tree_part(invoke(["mean(relu(W @ x) ** 2) + sum(x[0:1])", "W=[[1,2],[3,4]]", "x=1,-1",
                          "--graph"]))
    for name in ("MeanBackward0", "PowBackward0", "ReluBackward0", "SumBackward0",
                 "SliceBackward0", "AddBackward0"):
        assert name in out, name


def test_deep_graph_is_cut_with_a_count_not_a_crash():
    expr = "x" + "+x" * 2000
    out = tree_part(invoke([expr, "x=1", "--graph", "--no-jacobian", "--check", "none"],
                           columns=80))
    m = re.search(r"\.\.\. ([\d,]+) more nodes not shown \(all of them: --dot FILE\)", out)
    assert m and int(m.group(1).replace(",", "")) > 1000
    assert max(len(ln) for ln in out.splitlines()) <= 80


# -- DOT ---------------------------------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<arrow>->)|(?P<id>[A-Za-z_][A-Za-z0-9_]*'
                   r'|-?\d+(?:\.\d+)?)|(?P<punct>[{}\[\];,=]))')


def parse_dot(text):
    """A reader for the DOT subset gradcalc writes: `digraph ID { stmt; ... }` where a stmt is
    `graph|node [attrs]`, `ID [attrs]` or `ID -> ID [attrs]`. Returns (nodes {id: attrs},
    edges [(a, b)]); raises AssertionError on anything else."""
    toks, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        assert m and m.end() > pos, f"bad DOT at {pos}: {text[pos:pos + 40]!r}"
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        pos = m.end()
    it = iter(toks + [("eof", None)])
    tok = next(it)

    def take(kind=None, value=None):
        nonlocal tok
        k, v = tok
        assert (kind is None or k == kind) and (value is None or v == value), (tok, kind, value)
        tok = next(it)
        return v

    def attrs():
        out = {}
        if tok == ("punct", "["):
            take()
            while tok != ("punct", "]"):
                key = take("id")
                take("punct", "=")
                k, v = tok
                assert k in ("id", "str"), tok
                take()
                out[key] = json.loads(v.replace("\\n", "\\\\n")) if k == "str" else v
                if tok == ("punct", ","):
                    take()
            take("punct", "]")
        return out

    take("id", "digraph")
    take("id")
    take("punct", "{")
    nodes, edges = {}, []
    while tok != ("punct", "}"):
        name = take("id")
        if tok == ("arrow", "->"):
            take()
            edges.append((name, take("id")))
            attrs()
        else:
            a = attrs()
            if name not in ("graph", "node", "edge"):
                assert name not in nodes, f"node {name} declared twice"
                nodes[name] = a
        take("punct", ";")
    take("punct", "}")
    assert tok[0] == "eof", tok
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} to an undeclared node"
    return nodes, edges


@pytest.fixture(scope="module")
def seed_dot(tmp_path_factory):
    path = tmp_path_factory.mktemp("dot") / "seed.dot"
    invoke(["-f", SEED, "--dot", str(path)])
    return path


def test_dot_is_the_same_graph(seed_dot):
    nodes, edges = parse_dot(seed_dot.read_text())
    labels = {k: v["label"] for k, v in nodes.items()}
    kinds = sorted(lbl.split("\\n")[0 if "Backward" in lbl.split("\\n")[0] else 1]
                   if not lbl.startswith("constant") else "constant" for lbl in labels.values())
    assert kinds == sorted(["AccumulateGrad"] * 3 + ["MulBackward0"] * 3 + ["AddBackward0"] * 2
                           + ["LogBackward0", "constant", "constant"])
    assert len(edges) == 11                 # b feeds two multiplications
    out = [k for k, v in labels.items() if v.startswith("y\\nAddBackward0")]
    assert len(out) == 1 and nodes[out[0]]["fillcolor"] == "darkolivegreen1"
    assert not any(a == out[0] for a, _ in edges), "edges run from the leaves to the output"
    leaf_b = [k for k, v in labels.items() if v.startswith("b\\nAccumulateGrad")]
    assert sum(1 for a, _ in edges if a == leaf_b[0]) == 2


def test_dot_renders_with_graphviz(seed_dot, tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed (the pure-Python DOT check still ran)")
    svg = tmp_path / "seed.svg"
    proc = subprocess.run(["dot", "-Tsvg", str(seed_dot), "-o", str(svg)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = svg.read_text()
    assert "<svg" in text and "AccumulateGrad" in text and "LogBackward0" in text


def test_dot_with_json_keeps_stdout_json(tmp_path):
    path = tmp_path / "g.dot"
    res = CliRunner().invoke(command, ["-f", SEED, "--json", "--dot", str(path)],
                             standalone_mode=False)
    obj = json.loads(res.stdout)
    assert obj["grads"]["a"] == pytest.approx([0.3, 3.0, 0.0003])
    parse_dot(path.read_text())


def test_dot_quotes_are_escaped():
    assert dot_quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    nodes, _ = parse_dot("digraph g {\n  n1 [label=" + dot_quote('say "hi"\\') + "];\n}\n")
    assert nodes["n1"]["label"] == 'say "hi"\\'


def test_dot_of_a_deep_graph_is_complete(tmp_path):
    path = tmp_path / "deep.dot"
    invoke(["x" + "+x" * 300, "x=1", "--dot", str(path), "--check", "none"])
    nodes, edges = parse_dot(path.read_text())
    assert sum("AddBackward0" in v["label"] for v in nodes.values()) == 300
    assert len(edges) == 600


def test_dot_to_an_unwritable_path_is_a_usage_error(tmp_path):
    res = subprocess.run(["python", "-m", "gradcalc", "a*2", "a=1", "--dot",
                          str(tmp_path / "no" / "such" / "dir" / "g.dot")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "usage error: --dot: cannot write to" in res.stderr


def test_json_and_dot_do_not_import_rich(tmp_path):
    """Start-up time: rich is for the human view only."""
    code = ("import sys\nfrom gradcalc.cli import main\n"
            f"sys.argv = ['gradcalc', 'a*2', 'a=1', '--json', '--dot', {str(tmp_path / 'g.dot')!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('RICH', any(m == 'rich' or m.startswith('rich.') for m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip().endswith("RICH False"), proc.stdout + proc.stderr
    parse_dot((tmp_path / "g.dot").read_text())


GRAD_FN = json.loads((ROOT / "tests" / "reference" / "torch_grad_fn.json").read_text())


@pytest.mark.parametrize("case", GRAD_FN["cases"], ids=lambda c: c["expr"])
def test_output_node_has_pytorchs_grad_fn_name(case):
    """The root of --graph is named as PyTorch names `out.grad_fn` (recorded from torch by
    tests/reference/record_grad_fn.py)."""
    from gradcalc.api import Settings, run
    from gradcalc.errors import Limits
    names = set(re.findall(r"[A-Za-z_]\w*", case["expr"]))
    bindings = {k: v for k, v in GRAD_FN["vars"].items() if k in names}
    res = run(case["expr"], bindings, Settings(grad=1, check="none", jacobian=False), Limits())
    eq = res.graph.nodes[res.output_id]
    assert eq.torch == case["grad_fn"]
