"""Derivations kept across processes: a later `gradcalc` with the same program skips sympy.

The symbolic check of an elementwise program writes each leaf's derivative as data (the
nodes of its evaluator.Tape: a smooth head, a power, an input, a number; the inputs by leaf
name) with its printed formula, in one file per program under the cache directory (GRADCALC_CACHE_DIR, else
$XDG_CACHE_HOME/gradcalc, else ~/.cache/gradcalc; GRADCALC_NO_CACHE=1 turns it off). The
file's name and contents are keyed by the program as the check sees it (its nodes, constants,
leaves, output and wrt) and by the code that derived it (gradcalc's sources, sympy's version):
anything else is a miss. A file is only ever read as data, checked node by node as a Tape
is made of it, and run as the fresh check runs its tapes, never executed; a corrupt,
foreign or stale one is ignored. It never imports sympy, except to write what a fresh check derived,
nor hashlib and json while keeping is off (2.5 ms of a first check).
"""
from __future__ import annotations

import functools
import os
import sys

import numpy as np

from .evaluator import Tape

FORMAT = 2                      # the layout of a kept derivation; a change makes old ones misses
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
    import hashlib
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
    import hashlib
    import json
    desc = [code_version(), context.output_id, list(context.wrt), context.dtype, nodes]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()


def _path(key):
    d = directory()
    return None if d is None or key is None else os.path.join(d, key + ".json")


def load(context) -> dict | None:
    """{leaf name: (Tape, formula)} kept for this program, or None (a miss: no file, or
    one that is corrupt, foreign or of another version)."""
    if directory() is None:
        return None
    try:
        key = program_key(context)
        path = _path(key)
        if path is None:
            return None
        import json
        with open(path, "rb") as fh:
            data = json.loads(fh.read(1 << 20))
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        kept = {}
        for name in context.wrt:
            if context.graph.leaves[name] not in context.ids:
                continue                          # no path: nothing to keep or read
            entry = data["leaves"][name]
            nodes, inputs, formula = entry["nodes"], entry["inputs"], entry["formula"]
            if not (isinstance(nodes, list) and 0 < len(nodes) <= MAX_NODES
                    and all(isinstance(node, list) and node for node in nodes)
                    and isinstance(inputs, list)
                    and all(isinstance(n, str) and n in context.graph.leaves for n in inputs)
                    and (formula is None or isinstance(formula, str))):
                return None
            kept[name] = (Tape(nodes, inputs), formula)
        return kept
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def read(tape, context) -> list | None:
    """The values a kept derivative reads (its leaves', as float64), or None when one is
    not finite: there the check flags, refines or excuses, which only a fresh derivation
    can."""
    graph, vals = context.graph, context.vals
    got = [np.asarray(vals[graph.leaves[name]], dtype=np.float64) for name in tape.inputs]
    return got if all(np.all(np.isfinite(v)) for v in got) else None


def evaluate(tape, context) -> np.ndarray | None:
    """A kept derivative over every output element, run as the fresh check runs its tapes
    (the Evaluator's numpy calls, argument for argument); None when an input or any value
    is not finite (see read())."""
    values = read(tape, context)
    if values is None:
        return None
    try:
        with np.errstate(all="ignore"):
            d = tape.run(values)
    except (TypeError, ValueError, OverflowError):
        return None             # a malformed node: a miss, never an error of the check
    return None if d is None else np.broadcast_to(np.asarray(d, dtype=np.float64),
                                                  context.out_shape)


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
            tape = None if hit is None else Tape.compile(sp, hit[0], leaf_names)
            if tape is None or len(tape.nodes) > MAX_NODES:
                return
            leaves[name] = {"nodes": tape.nodes, "formula": hit[1],
                            "inputs": [leaf_names[s] for s in tape.inputs]}
        import json
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"format": FORMAT, "key": key, "leaves": leaves}, fh, allow_nan=False)
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError, RecursionError):
        pass
