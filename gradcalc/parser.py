"""A Pratt parser from tokens to a small AST of statements and expressions.

The parser owns the grammar of SPEC sections 2 and 3: binding powers, calls with keyword
arguments, indexing and slicing, `.T`, array literals, assignments and function definitions.
It never evaluates anything and never recurses per nesting level: nesting is an explicit
stack of frames bounded by --max-depth alone, and flat chains such as `a+a+...+a` are a loop.
"""
from __future__ import annotations

from .errors import GradcalcError, clip
from .lexer import Token, tokenize


class Node:
    """An AST node. Three slots hold its parts, read through the names of its kind:

    | kind    | a            | b                     | c                          |
    | num     | text         |                       |                            |
    | name    | name         |                       |                            |
    | unary   | op           | operand               |                            |
    | binary  | op           | left                  | right                      |
    | call    | name         | args                  | kwargs: [(name, node, pos)]|
    | index   | target       | items                 |                            |
    | slice   | start        | stop                  | step                       |
    | attr    | target       | attribute             |                            |
    | array   | items        |                       |                            |
    | assign  | name         | value                 |                            |
    | funcdef | name         | params                | body                       |
    | expr    | value        |                       |                            |
    """

    __slots__ = ("kind", "pos", "a", "b", "c")

    def __init__(self, kind, pos, a=None, b=None, c=None):
        self.kind, self.pos, self.a, self.b, self.c = kind, pos, a, b, c

    def __repr__(self):
        return sexpr(self)

    # the parts by name (see the table above)
    text = property(lambda self: self.a)
    name = property(lambda self: self.a)
    op = property(lambda self: self.a)
    operand = property(lambda self: self.b)
    left = property(lambda self: self.b)
    right = property(lambda self: self.c)
    args = property(lambda self: self.b)
    kwargs = property(lambda self: self.c)
    target = property(lambda self: self.a)
    items = property(lambda self: self.a if self.kind == "array" else self.b)
    start = property(lambda self: self.a)
    stop = property(lambda self: self.b)
    step = property(lambda self: self.c)
    params = property(lambda self: self.b)
    body = property(lambda self: self.c)
    value = property(lambda self: self.b if self.kind == "assign" else self.a)


def sexpr(node) -> str:
    """S-expression of a node, for golden tests: `2**3**2` -> `(** 2 (** 3 2))`. A loop over
    an explicit stack, like the parser, so any nesting the parser accepts can be shown."""
    out: list[str] = []
    work: list = [node]
    while work:
        item = work.pop()
        if isinstance(item, str):
            out.append(item)
        elif item is None:
            out.append("_")
        else:
            work.extend(reversed(_sexpr_parts(item)))
    return "".join(out)


def _sexpr_parts(node) -> list:
    """The text pieces (str) and child nodes (Node or None) of one node's S-expression."""
    k = node.kind
    if k in ("num", "name"):
        return [node.a]
    if k == "unary":
        return [f"({node.a} ", node.b, ")"]
    if k == "binary":
        return [f"({node.a} ", node.b, " ", node.c, ")"]
    if k == "call":
        parts = [f"({node.a}"]
        for x in node.b:
            parts += [" ", x]
        for n, v, _ in node.c:
            parts += [f" {n}=", v]
        return parts + [")"]
    if k == "index":
        parts = ["([] ", node.a]
        for x in node.b:
            parts += [" ", x]
        return parts + [")"]
    if k == "slice":
        return ["(: ", node.a, " ", node.b, " ", node.c, ")"]
    if k == "attr":
        return ["(. ", node.a, f" {node.b})"]
    if k == "array":
        parts = ["["]
        for i, x in enumerate(node.a):
            parts += [" " if i else "", x]
        return parts + ["]"]
    if k == "assign":
        return [f"(= {node.a} ", node.b, ")"]
    if k == "funcdef":
        return [f"(def {node.a} ({' '.join(node.b)}) ", node.c, ")"]
    if k == "expr":
        return [node.a]
    raise AssertionError(k)


# Binding powers: comparisons < + - < * / @ < unary - + < ** ^ < postfix (call, index, .T)
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
_INFIX = {"+": 10, "-": 10, "*": 20, "/": 20, "@": 20, "**": 40, "^": 40,
          **{c: 5 for c in _COMPARISONS}}
_RIGHT = {"**", "^"}
_PREFIX_BP = 30
_POSTFIX_BP = 50


def _what(tok: Token) -> str:
    if tok.kind == "eof":
        return "end of input"
    if tok.kind == "sep":
        return "end of statement" if tok.text == "\n" else "';'"
    return f"'{clip(tok.text)}'"


class Frame:
    """What to do with a sub-expression once it is parsed: finish a unary or binary operator,
    close a parenthesis, or add an item to an array literal, a call or an index. `tok` is the
    token that opened it and `rbp` the binding power to resume with."""

    __slots__ = ("kind", "tok", "rbp", "left", "items", "kwargs", "keyword", "seen", "parts",
                 "k", "start")

    def __init__(self, kind, tok, rbp, left=None, items=None, kwargs=None):
        self.kind, self.tok, self.rbp, self.left = kind, tok, rbp, left
        self.items, self.kwargs = items, kwargs
        self.keyword = self.parts = self.start = None
        self.seen = None           # keyword names of a call so far (a set from the first)
        self.k = 0


