"""Turn user VALUEs into arrays: numbers, comma lists, nested lists, constant expressions,
@files (.json, .npy, .npz, .csv/.tsv, anything else as VALUE text) and @- (stdin); and the
readers of those file formats, which the --data reader (datafile.py) shares.

A VALUE is data, never code: JSON goes through `json.loads` and a strict type walk,
anything else through gradcalc's own parser with names restricted to constants. Every
problem is a GradcalcError of kind "value" (or "limit"); nothing here raises anything else.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from .errors import GradcalcError, Limits

# re.ASCII: \d and \s would take Unicode digits and spaces, and float() reads them ("\u0661"
# is 1, "\uff11" is 1): VALUE text is ASCII like the language (SPEC 8)
_NUM = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\Z", re.ASCII)
_CSV_NUM = re.compile(r"\s*[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan|infinity)\s*\Z",
                      re.IGNORECASE | re.ASCII)
_ASCII_SPACE = " \t\r\n\f\v"
# how gradcalc writes non-finite numbers in JSON (SPEC 4): read back exactly these, no others
JSON_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _err(label, message, kind="value"):
    return GradcalcError(kind, f"{label}: {message}" if label else message)


def nested_shape(obj, label=""):
    """Shape of a JSON-style nested list of numbers; raises a value error for ragged arrays,
    booleans, strings (other than "NaN", "Infinity", "-Infinity"), null or anything else.
    Iterative: depth is not a recursion."""
    shape = []
    level = [obj]
    while True:
        is_list = [type(x) is list for x in level]
        if all(is_list):
            lens = {len(x) for x in level}
            if len(lens) > 1:
                raise _err(label, "the array is not rectangular (ragged rows)")
            n = lens.pop() if lens else 0
            shape.append(n)
            if len(shape) > 32:
                raise _err(label, "arrays have at most 32 dimensions")
            if n == 0:
                return tuple(shape)
            level = [y for x in level for y in x]
        elif not any(is_list):
            for x in level:
                if type(x) not in (int, float) and not (type(x) is str and x in JSON_NONFINITE):
                    what = {bool: "a boolean", str: "a string", type(None): "null",
                            dict: "an object"}.get(type(x), type(x).__name__)
                    raise _err(label, f"arrays hold numbers only, found {what}")
            return tuple(shape)
        else:
            raise _err(label, "the array is not rectangular (numbers mixed with lists)")


def from_json(obj, label="", *, limits: Limits, dtype=np.float64, seed=None,
              allow_files=True):
    """A VALUE given as a JSON value: number, nested list, or string in VALUE syntax."""
    if type(obj) in (int, float):
        try:
            return np.asarray(float(obj), dtype=dtype)
        except OverflowError:
            raise _err(label, "number too large")
    if type(obj) is str and obj in JSON_NONFINITE:
        return np.asarray(JSON_NONFINITE[obj], dtype=dtype)
    if type(obj) is list:
        shape = nested_shape(obj, label)
        size = math.prod(shape)
        if size > limits.max_elements:
            raise _err(label, f"{size:,} elements is over the limit of {limits.max_elements:,} "
                              "(--max-elements)", "limit")
        try:      # numpy reads "NaN"/"Infinity" itself; nested_shape let no other string by
            return np.array(obj, dtype=dtype)
        except (OverflowError, ValueError) as exc:
            raise _err(label, f"not an array of numbers ({exc})")
    if type(obj) is str:
        if obj.startswith("@") and not allow_files:
            raise GradcalcError("usage", f"{label}: @files and @- are not allowed inside a JSON "
                                         "Lines request; send the values inline")
        return parse_value(obj, label, dtype=dtype, limits=limits, seed=seed)
    what = {bool: "a boolean", type(None): "null", dict: "an object"}.get(type(obj), type(obj).__name__)
    raise _err(label, f"expected a number, a nested list or a string, got {what}")


def _split_top_commas(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def parse_value(text: str, label: str = "", *, limits: Limits, dtype=np.float64,
                seed=None, stdin=None) -> np.ndarray:
    """A VALUE from the command line (or a string inside JSON)."""
    if len(text) > limits.max_text:
        raise _err(label, f"the value is longer than {limits.max_text:,} characters "
                          "(--max-text)", "limit")
    if text.startswith("@"):
        return read_file(text[1:], label, dtype=dtype, limits=limits, seed=seed, stdin=stdin)
    stripped = text.strip(_ASCII_SPACE)       # not str.strip(): it drops U+00A0, U+3000 ...
    if not stripped:
        raise _err(label, "empty value")
    if _NUM.match(stripped):
        return np.asarray(float(stripped), dtype=dtype)
    parts = stripped.split(",")
    if len(parts) > 1 and all(_NUM.match(p) for p in parts):
        return np.array([float(p) for p in parts], dtype=dtype)
    if stripped[0] == "[":
        try:
            obj = _loads(stripped)
        except (ValueError, RecursionError):
            obj = None
        if obj is not None:
            return from_json(obj, label, dtype=dtype, limits=limits, seed=seed)
    if _split_top_commas(stripped):
        stripped = "[" + stripped + "]"
    return constant_expression(stripped, label, dtype=dtype, limits=limits, seed=seed)


def _loads(text: str):
    """json.loads, strict: no bare NaN or Infinity. json is imported by the first nested
    list or JSON file read: a one-liner of numbers and comma lists goes without (1.5 ms)."""
    import json
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name):
    raise ValueError(name)


def constant_expression(text, label="", *, limits: Limits, dtype=np.float64, seed=None):
    """Evaluate a constant expression of the language (no variables)."""
    from .compile import Compiler
    from .parser import parse_expression
    try:
        node = parse_expression(text, limits.max_depth)
        comp = Compiler(text, {}, dtype=dtype, seed=seed, limits=limits, constants_only=True)
        i = comp.not_none(comp.expr(node))
    except GradcalcError as err:
        if err.kind == "limit":
            raise
        where = ""
        if err.position is not None:
            where = f" at column {err.position + 1}"
        raise _err(label, f"{err.message}{where} in {_short(text)!s}") from None
    return comp.nodes[i].value


def _short(text, n=60):
    from .errors import escape_text
    text = escape_text(text)
    # quoted by hand: repr() would double the backslashes of the escapes
    return "'" + (text if len(text) <= n else text[:n] + "...") + "'"


def read_file(path: str, label="", *, limits: Limits, dtype=np.float64, seed=None, stdin=None):
    """The array in @path: .json, .npy, .npz (one array), .csv/.tsv, or VALUE text."""
    if path == "-":
        if stdin is None:
            raise GradcalcError("usage", f"{label}: @- (standard input) is not available here")
        return parse_value(stdin(), label, dtype=dtype, limits=limits, seed=seed)
    src = Source(path, label)
    ext = src.ext
    if ext == ".npy":
        return _read_npy(src, dtype, limits)
    if ext == ".npz":
        arrays = read_npz(src, dtype, limits)
        if len(arrays) != 1:
            raise src.error(f"{{}} holds {len(arrays)} arrays ({_name_list(arrays)}); an @file "
                            "gives one array (--data binds every array of a file by name)")
        return next(iter(arrays.values()))
    text = read_text(src, limits)
    if ext == ".json":
        return from_json(parse_json(src, text), label, dtype=dtype, limits=limits, seed=seed,
                         allow_files=False)
    if ext in (".csv", ".tsv"):
        table = read_table(src, text, dtype, limits)
        arr = table.values
        if arr.shape[0] == 1 or arr.shape[1] == 1:
            arr = arr.reshape(-1)          # one row or one column: a vector
        return arr
    return parse_value(text, label, dtype=dtype, limits=limits, seed=seed)


class Source:
    """A file named by the user: its path, the label of what it binds, its name as shown in
    messages (escaped, short), its lower-case extension. Creating one checks it exists."""

    def __init__(self, path: str, label: str = "", prefix: str = "@"):
        self.path, self.label = path, label
        self.shown = prefix + _short(path)[1:-1]
        self.ext = os.path.splitext(path)[1].lower()
        try:
            self.size = os.path.getsize(path)
            if os.path.isdir(path):
                raise IsADirectoryError(21, "Is a directory")
        except OSError as exc:
            raise self.cannot(exc) from None
        except ValueError:    # a NUL byte, or a lone surrogate the file system cannot encode
            raise self.error("cannot read {}: not a valid file name") from None

    def error(self, message: str, kind: str = "value") -> GradcalcError:
        """An error about this file: `message` with its first "{}" (always before any echoed
        text, which may hold braces itself) replaced by the file's name."""
        return _err(self.label, message.replace("{}", self.shown, 1), kind)

    def cannot(self, exc: OSError) -> GradcalcError:
        reason = exc.strerror or type(exc).__name__
        return self.error(f"cannot read {{}}: {reason.lower()}")


