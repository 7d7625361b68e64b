"""JSON Lines mode (`gradcalc -`): one request object per stdin line, one result per line.

Owns request validation (kind "usage" for anything that is not a well-formed request),
echoing `id` exactly, flushing line by line, and the final exit status (2 if any request
failed, else 1 if any check disagreed, else 0). A bad line never stops the stream.
"""
from __future__ import annotations

import json
import re
import signal
import sys

# signal.pthread_sigmask wraps this one and turns the mask it returns into a set of enum
# members, twice per answer line (about 1.5 us of a small request): the plain ints restore
# the mask as well
from _signal import pthread_sigmask

from .errors import (EXIT_BAD_INPUT, EXIT_DISAGREED, EXIT_INTERNAL, EXIT_OK, GradcalcError,
                     OutputError, as_error, internal_error_json)
from .jsontext import byte_stream, encode, floats_finite
from .settings import JSON, NAMES as SETTING_NAMES, Settings, key_of, kept, validate

FIELDS = {"id", "expr", "program", "vars", "grad", "wrt", "of", "repeat", "check", "dtype",
          "seed", "jacobian", "rtol", "atol", "tangent", "hessian", "hvp", "taylor",
          "steps"}


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs):
    """An object with a key given twice is ambiguous (which "expr"?): refuse it."""
    obj = dict(pairs)
    if len(obj) == len(pairs):       # (C speed: this runs for every object of every line)
        return obj
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {json.dumps(key)[:60]} appears twice")
        obj[key] = value
    return obj


# one decoder for the whole stream (json.loads builds one per call when given hooks)
_decoder = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def parse_request(line: str, defaults, limits):
    try:
        if line.startswith("\ufeff"):      # json.loads refuses a BOM: keep its message
            req = json.loads(line, parse_constant=_reject_constant,
                             object_pairs_hook=_unique_keys)
        else:
            req = _decoder.decode(line)
    except RecursionError:
        raise GradcalcError("usage", "the request is nested too deeply")
    except ValueError as exc:
        raise GradcalcError("usage", f"not valid JSON: {str(exc)[:120]}")
    if not isinstance(req, dict):
        raise GradcalcError("usage", "each line must be a JSON object, e.g. "
                                     '{"expr": "sum(x**2)", "vars": {"x": [1, 2]}}')
    return req


def check_fields(req) -> list:
    """Unknown fields are ignored, so requests written for a later gradcalc (or carrying
    a caller's own bookkeeping) still run; but a misspelt field ("grads", "wtr") must not
    pass unnoticed, so each one is named in the result's "warnings"."""
    if FIELDS.issuperset(req):      # (nearly every request: one C call, no sort)
        return []
    return [f"unknown field {json.dumps(k)[:60]} ignored (fields: {', '.join(sorted(FIELDS))})"
            for k in sorted(k for k in req if k not in FIELDS)]


def _echoable(rid) -> bool:
    """An id is echoed exactly; a number that overflows to infinity (1e400) cannot be."""
    try:
        return floats_finite(rid)
    except RecursionError:
        return False


_ID_PREFIX = re.compile(rb'\s*\{\s*"id"\s*:\s*')


def _leading_id(raw: bytes):
    """(True, id) when an over-long line starts with {"id": <scalar>, so that its error can
    still carry the id; else (False, None)."""
    m = _ID_PREFIX.match(raw)
    if not m:
        return False, None
    try:
        head = raw[m.end(): m.end() + 1000].decode("utf-8", "ignore")
        rid, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(head)
    except (ValueError, RecursionError):
        return False, None
    if isinstance(rid, (dict, list)) or not _echoable(rid):
        return False, None
    return True, rid


def read_lines(stream, max_line: int):
    """Lines of a binary stream, each at most `max_line` bytes: a longer line is yielded as
    (its first bytes, True) and the rest of it is skipped without being held in memory."""
    while True:
        raw = stream.readline(max_line + 1)
        if not raw:
            return
        if len(raw) > max_line and not raw.endswith(b"\n"):
            head = raw[:2000]
            while True:                       # discard the rest of the line
                chunk = stream.readline(1 << 20)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield head, True
        else:
            yield raw, False


def settings_of(req, defaults, limits, resolve, memo: dict):
    """(text, vars, settings) of one request: its fields validated as JSON values, over the
    command line's defaults, then `resolve`d over the text's `#:` lines (as `calculate` takes
    them). `memo` keeps that per text and fields but grad (as `key_of` tells them apart), so
    a stream repeating one kind of request skips both steps."""
    has_expr, has_prog = "expr" in req, "program" in req
    if has_expr == has_prog:
        raise GradcalcError("usage", "a request needs exactly one of \"expr\" or \"program\"")
    text = req["expr"] if has_expr else req["program"]
    if not isinstance(text, str):
        raise GradcalcError("usage", f"\"{'expr' if has_expr else 'program'}\" must be a string")
    vars_ = req.get("vars", {})
    if vars_ is None:
        vars_ = {}
    if not isinstance(vars_, dict):
        raise GradcalcError("usage", "\"vars\" must be an object of name: value")
    # (only the fields the request has: most have one or two of the fifteen)
    given = {k: v for k, v in req.items() if k in _SETTING_FIELDS}
    grad = given.pop("grad", None)
    key = (text, tuple(given), key_of(given.values()))
    return text, vars_, kept(memo, key, grad=grad, make=lambda: resolve(
        text, validate(Settings(**given), limits, JSON).merged_over(defaults)))


