"""Turn expression or program text into tokens with positions.

The lexer owns the character level of the language: ASCII only outside comments, numbers,
names, operators, statement separators. It never interprets text; it only classifies it.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from .errors import GradcalcError, clip


class Token(NamedTuple):
    kind: str   # "num", "name", "op", "sep" (newline or ';'), "eof"
    text: str
    pos: int


# re.ASCII: \d would otherwise take fullwidth and other Unicode digits ("1\uff11" read as 11)
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS2 = ("**", "<=", ">=", "==", "!=")
_OPS1 = "+-*/@^()[],=;:.<>"
_SPACE = " \t\r\f\v"


def _describe(ch: str) -> str:
    import unicodedata
    name = unicodedata.name(ch, None)
    code = f"U+{ord(ch):04X}"
    return f"{code} {name}" if name else code


def tokenize(text: str) -> list[Token]:
    """Tokens of `text`, ending with an "eof" token. Newlines inside brackets are spaces."""
    tokens: list[Token] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
            continue
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == "\n":
            if depth == 0:
                tokens.append(Token("sep", "\n", i))
            i += 1
            continue
        if "0" <= ch <= "9" or (ch == "." and i + 1 < n and "0" <= text[i + 1] <= "9"):
            m = _NUMBER.match(text, i)
            end = m.end()
            if end < n and (text[end].isalpha() or text[end] == "_") and text[end].isascii():
                raise GradcalcError("syntax", f"invalid number '{clip(text[i:end + 1])}'", i)
            tokens.append(Token("num", m.group(), i))
            i = end
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _NAME.match(text, i)
            tokens.append(Token("name", m.group(), i))
            i = m.end()
            continue
        if text[i:i + 2] in _OPS2:
            tokens.append(Token("op", text[i:i + 2], i))
            i += 2
            continue
        if ch in _OPS1:
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth = max(0, depth - 1)
            tokens.append(Token("sep" if ch == ";" else "op", ch, i))
            i += 1
            continue
        if not ch.isascii():
            raise GradcalcError(
                "syntax", f"non-ASCII character {_describe(ch)}: gradcalc reads ASCII only", i)
        raise GradcalcError("syntax", f"unexpected character {ch!r}", i)
    tokens.append(Token("eof", "", n))
    return tokens
