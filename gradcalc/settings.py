"""The options that shape one calculation, and their one validation.

`Settings` holds what the user asked for (None: not given), from any of the three front
ends: the command line and a program's `#:` lines (text), a JSON Lines request (JSON
values), the Python API (Python values). `validate` is the only place that checks and
converts them; it names an option the way its source spells it (`--repeat`, `"repeat"`,
`repeat=`). It never reads a VALUE (values.py does) and imports nothing heavy.
"""
from __future__ import annotations

from .errors import GradcalcError, Limits, escape_text

CHECKS = ("symbolic", "numeric", "all", "none")
DTYPES = ("float64", "float32")
# options that may appear in a program's `#:` lines (SPEC section 3)
PROGRAM_OPTIONS = {"--grad": "grad", "-g": "grad", "--wrt": "wrt", "--of": "of",
                   "--repeat": "repeat", "--check": "check", "--rtol": "rtol", "--atol": "atol",
                   "--dtype": "dtype", "--seed": "seed", "--jacobian": "jacobian",
                   "--no-jacobian": "jacobian", "--tangent": "tangent", "-t": "tangent",
                   "--hessian": "hessian", "--hvp": "hvp", "--taylor": "taylor"}
# the options of SPEC 9 that take NAME=VALUE and may be repeated
DIRECTIONS = ("tangent", "hvp")
MAX_TAYLOR = 12     # repeated J·u programs grow with the order


class Settings:
    """Everything that shapes one calculation. None means "not given". (The records of this
    module are plain classes: a dataclass costs 0.3-1 ms to define, at the start of every
    process; settings are compared only through their __dict__.)"""

    def __init__(self, grad=None, wrt=None, of=None, repeat=None, check=None, rtol=None,
                 atol=None, jacobian=None, dtype=None, seed=None, tangent=None, hessian=None,
                 hvp=None, taylor=None, steps=None):
        self.grad, self.wrt, self.of, self.repeat, self.check = grad, wrt, of, repeat, check
        self.rtol, self.atol, self.jacobian = rtol, atol, jacobian
        self.dtype, self.seed = dtype, seed
        self.tangent = tangent      # SPEC 9: {leaf: VALUE} (or "NAME=VALUE" texts)
        self.hessian, self.hvp, self.taylor = hessian, hvp, taylor
        self.steps = steps          # SPEC 9: the backward as the chain rule (not in #: lines)

    def merged_over(self, base: "Settings") -> "Settings":
        """These settings where given, `base` elsewhere (the command line over `#:` lines)."""
        merged = dict(base.__dict__)     # (JSON Lines merges twice per request: no getattr)
        merged.update((k, v) for k, v in self.__dict__.items() if v is not None)
        return _settings(merged)

    def resolved_over(self, base: "Settings") -> "Settings":
        """`merged_over(base)` with the defaults of what neither gives: check, dtype and
        repeat always hold a value afterwards (both validated)."""
        out = self.merged_over(base)
        d = out.__dict__
        d["check"], d["dtype"] = d["check"] or "symbolic", d["dtype"] or "float64"
        if d["repeat"] is None:
            d["repeat"] = 1
        return out


NAMES = tuple(vars(Settings()))


class Source:
    """Where settings came from: how to name an option in a message, and whether a value
    may still be text to convert (`--repeat 3` and `#: --repeat 3` are; JSON's "3" is not)."""

    __slots__ = ("style", "text")

    def __init__(self, style: str, text: bool):
        self.style = style          # "cli", "json" or "api"
        self.text = text

    def name(self, field: str) -> str:
        if self.style == "json":
            return f'"{field}"'
        if self.style == "api":
            return f"{field}="
        return "--" + field


CLI = Source("cli", True)
JSON = Source("json", False)
API = Source("api", False)


