"""Derivations kept across processes: a later `gradcalc` with the same program skips sympy.

The symbolic check of an elementwise program writes each leaf's derivative as data (a JSON
list of nodes: a smooth head of evaluator.SMOOTH, a power, a leaf, a number) with its printed
formula, in one file per program under the cache directory (GRADCALC_CACHE_DIR, else
$XDG_CACHE_HOME/gradcalc, else ~/.cache/gradcalc; GRADCALC_NO_CACHE=1 turns it off). The
file's name and contents are keyed by the program as the check sees it (its nodes, constants,
leaves, output and wrt) and by the code that derived it (gradcalc's sources, sympy's version):
anything else is a miss. A file is only ever read as data and evaluated here with
evaluator.py's own numpy functions, never executed; a corrupt, foreign or stale one is
ignored. It never imports sympy, except to write what a fresh check derived.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys

import numpy as np

from .evaluator import POWERS, SMOOTH, pow_kind

FORMAT = 1                      # the layout of a kept derivation; a change makes old ones misses
MAX_NODES = 2000                # a longer derivation is not kept (nor read back)


def directory() -> str | None:
    """Where derivations are kept, or None when keeping is off."""
    if os.environ.get("GRADCALC_NO_CACHE"):
        return None
    root = os.environ.get("GRADCALC_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        root = os.path.join(base, "gradcalc")
    return os.path.join(root, "derivations")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """What derived a kept derivation: gradcalc's source files (name, size, mtime) and
    sympy's release, read without importing sympy."""
    h = hashlib.sha256(f"{FORMAT} {sys.version_info[:2]}".encode())
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{os.path.relpath(os.path.join(dirpath, f), pkg)} {st.st_size} "
                         f"{st.st_mtime_ns}\n".encode())
    for entry in sys.path:               # where `import sympy` will find it, not imported
        release = os.path.join(entry or os.curdir, "sympy", "release.py")
        if os.path.isfile(release):
            with open(release, "rb") as fh:
                h.update(fh.read())
            break
    return h.hexdigest()


def program_key(context) -> str | None:
    """The program as the symbolic check derives it, hashed; None when its derivation
    depends on more than the program (an array constant, a value of the request)."""
    graph, vals = context.graph, context.vals
    names = {i: n for n, i in graph.leaves.items()}
    nodes = []
    for i in context.ids:
        eq = graph.nodes[i]
        if eq.kind == "op":
            nodes.append(["op", eq.op.name, list(eq.inputs), repr(sorted(eq.params.items())),
                          list(eq.shape)])
        elif eq.kind == "leaf" and i in names:
            nodes.append(["leaf", names[i], list(eq.shape)])
        elif eq.kind == "const":
            v = np.asarray(vals[i], dtype=np.float64)
            if not v.size or not np.all(v == v.flat[0]):
                return None
            nodes.append(["const", repr(float(v.flat[0])), list(eq.shape)])
        else:
            return None
    desc = [code_version(), context.output_id, list(context.wrt), context.dtype, nodes]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()


def _path(key):
    d = directory()
    return None if d is None or key is None else os.path.join(d, key + ".json")


def load(context) -> dict | None:
    """{leaf name: (nodes, formula)} kept for this program, or None (a miss: no file, or
    one that is corrupt, foreign or of another version)."""
    if directory() is None:
        return None
    try:
        key = program_key(context)
        path = _path(key)
        if path is None:
            return None
        with open(path, "rb") as fh:
            data = json.loads(fh.read(1 << 20))
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        kept = {}
        for name in context.wrt:
            if context.graph.leaves[name] not in context.ids:
                continue                          # no path: nothing to keep or read
            entry = data["leaves"][name]
            nodes, formula = entry["nodes"], entry["formula"]
            if not (isinstance(nodes, list) and 0 < len(nodes) <= MAX_NODES
                    and (formula is None or isinstance(formula, str))):
                return None
            kept[name] = (nodes, formula)
        return kept
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def evaluate(nodes, context) -> np.ndarray | None:
    """A kept derivative over every output element, computed as evaluator.Evaluator computes
    the sympy tree it was written from (the same numpy functions, argument for argument);
    None when a node is malformed or any value is not finite: there the check flags,
    refines or excuses, which only a fresh derivation can."""
    try:
        return _evaluate(nodes, context)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError):
        return None             # a malformed node: a miss, never an error of the check


def _evaluate(nodes, context):
    graph, vals = context.graph, context.vals
    got = []
    with np.errstate(all="ignore"):
        for node in nodes:
            head, args = node[0], node[1:]
            if head == "leaf":
                v = np.asarray(vals[graph.leaves[args[0]]], dtype=np.float64)
            elif head == "num":
                v = np.float64(float(args[0]))
            elif head == "pow":
                kind, base, exponent = args
                if kind not in POWERS or not all(0 <= k < len(got) for k in (base, exponent)):
                    return None
                v = POWERS[kind](got[base], got[exponent])
            elif head in SMOOTH and args and all(isinstance(k, int) and 0 <= k < len(got)
                                                 for k in args):
                v = SMOOTH[head](*(got[k] for k in args))
            else:
                return None
            if not np.all(np.isfinite(v)):
                return None
            got.append(v)
    return np.broadcast_to(np.asarray(got[-1], dtype=np.float64), context.out_shape)


def to_nodes(sp, d, leaf_names) -> list | None:
    """A sympy derivative as kept data (shared subtrees once, arguments before their
    head), or None when it has a head the kept form does not know (then it is not kept)."""
    heads = {getattr(sp, name): name for name in SMOOTH}
    index, nodes = {}, []
    stack = [d]
    while stack:
        e = stack[-1]
        if e in index:
            stack.pop()
            continue
        pending = [a for a in e.args if a not in index]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if e in leaf_names:
            node = ["leaf", leaf_names[e]]
        elif not e.args and (e.is_Number or isinstance(e, sp.NumberSymbol)):
            f = float(e)
            if not np.isfinite(f):
                return None
            node = ["num", f]
        elif type(e) is sp.Pow:
            node = ["pow", pow_kind(sp, e.args[1]), index[e.args[0]], index[e.args[1]]]
        elif type(e) in heads:
            node = [heads[type(e)], *(index[a] for a in e.args)]
        else:
            return None
        index[e] = len(nodes)
        nodes.append(node)
        if len(nodes) > MAX_NODES:
            return None
    return nodes


def save(context, sp, derived):
    """Keep what a fresh check derived for this program (every leaf with a path, or
    nothing); written whole (a temporary file, then a rename). Never raises."""
    if directory() is None:
        return
    try:
        key = program_key(context)
        path = _path(key)
        if path is None:
            return
        leaf_names = {derived.leaf_sym[graph_id]: name
                      for name, graph_id in context.graph.leaves.items()
                      if graph_id in derived.leaf_sym}
        leaves = {}
        for name in context.wrt:
            i = context.graph.leaves[name]
            if i not in context.ids:
                continue
            hit = derived.diffs.get(i)
            nodes = None if hit is None else to_nodes(sp, hit[0], leaf_names)
            if nodes is None:
                return
            leaves[name] = {"nodes": nodes, "formula": hit[1]}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"format": FORMAT, "key": key, "leaves": leaves}, fh, allow_nan=False)
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError, RecursionError):
        pass