def _name_list(names, n=5):
    names = [_short(k, 40)[1:-1] for k in names]
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def read_text(src: Source, limits: Limits) -> str:
    """The UTF-8 text of a file (a leading byte-order mark dropped), within the limits: a
    data file (.json, .csv, .tsv) up to the file limit, anything else up to --max-text."""
    if src.ext in (".json", ".csv", ".tsv"):
        # parsing holds each number as a Python object: up to ~16 bytes per character
        cap = min(limits.max_file, limits.max_memory // 16)
        what = f"{cap:,} bytes (--max-memory)"
    else:
        cap, what = limits.max_text, f"{limits.max_text:,} characters (--max-text)"
    if src.size > cap:
        raise src.error(f"{{}} is larger than {what}", "limit")
    try:
        # a bounded read: a device or pipe (/dev/zero) reports size 0 and never ends;
        # utf-8-sig: spreadsheets and Windows editors start UTF-8 files with a BOM
        with open(src.path, "r", encoding="utf-8-sig") as fh:
            text = fh.read(cap + 1)
    except UnicodeDecodeError:
        raise src.error("cannot read {}: it is not UTF-8 text") from None
    except OSError as exc:
        raise src.cannot(exc) from None
    if len(text) > cap:
        raise src.error(f"{{}} is larger than {what}", "limit")
    return text


def parse_json(src: Source, text: str):
    """The JSON value in a file's text (strict: no bare NaN or Infinity)."""
    try:
        return _loads(text)
    except (ValueError, RecursionError) as exc:
        raise src.error(f"{{}} is not valid JSON ({str(exc)[:80]})") from None


def _read_npy(src: Source, dtype, limits):
    """A .npy read into memory (never mapped: a file rewritten while mapped kills the process
    with SIGBUS), its header checked against the limits before the data is read."""
    try:
        with open(src.path, "rb") as fh:
            return read_npy_stream(fh, os.fstat(fh.fileno()).st_size, src.shown, src.label,
                                   dtype, limits)
    except OSError as exc:
        raise src.cannot(exc) from None


def read_npy_stream(fh, total, shown, label, dtype, limits):
    """One array in .npy format from the binary stream `fh` of `total` bytes (a file, or a
    member of an .npz), as an ndarray of `dtype`; `shown` names it in messages."""
    stored, shape, fortran = _npy_header(fh, shown, label)
    nbytes = math.prod(shape) * stored.itemsize
    # before the limits: a header that promises more than the file holds is a broken file
    if total - fh.tell() < nbytes:
        raise _err(label, f"{shown} is shorter than its header says (truncated?)")
    _check_array_header(stored, shape, label, shown, dtype, limits)
    data = fh.read(nbytes)
    if len(data) != nbytes:          # the file shrank while it was read
        raise _err(label, f"{shown} changed while it was read (it is now shorter)")
    arr = np.frombuffer(data, dtype=stored).reshape(shape, order="F" if fortran else "C")
    return np.array(arr, dtype=dtype)


def _npy_header(fh, shown, label):
    """(dtype, shape, fortran_order) from a .npy header, or a value error saying why not."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, stored = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, stored = fmt.read_array_header_2_0(fh)
        else:            # 3.0 only exists for structured dtypes, which are not numbers anyway
            raise _err(label, f"{shown} is a .npy file of version {version[0]}.{version[1]}, "
                              "which gradcalc does not read (save it with numpy.save)")
    except (ValueError, EOFError):   # numpy's words for a bad magic, a short or odd header
        raise _err(label, f"{shown} is not a .npy file (its header is missing or damaged)") \
            from None
    return stored, shape, fortran


def _check_array_header(stored, shape, label, shown, dtype, limits):
    """Limits of an array known by its dtype and shape, before any element is read."""
    if stored.kind not in "biuf":
        what = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects",
                "M": "dates", "m": "time spans"}.get(stored.kind, "records")
        raise _err(label, f"{shown} does not hold a real numeric array (it holds {what})")
    if len(shape) > limits.max_ndim:
        raise _err(label, f"an array with {len(shape)} dimensions is over the limit of "
                          f"{limits.max_ndim}", "limit")
    size = math.prod(shape)
    if size > limits.max_elements:
        raise _err(label, f"{size:,} elements is over the limit of {limits.max_elements:,} "
                          "(--max-elements)", "limit")
    if size * (stored.itemsize + np.dtype(dtype).itemsize) > limits.max_memory:
        raise _err(label, f"{size:,} elements need more than the memory limit of "
                          f"{limits.max_memory:,} bytes (--max-memory)", "limit")


class Table:
    """A CSV/TSV file read by `read_table`: the header's names (None without a header row)
    and the numbers as a 2-D array, one row per data line. (A plain class: a dataclass
    costs 0.3-1 ms to define, at the start of every process.)"""

    __slots__ = ("names", "values")

    def __init__(self, names: list | None, values: np.ndarray):
        self.names, self.values = names, values


def read_table(src: Source, text: str, dtype, limits: Limits) -> Table:
    """The numbers of a CSV or TSV text. The standard `csv` module splits cells (quoted
    cells, spaces after the separator); every cell must then be a number in the strict
    grammar (inf and nan allowed). The separator is a tab for .tsv; for .csv it is decided
    by the first line that is not blank or a comment: ';' if it holds one (the spreadsheet
    export of locales with a decimal comma), else ','. A first line of names only (no cell a
    number) is the header. Blank lines and lines starting with '#' are skipped."""
    import csv               # a run without a CSV file does not load it
    sep = "\t" if src.ext == ".tsv" else _csv_separator(text)
    # a comment is blanked, not dropped, so that line numbers in messages stay right
    lines = ("\n" if ln.lstrip(_ASCII_SPACE).startswith("#") else ln for ln in _lines(text))
    reader = csv.reader(lines, delimiter=sep, skipinitialspace=True, strict=True)
    names, rows, width = None, [], None
    try:
        for row in reader:
            if not any(c.strip(_ASCII_SPACE) for c in row):
                continue
            if width is None:
                width = len(row)
                if not any(_CSV_NUM.match(c) for c in row):
                    names = [c.strip(_ASCII_SPACE) for c in row]
                    continue
            rows.append(_csv_row(src, row, reader.line_num, width, sep, first=not rows))
            if len(rows) * width > limits.max_elements:
                raise src.error(f"{{}} holds more than {limits.max_elements:,} numbers "
                                "(--max-elements)", "limit")
    except csv.Error as exc:       # bad quoting, a NUL byte: csv's own words
        raise src.error(f"{{}} line {reader.line_num}: cannot split it into cells ({exc}; "
                        "an unclosed quote?)") from None
    if not rows:
        raise src.error("{} holds no numbers" + (" (only a header row)" if names else ""))
    return Table(names, np.array(rows, dtype=dtype))


def _lines(text: str):
    """The lines of `text` with their endings, one at a time (io.StringIO would hold a copy
    of the whole text at 4 bytes a character)."""
    start, n = 0, len(text)
    while start < n:
        end = text.find("\n", start)
        end = n if end < 0 else end + 1
        yield text[start:end]
        start = end


def _csv_separator(text: str) -> str:
    for line in text.splitlines():
        line = line.strip(_ASCII_SPACE)
        if line and not line.startswith("#"):
            return ";" if ";" in line else ","
    return ","


def _csv_row(src, row, line, width, sep, first):
    if len(row) != width:
        end = " (a separator at the end of the line?)" if len(row) > width and \
            not row[-1].strip(_ASCII_SPACE) else ""
        raise src.error(f"{{}} line {line}: {len(row)} cell{'s' if len(row) != 1 else ''}, "
                        f"where the first row has {width}{end}")
    for col, cell in enumerate(row, 1):
        if not _CSV_NUM.match(cell):
            raise src.error(f"{{}} line {line}, column {col}: {_cell_problem(cell, sep, first)}")
    return [float(c) for c in row]


def _cell_problem(cell, sep, first):
    if not cell.strip(_ASCII_SPACE):
        return "the cell is empty"
    why = f"{_short(cell, 40)} is not a number"
    if sep == ";" and _CSV_NUM.match(cell.replace(",", ".", 1)):
        why += " (gradcalc reads '.' as the decimal point, not ',')"
    elif first:
        why += " (a header row holds names only, a data row numbers only)"
    return why


def read_npz(src: Source, dtype, limits: Limits) -> dict:
    """The arrays of an .npz archive by name, each read like a .npy (in memory, its header
    checked against the limits first); the archive's declared sizes are checked together
    against --max-memory before anything is decompressed."""
    import zipfile           # with pathlib and urllib.parse: 4 ms a run without .npz skips
    import zlib
    try:
        with zipfile.ZipFile(src.path) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > limits.max_memory:
                raise src.error(f"{{}} holds {total:,} bytes of arrays, over the memory limit "
                                f"of {limits.max_memory:,} bytes (--max-memory)", "limit")
            arrays = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise src.error(f"{{}} holds {_short(info.filename, 40)}, which is not an "
                                    "array (an .npz holds .npy members)")
                name = info.filename[:-4]
                with zf.open(info) as fh:
                    arrays[name] = read_npy_stream(fh, info.file_size,
                                                   f"{src.shown}[{_short(name, 40)}]",
                                                   src.label, dtype, limits)
    except OSError as exc:
        raise src.cannot(exc) from None
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise src.error("{} is not an .npz file (not a zip archive, or a damaged one)") from None
    except (NotImplementedError, RuntimeError):     # compression or encryption zipfile lacks
        raise src.error("{} uses a zip feature gradcalc does not read (save it with "
                        "numpy.savez)") from None
    if not arrays:
        raise src.error("{} holds no arrays")
    return arrays