def program_settings(text: str) -> Settings:
    """Options from a program's `#:` lines, as text (validate converts them)."""
    s = Settings()
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped.startswith("#:"):
            continue
        import shlex         # only a text with #: lines needs it
        try:
            words = shlex.split(stripped[2:], comments=False)
        except ValueError as exc:
            raise GradcalcError("usage", f"line {lineno}: cannot read the #: options ({exc})")
        i = 0
        while i < len(words):
            word = words[i]
            key, _, inline = word.partition("=")
            if key not in PROGRAM_OPTIONS:
                raise GradcalcError("usage", f"line {lineno}: '{escape_text(word)[:200]}' is not "
                                             "allowed in a #: line (allowed: " + " ".join(
                                                 k for k in PROGRAM_OPTIONS if k.startswith("--"))
                                    + ")")
            name = PROGRAM_OPTIONS[key]
            if name in ("jacobian", "hessian"):
                setattr(s, name, key != "--no-jacobian")
                i += 1
                continue
            if inline:
                val, i = inline, i + 1
            elif i + 1 < len(words):
                val, i = words[i + 1], i + 2
            else:
                raise GradcalcError("usage", f"line {lineno}: {key} needs a value")
            if name in DIRECTIONS:
                val = (getattr(s, name) or []) + [val]
            setattr(s, name, val)
    return s


def validate(s: Settings, limits: Limits, source: Source = API) -> Settings:
    """The given settings checked and converted (numbers from text, `wrt` as a list); what
    was not given stays None. grad stays a VALUE for values.py to read. Only the fields
    given are visited, in `_CHECKERS`' order (which error a request with two bad fields
    gets)."""
    given = [k for k, v in s.__dict__.items() if v is not None and k != "grad"]
    if not given:
        return s                     # nothing to check (most JSON Lines requests)
    out = _settings(s.__dict__)
    for field, check in _CHECKERS:
        v = getattr(s, field)
        if v is not None:
            setattr(out, field, check(v, field, source, limits))
    return out


def _repeat(v, field, source, limits):
    rep = _whole(v, field, source)
    if rep < 1:
        raise GradcalcError("usage", f"{source.name(field)} must be at least 1, got {rep}")
    if rep > limits.max_repeat:
        raise GradcalcError("limit", f"{source.name(field)} {rep} is over the limit of "
                                     f"{limits.max_repeat:,} (--max-repeat)")
    return rep


def _seed(v, field, source, limits):
    seed = _whole(v, field, source)
    if seed < 0:
        raise GradcalcError("usage", f"{source.name(field)} takes a whole number >= 0, got {seed}")
    return seed


def _of(v, field, source, limits):
    if not isinstance(v, str):
        raise GradcalcError("usage", f"{source.name(field)} must be a name")
    return v


def _flag(v, field, source, limits):
    if not isinstance(v, bool):
        raise GradcalcError("usage", f"{source.name(field)} must be true or false")
    return v


def _taylor(v, field, source, limits):
    taylor = _whole(v, field, source)
    if not 1 <= taylor <= MAX_TAYLOR:
        raise GradcalcError("usage", f"{source.name(field)} takes an order from 1 to "
                                     f"{MAX_TAYLOR}, got {taylor}")
    return taylor


# each field's check, in the order they are checked (grad is a VALUE: values.py reads it)
_CHECKERS = (
    ("check", lambda v, field, source, limits: _choice(v, CHECKS, field, source)),
    ("dtype", lambda v, field, source, limits: _choice(v, DTYPES, field, source)),
    ("repeat", _repeat),
    ("seed", _seed),
    ("rtol", lambda v, field, source, limits: _tolerance(v, field, source)),
    ("atol", lambda v, field, source, limits: _tolerance(v, field, source)),
    ("wrt", lambda v, field, source, limits: _names(v, source)),
    ("of", _of),
    ("jacobian", _flag), ("hessian", _flag), ("steps", _flag),
    ("tangent", lambda v, field, source, limits: _directions(v, field, source)),
    ("hvp", lambda v, field, source, limits: _directions(v, field, source)),
    ("taylor", _taylor),
)


def options_key(s: Settings) -> tuple | None:
    """Validated settings as a key (what a calculation decides depends on them, and on the
    grad only through whether one is given), or None when a field holds a mapping (SPEC 9's
    directions), which is not kept. After validation each field has one type, so equal keys
    are equal settings."""
    d = s.__dict__
    if d["tangent"] is not None or d["hvp"] is not None:
        return None
    wrt = d["wrt"]
    return (d["grad"] is None, None if wrt is None else tuple(wrt), d["of"], d["repeat"],
            d["check"], d["rtol"], d["atol"], d["jacobian"], d["dtype"], d["seed"],
            d["hessian"], d["taylor"], d["steps"])