_SETTING_FIELDS = frozenset(SETTING_NAMES)


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


def write_whole_line(out, text: bytes):
    """Write one answer line whole or not at all: Ctrl-C or SIGTERM arriving mid-write is
    held until the line is out (a torn line would be invalid JSON for the reader), then
    acts. A full disk is an OutputError; a reader that went away stops the stream."""
    old = pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        out.write(text + b"\n")
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(exc) from None
    finally:
        pthread_sigmask(signal.SIG_SETMASK, old)


def serve(defaults, limits, debug=False, data=None, externs=None, on_answer=None):
    """Answer each request line; `data` (from --data) are default variables of every
    request, which its own "vars" override; `externs` (from --extern, never from a request)
    are callable in every request. `on_answer(ok)` is told of each answer (progress). The
    exit status: 3 after an internal error, else 2 if a request failed, else 1 if a check
    disagreed, else 0."""
    stream = _Stream(defaults, limits, debug, data, externs)
    out = byte_stream(sys.stdout)
    for raw, too_long in read_lines(sys.stdin.buffer, limits.max_line):
        obj = stream.answer(raw, too_long)
        if obj is None:                 # a blank line
            continue
        write_whole_line(out, stream.encoded(obj))
        if on_answer is not None:
            on_answer("error" not in obj)
    if stream.internal:
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if stream.failed else (EXIT_DISAGREED if stream.disagreed else
                                                 EXIT_OK)


class _Stream:
    """What one stream keeps from request to request: its program cache (each distinct
    program parsed and compiled once), the settings resolved per text, and whether any
    request failed, disagreed or met a bug."""

    def __init__(self, defaults, limits, debug, data, externs):
        from .api import calculate, resolve_settings
        from .programs import ProgramCache
        from .result import BULK, check_json_size
        self.calculate, self.bulk, self.json_size = calculate, BULK, check_json_size
        self.defaults, self.limits, self.debug = defaults, limits, debug
        self.data, self.externs = data, externs
        self.cache = ProgramCache()
        self.memo = {}                  # settings_of's resolved settings
        self.resolve = lambda text, s: resolve_settings(text, s, limits, self.cache)
        self.failed = self.disagreed = self.internal = False

    def answer(self, raw: bytes, too_long: bool):
        """The answer object of one line (its "id" first when it has one), None for a blank
        line: a result, or {"error": ...} for anything that went wrong."""
        line = None
        if not too_long:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = None
            # blank means JSON whitespace only: a line of U+3000 or U+00A0 is not silently
            # skipped (str.strip() would), it is answered as not JSON
            if line is not None and not line.strip(" \t\r\n"):
                return None
        rid, has_id = None, False
        try:
            if too_long:
                has_id, rid = _leading_id(raw)
                raise GradcalcError("limit", f"the line is longer than "
                                             f"{self.limits.max_line:,} bytes (8 x --max-text)")
            if line is None:
                raise GradcalcError("usage", "the line is not valid UTF-8")
            req = parse_request(line, self.defaults, self.limits)
            if "id" in req:
                if not _echoable(req["id"]):
                    raise GradcalcError("usage", "\"id\" must be a JSON value that can be "
                                                 "echoed (a number too large for a float is not)")
                has_id, rid = True, req["id"]
            obj = self._result(req)
        except Exception as exc:  # noqa: BLE001 - every failure is one answer line
            obj = self._error(exc)
        return {"id": rid, **obj} if has_id else obj

    def _result(self, req) -> dict:
        """The result object of a well-formed request (its warnings added)."""
        warnings = check_fields(req)
        text, vars_, settings = settings_of(req, self.defaults, self.limits, self.resolve,
                                            self.memo)
        if self.data:
            vars_ = {**self.data, **vars_}
        try:
            result = self.calculate(text, vars_, settings, self.limits, allow_files=False,
                                    cache=self.cache, externs=self.externs)
        except GradcalcError as err:
            raise err.with_source(text) if err.position is not None else err
        # arrays only when one can be large (the test per array costs a few per cent of a
        # small request); a NaN or an infinity: the strict object writes them as strings
        # and says which node made them (same keys, same order)
        bulk = self.json_size(result, self.limits) >= self.bulk
        obj = result.finite_json(arrays=bulk) or result.to_json(arrays=bulk)
        if warnings:
            obj["warnings"] = warnings
        if result.checks and not result.passed:     # (--check none: no checks)
            self.disagreed = True
        return obj

    def _error(self, exc) -> dict:
        err = as_error(exc)
        if err is not None:
            self.failed = True
            return {"error": err.to_json()}
        self.internal = True              # a bug in gradcalc: say so, keep the stream going
        if self.debug:
            import traceback
            traceback.print_exception(exc)
        return {"error": internal_error_json(exc)}

    def encoded(self, obj) -> bytes:
        """The answer's line; an answer that is not JSON (a bug) becomes an internal error's
        line, with the request's id, so the stream stays valid."""
        try:
            return encode(obj)
        except (ValueError, TypeError, RecursionError) as exc:
            self.internal = True
            err = internal_error_json(exc, ": the result is not JSON")
            return encode({"id": obj["id"], "error": err} if "id" in obj else {"error": err})
