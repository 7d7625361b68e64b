"""Turn expression or program text into tokens with positions.

The lexer owns the character level of the language: ASCII only outside comments, numbers,
names, operators, statement separators. It never interprets text; it only classifies it.
"""
from __future__ import annotations

import re
import string
from typing import NamedTuple

from .errors import GradcalcError, clip


class Token(NamedTuple):
    kind: str   # "num", "name", "op", "sep" (newline or ';'), "eof"
    text: str
    pos: int


# The text cut into pieces by one regex call, in C: a number (with the letter that makes it
# invalid, "2x"), a name, a two-character operator, a run of spaces, a comment, or any one
# character. The pieces cover the text end to end, so each one's position is the sum of the
# lengths before it, and a Python loop only classifies each piece by its first character
# (a loop over characters cost about 0.75 µs a token, a third of a 10^5-statement program's
# parse). re.ASCII: \d would otherwise take fullwidth and other Unicode digits ("1\uff11").
_PIECE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z_]?|[A-Za-z_][A-Za-z0-9_]*"
                    r"|\*\*|<=|>=|==|!=|[ \t\r\f\v]+|#[^\n]*|.", re.ASCII | re.DOTALL)
_FIRST = {**dict.fromkeys(string.digits, "num"),
          **dict.fromkeys(string.ascii_letters + "_", "name"),
          **dict.fromkeys("+-*/@^,=:<>", "op"),
          **dict.fromkeys(" \t\r\f\v#", "skip"),
          "(": "open", "[": "open", ")": "close", "]": "close",
          "\n": "newline", ";": "sep", ".": "dot", "!": "bang"}
_LETTERS = frozenset(string.ascii_letters + "_")
_new = tuple.__new__      # a Token without the keyword-argument call of Token(...)


def _describe(ch: str) -> str:
    import unicodedata
    name = unicodedata.name(ch, None)
    code = f"U+{ord(ch):04X}"
    return f"{code} {name}" if name else code


def tokenize(text: str) -> list[Token]:
    """Tokens of `text`, ending with an "eof" token. Newlines inside brackets are spaces."""
    tokens: list[Token] = []
    append = tokens.append
    depth = pos = 0
    for piece in _PIECE.findall(text):
        kind = _FIRST.get(piece[0])
        if kind == "name" or kind == "op":
            append(_new(Token, (kind, piece, pos)))
        elif kind == "num":
            if piece[-1] in _LETTERS:
                raise GradcalcError("syntax", f"invalid number '{clip(piece)}'", pos)
            append(_new(Token, ("num", piece, pos)))
        elif kind == "open" or kind == "close":
            depth = depth + 1 if kind == "open" else max(0, depth - 1)
            append(_new(Token, ("op", piece, pos)))
        elif kind == "newline":
            if depth == 0:
                append(_new(Token, ("sep", piece, pos)))
        elif kind != "skip":
            append(_odd(kind, piece, pos))
        pos += len(piece)
    append(Token("eof", "", pos))
    return tokens


def _odd(kind, piece: str, pos: int) -> Token:
    """The rarer pieces: ';', '.' (a number when digits follow it), '!=', or an error."""
    if kind == "sep":
        return Token("sep", piece, pos)
    if kind == "dot":
        if piece == ".":
            return Token("op", piece, pos)
        if piece[-1] in _LETTERS:
            raise GradcalcError("syntax", f"invalid number '{clip(piece)}'", pos)
        return Token("num", piece, pos)
    if piece == "!=":
        return Token("op", piece, pos)
    if not piece.isascii():
        raise GradcalcError(
            "syntax", f"non-ASCII character {_describe(piece)}: gradcalc reads ASCII only", pos)
    raise GradcalcError("syntax", f"unexpected character {piece!r}", pos)