def key_of(values) -> tuple:
    """Option values as (part of) a `kept` key that tells apart whatever validation tells
    apart: each value with its type ("repeat": true is refused where 1 is not, though they
    are equal), a list (wrt=["a"], "wrt": ["a"]) as a tuple of its items with theirs. A
    mapping (SPEC 9's directions) stays unhashable: such settings are never kept."""
    values = tuple(values)
    types = tuple(map(type, values))
    if list not in types:            # (nearly every call: two C calls)
        return values, types
    return tuple((tuple(v), tuple(map(type, v))) if type(v) is list else v
                 for v in values), types


def kept(memo: dict, key, make, grad, most: int = 256) -> Settings:
    """The settings `make()` resolves, kept in `memo` under `key` for the next call of the
    same kind (compute() and JSON Lines repeat one kind of call with other values), and
    handed out as a copy that carries this call's `grad`. A key that cannot be hashed (SPEC
    9's directions: see key_of) is never kept; at `most` keys the memo starts over."""
    try:
        hit = memo.get(key)
    except TypeError:
        key = hit = None
    if hit is None:
        hit = make()
        if key is not None:
            if len(memo) >= most:
                memo.clear()
            memo[key] = hit
    s = object.__new__(Settings)          # a copy of the kept settings, with this grad
    s.__dict__.update(hit.__dict__)
    if grad is not None:
        s.grad = grad
    return s


def _settings(fields: dict) -> Settings:
    """A Settings holding these fields, without a call of its __init__ per field (JSON
    Lines builds several per request)."""
    out = Settings.__new__(Settings)
    out.__dict__.update(fields)
    return out


def _choice(v, choices, field, source):
    if v is None:
        return None
    if v not in choices:
        shown = escape_text(v)[:60] if isinstance(v, str) else type(v).__name__
        raise GradcalcError("usage", f"{source.name(field)} must be one of {', '.join(choices)}, "
                                     f"got {shown!r}")
    return v


def _whole(v, field, source):
    """A whole number: an int (never a bool), or text of ASCII digits from a text source
    (int() would also read "\\uff11\\uff10" and "1_0")."""
    if v is None:
        return None
    if isinstance(v, str) and source.text:
        t = v.strip()
        if t.lstrip("+-").isdigit() and t.isascii() and "_" not in t:
            return int(t)
    elif type(v) is int:
        return v
    elif type(v) is float and source.style == "api" and v.is_integer():
        return int(v)
    shown = escape_text(v)[:60] if isinstance(v, str) else type(v).__name__
    raise GradcalcError("usage", f"{source.name(field)} takes a whole number, got {shown!r}")


def _tolerance(v, field, source):
    if v is None:
        return None
    if isinstance(v, str) and source.text and v.isascii():
        try:
            v = float(v)
        except ValueError:
            pass
    if type(v) not in (int, float) or not v >= 0:
        shown = escape_text(v)[:60] if isinstance(v, str) else v
        raise GradcalcError("usage", f"{source.name(field)} must be a number >= 0, "
                                     f"got {shown!r}")
    return float(v)


def _directions(v, field, source):
    """{leaf name: VALUE} from a dict (JSON, API) or "NAME=VALUE" texts (command line, `#:`
    lines); the VALUEs stay for values.py to read."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)) and source.text:
        pairs = []
        for item in v:
            name, eq, value = str(item).partition("=")
            if not eq:
                raise GradcalcError("usage", f"{source.name(field)} takes NAME=VALUE, got "
                                             f"{escape_text(str(item))[:60]!r}")
            pairs.append((name.strip(), value))
    elif isinstance(v, dict):
        pairs = list(v.items())
    else:
        raise GradcalcError("usage", f"{source.name(field)} must map leaf names to values")
    out = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise GradcalcError("usage", f"{source.name(field)}: {escape_text(str(name))[:60]!r} "
                                         "is not a leaf name")
        if name in out:
            raise GradcalcError("usage", f"{source.name(field)}: '{name}' is given twice")
        out[name] = value
    return out


def _names(v, source):
    if v is None:
        return None
    if isinstance(v, str):
        return [w.strip() for w in v.split(",") if w.strip()]
    if isinstance(v, (list, tuple)) and all(isinstance(w, str) for w in v):
        return list(v)
    raise GradcalcError("usage", f"{source.name('wrt')} must be a list of names")
