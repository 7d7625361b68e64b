"""Read a `--data FILE` (SPEC 12): every named array in the file, as {name: ndarray}.

It owns what a data file may be — a CSV or TSV with a header row (one array per column), a
JSON object of arrays, an .npz — and that every name is one the language can use. The
formats themselves are read by values.py's readers, under the same limits as an @file; this
module never binds anything to a program, nor reads the command line.
"""
from __future__ import annotations

import re

import numpy as np

from .errors import GradcalcError, Limits, clip
from .values import JSON_NONFINITE, Source, from_json, parse_json, read_npz, read_table, read_text

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LABEL = "--data"


def read_data(path: str, *, limits: Limits, dtype=np.float64) -> dict:
    """The arrays of the data file at `path` by name, each an ndarray of `dtype`, in the
    file's order. Every problem is a GradcalcError of kind "value" (or "limit")."""
    src = Source(path, LABEL, prefix="")
    if src.ext == ".npz":
        arrays = read_npz(src, dtype, limits)
    elif src.ext in (".csv", ".tsv"):
        arrays = _columns(src, read_table(src, read_text(src, limits), dtype, limits))
    elif src.ext == ".json":
        arrays = _json_arrays(src, parse_json(src, read_text(src, limits)), dtype, limits)
    else:
        raise src.error(f"{{}}: a data file is .csv, .tsv, .json or .npz, not "
                        f"'{clip(src.ext, 40)}'")
    for name in arrays:
        if not _NAME.match(name):
            raise src.error(f"{{}} names an array '{clip(name, 40)}', which is not a name "
                            "gradcalc can use (letters, digits and _, not starting with a digit)")
    return arrays


def _columns(src: Source, table) -> dict:
    if table.names is None:
        raise src.error("{} has no header row: its first line must name the columns")
    seen = set()
    for name in table.names:
        if name in seen:
            raise src.error(f"{{}} names two columns '{clip(name, 40)}'")
        seen.add(name)
    # a copy per column: a view would keep the whole table alive and be non-contiguous
    return {name: table.values[:, j].copy() for j, name in enumerate(table.names)}


def _json_arrays(src: Source, obj, dtype, limits: Limits) -> dict:
    if type(obj) is not dict:
        raise src.error("{} must hold a JSON object of arrays, such as {\"x\": [1, 2]}")
    if not obj:
        raise src.error("{} holds no arrays")
    arrays = {}
    for name, value in obj.items():
        label = f"{LABEL}: {src.shown} '{clip(name, 40)}'"
        # data, not VALUE text: no constant expressions (randn would be unseeded), no @files
        if type(value) is str and value not in JSON_NONFINITE:
            raise GradcalcError("value", f"{label} is a string; a data file holds numbers "
                                         "and arrays of numbers")
        arrays[name] = from_json(value, label, dtype=dtype, limits=limits, allow_files=False)
    return arrays