class Parser:
    def __init__(self, text: str, max_depth: int):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.max_depth = max_depth

    # -- token helpers -------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind in ("op", "sep") and tok.text == text

    def expect(self, text: str, context: str = "") -> Token:
        tok = self.peek()
        if tok.kind in ("op", "sep") and tok.text == text:
            return self.next()
        where = f" {context}" if context else ""
        raise GradcalcError("syntax", f"expected '{text}'{where} but found {_what(tok)}", tok.pos)

    # -- expressions -----------------------------------------------------------------
    # A Pratt parser whose recursion is an explicit stack: where a textbook Pratt parser calls
    # itself for an operand, an argument or a bracketed item, this one pushes a Frame saying
    # what to do with the sub-expression once it is parsed, so the nesting depth is bounded by
    # --max-depth alone and never by Python's recursion limit. `expr` alternates two states:
    # `left is None` (a prefix is needed) and `left` set (extend it with infix and postfix
    # operators binding tighter than `rbp`, or hand it to the innermost frame).
    def expr(self, rbp: int = 0) -> Node:
        frames: list[Frame] = []
        self.check_depth(frames)
        tokens = self.tokens
        left = None
        while True:
            tok = tokens[self.i]
            if left is None:
                if tok.kind == "name" or tok.kind == "num":    # prefix()'s commonest, inline
                    self.i += 1
                    left = Node(tok.kind, tok.pos, tok.text)
                else:
                    left, rbp = self.prefix(frames, rbp)
                continue
            t = tok.text if tok.kind == "op" else None
            bp = _INFIX.get(t, 0)
            if bp > rbp:
                self.i += 1
                self.push(frames, Frame("binary", tok, rbp, left=left))
                left, rbp = None, bp - 1 if t in _RIGHT else bp
            elif t is not None and t in "([." and _POSTFIX_BP > rbp:
                left, rbp = self.postfix(frames, left, rbp)
            elif not frames:
                return left
            else:
                left, rbp = self.resume(frames, frames.pop(), left)

    def check_depth(self, frames):
        """A new sub-expression starts at the next token: one level deeper than `frames`."""
        if len(frames) + 1 > self.max_depth:
            raise GradcalcError(
                "limit", f"nesting depth exceeds the limit of {self.max_depth} (--max-depth)",
                self.peek().pos)

    def push(self, frames, frame):
        frames.append(frame)
        self.check_depth(frames)

    def need(self, frames, frame):
        """Wait for a bracketed sub-expression (binding power 0) to finish `frame`."""
        self.push(frames, frame)
        return None, 0

    def prefix(self, frames, rbp):
        tok = self.next()
        if tok.kind == "num":
            return Node("num", tok.pos, tok.text), rbp
        if tok.kind == "name":
            return Node("name", tok.pos, tok.text), rbp
        if tok.kind == "op":
            if tok.text in "+-":
                self.push(frames, Frame("unary", tok, rbp))
                return None, _PREFIX_BP
            if tok.text == "(":
                return self.need(frames, Frame("paren", tok, rbp))
            if tok.text == "[":
                frame = Frame("array", tok, rbp, items=[])
                if not self.at("]"):
                    return self.need(frames, frame)
                return self.close_array(frame)
        raise GradcalcError("syntax", f"expected an expression but found {_what(tok)}", tok.pos)

    def postfix(self, frames, left, rbp):
        tok = self.next()
        if tok.text == "(":
            if left.kind != "name":
                raise GradcalcError("syntax", "only a function name can be called", tok.pos)
            frame = Frame("call", tok, rbp, left=left, items=[], kwargs=[])
            if not self.at(")"):
                return self.call_arg(frames, frame)
            return self.close_call(frame)
        if tok.text == "[":
            return self.index_item(frames, Frame("index", tok, rbp, left=left, items=[]))
        # "."
        name = self.peek()
        if name.kind == "name" and name.text == "T":
            self.next()
            return Node("attr", tok.pos, left, "T"), rbp
        raise GradcalcError("syntax", "the only attribute is '.T' (transpose)",
                            name.pos if name.kind != "eof" else tok.pos)

    def resume(self, frames, f, sub):
        """Finish or continue frame `f` now that its sub-expression `sub` is parsed."""
        k = f.kind
        if k == "unary":
            return Node("unary", f.tok.pos, f.tok.text, sub), f.rbp
        if k == "binary":
            op = "**" if f.tok.text == "^" else f.tok.text
            nxt = self.peek()
            if op in _COMPARISONS and nxt.kind == "op" and nxt.text in _COMPARISONS:
                # Python would read a < b < c as (a < b) and (b < c); torch tensors refuse it
                raise GradcalcError("syntax", "comparisons do not chain: write "
                                              "(a < b) * (b < c) for both", nxt.pos)
            return Node("binary", f.tok.pos, op, f.left, sub), f.rbp
        if k == "paren":
            self.expect(")", "to close '(' at column %d" % (f.tok.pos + 1))
            return sub, f.rbp
        if k == "array":
            f.items.append(sub)
            if self.at(","):
                self.next()
                if not self.at("]"):
                    return self.need(frames, f)
            return self.close_array(f)
        if k == "call":
            if f.keyword is None:
                f.items.append(sub)
            else:
                f.kwargs.append((f.keyword.text, sub, f.keyword.pos))
            if self.at(","):
                self.next()
                if not self.at(")"):
                    return self.call_arg(frames, f)
            return self.close_call(f)
        # an index item: its first part, or a slice bound
        if f.parts is None:
            if not self.at(":"):
                return self.index_done(frames, f, sub)
            f.parts, f.k = [sub, None, None], 0
        else:
            f.parts[f.k] = sub
        return self.slice_parts(frames, f)

    def close_array(self, f):
        self.expect("]", "to close '[' at column %d" % (f.tok.pos + 1))
        return Node("array", f.tok.pos, f.items), f.rbp

    def call_arg(self, frames, f):
        """Start the next argument of a call: `name=` before it makes it a keyword."""
        tok = self.peek()
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if tok.kind == "name" and nxt is not None and nxt.kind == "op" and nxt.text == "=":
            self.next()
            self.next()
            if f.seen is None:
                f.seen = set()
            elif tok.text in f.seen:
                raise GradcalcError("call", f"keyword argument '{clip(tok.text)}' given twice",
                                    tok.pos)
            f.seen.add(tok.text)
            f.keyword = tok
        else:
            if f.kwargs:
                raise GradcalcError(
                    "syntax", "a positional argument cannot follow a keyword argument", tok.pos)
            f.keyword = None
        return self.need(frames, f)

    def close_call(self, f):
        self.expect(")", "to close '(' at column %d" % (f.tok.pos + 1))
        return Node("call", f.left.pos, f.left.a, f.items, f.kwargs), f.rbp

    def index_item(self, frames, f):
        """Start the next item of `x[...]`: an index, or a slice `a:b:c` (parts optional)."""
        f.start = self.peek().pos
        f.parts = None
        if not self.at(":"):
            return self.need(frames, f)
        f.parts, f.k = [None, None, None], 0
        return self.slice_parts(frames, f)

    def slice_parts(self, frames, f):
        while self.at(":") and f.k < 2:
            self.next()
            f.k += 1
            if not (self.at(":") or self.at(",") or self.at("]")):
                return self.need(frames, f)
        return self.index_done(frames, f, Node("slice", f.start, *f.parts))

    def index_done(self, frames, f, item):
        f.items.append(item)
        if self.at(","):
            self.next()
            return self.index_item(frames, f)
        self.expect("]", "to close '[' at column %d" % (f.tok.pos + 1))
        return Node("index", f.tok.pos, f.left, f.items), f.rbp

    # -- statements -----------------------------------------------------------------
    def statement(self) -> Node:
        start = self.peek()
        e = self.expr()
        if self.at("="):
            eq = self.next()
            if e.kind == "name":
                return Node("assign", e.pos, e.a, self.expr())
            if e.kind == "call" and not e.c and all(a.kind == "name" for a in e.b):
                params = [a.a for a in e.b]
                if len(set(params)) != len(params):
                    raise GradcalcError("syntax", f"repeated parameter name in {clip(e.a)}(...)",
                                        e.pos)
                return Node("funcdef", e.pos, e.a, params, self.expr())
            raise GradcalcError(
                "syntax", "can only assign to a name or define a function f(x, y) = ...", eq.pos)
        return Node("expr", start.pos, e)

    def program(self) -> list[Node]:
        stmts = []
        while True:
            while self.peek().kind == "sep":
                self.next()
            if self.peek().kind == "eof":
                break
            stmts.append(self.statement())
            tok = self.peek()
            if tok.kind not in ("sep", "eof"):
                msg = f"unexpected {_what(tok)}"
                if tok.kind == "op" and tok.text in ")]":
                    msg = f"unmatched '{tok.text}'"
                raise GradcalcError("syntax", msg, tok.pos)
        if not stmts:
            raise GradcalcError("syntax", "the program has no statement", len(self.text))
        return stmts


def parse_program(text: str, max_depth: int) -> list[Node]:
    """Statements of a program or one-liner."""
    try:
        return Parser(text, max_depth).program()
    except GradcalcError as err:
        raise err.with_source(text)


def parse_expression(text: str, max_depth: int) -> Node:
    """A single expression (used for VALUEs)."""
    p = Parser(text, max_depth)
    try:
        while p.peek().kind == "sep" and p.peek().text == "\n":
            p.next()
        e = p.expr()
        while p.peek().kind == "sep" and p.peek().text == "\n":
            p.next()
        tok = p.peek()
        if tok.kind != "eof":
            raise GradcalcError("syntax", f"unexpected {_what(tok)}", tok.pos)
        return e
    except GradcalcError as err:
        raise err.with_source(text)
