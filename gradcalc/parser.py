"""A Pratt parser from tokens to a small AST of statements and expressions.

The parser owns the grammar of SPEC sections 2 and 3: binding powers, calls with keyword
arguments, indexing and slicing, `.T`, array literals, assignments and function definitions.
It never evaluates anything and recursion is bounded by the nesting-depth limit; long flat
chains such as `a+a+...+a` are built by a loop, not by recursion.
"""
from __future__ import annotations

from .errors import GradcalcError, clip
from .lexer import Token, tokenize


class Node:
    """An AST node: `kind` is one of num, name, unary, binary, call, index, attr, array,
    slice; statements are assign, funcdef, expr."""

    __slots__ = ("kind", "pos", "a", "b", "c")

    def __init__(self, kind, pos, a=None, b=None, c=None):
        self.kind, self.pos, self.a, self.b, self.c = kind, pos, a, b, c

    def __repr__(self):
        return sexpr(self)


def sexpr(node) -> str:
    """S-expression of a node, for golden tests: `2**3**2` -> `(** 2 (** 3 2))`."""
    if node is None:
        return "_"
    k = node.kind
    if k == "num":
        return node.a
    if k == "name":
        return node.a
    if k == "unary":
        return f"({node.a} {sexpr(node.b)})"
    if k == "binary":
        return f"({node.a} {sexpr(node.b)} {sexpr(node.c)})"
    if k == "call":
        parts = [sexpr(x) for x in node.b] + [f"{n}={sexpr(v)}" for n, v, _ in node.c]
        return f"({node.a}{''.join(' ' + p for p in parts)})"
    if k == "index":
        return f"([] {sexpr(node.a)}{''.join(' ' + sexpr(x) for x in node.b)})"
    if k == "slice":
        return f"(: {sexpr(node.a)} {sexpr(node.b)} {sexpr(node.c)})"
    if k == "attr":
        return f"(. {sexpr(node.a)} {node.b})"
    if k == "array":
        return f"[{' '.join(sexpr(x) for x in node.a)}]"
    if k == "assign":
        return f"(= {node.a} {sexpr(node.b)})"
    if k == "funcdef":
        return f"(def {node.a} ({' '.join(node.b)}) {sexpr(node.c)})"
    if k == "expr":
        return sexpr(node.a)
    raise AssertionError(k)


# Binding powers: + - < * / @ < unary - + < ** ^ < postfix (call, index, .T)
_INFIX = {"+": 10, "-": 10, "*": 20, "/": 20, "@": 20, "**": 40, "^": 40}
_RIGHT = {"**", "^"}
_PREFIX_BP = 30
_POSTFIX_BP = 50


def _what(tok: Token) -> str:
    if tok.kind == "eof":
        return "end of input"
    if tok.kind == "sep":
        return "end of statement" if tok.text == "\n" else "';'"
    return f"'{clip(tok.text)}'"


class Parser:
    def __init__(self, text: str, max_depth: int = 200):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
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

    def enter(self, pos: int):
        self.depth += 1
        if self.depth > self.max_depth:
            raise GradcalcError(
                "limit", f"nesting depth exceeds the limit of {self.max_depth} (--max-depth)", pos)

    # -- expressions -----------------------------------------------------------------
    def expr(self, rbp: int = 0) -> Node:
        tok = self.peek()
        self.enter(tok.pos)
        try:
            left = self.prefix()
            while True:
                tok = self.peek()
                if tok.kind != "op":
                    break
                t = tok.text
                if t in _INFIX:
                    lbp = _INFIX[t]
                    if lbp <= rbp:
                        break
                    self.next()
                    right = self.expr(lbp - 1 if t in _RIGHT else lbp)
                    left = Node("binary", tok.pos, "**" if t == "^" else t, left, right)
                elif t in "([." and _POSTFIX_BP > rbp:
                    left = self.postfix(left)
                else:
                    break
            return left
        finally:
            self.depth -= 1

    def prefix(self) -> Node:
        tok = self.next()
        if tok.kind == "num":
            return Node("num", tok.pos, tok.text)
        if tok.kind == "name":
            return Node("name", tok.pos, tok.text)
        if tok.kind == "op":
            if tok.text in "+-":
                operand = self.expr(_PREFIX_BP)
                return Node("unary", tok.pos, tok.text, operand)
            if tok.text == "(":
                inner = self.expr()
                self.expect(")", "to close '(' at column %d" % (tok.pos + 1))
                return inner
            if tok.text == "[":
                return self.array(tok)
        raise GradcalcError("syntax", f"expected an expression but found {_what(tok)}", tok.pos)

    def array(self, open_tok: Token) -> Node:
        items = []
        if not self.at("]"):
            while True:
                items.append(self.expr())
                if self.at(","):
                    self.next()
                    if self.at("]"):
                        break
                    continue
                break
        self.expect("]", "to close '[' at column %d" % (open_tok.pos + 1))
        return Node("array", open_tok.pos, items)

    def postfix(self, left: Node) -> Node:
        tok = self.next()
        if tok.text == "(":
            if left.kind != "name":
                raise GradcalcError("syntax", "only a function name can be called", tok.pos)
            args, kwargs = self.call_args(tok)
            return Node("call", left.pos, left.a, args, kwargs)
        if tok.text == "[":
            items = []
            while True:
                items.append(self.index_item())
                if self.at(","):
                    self.next()
                    continue
                break
            self.expect("]", "to close '[' at column %d" % (tok.pos + 1))
            return Node("index", tok.pos, left, items)
        # "."
        name = self.peek()
        if name.kind == "name" and name.text == "T":
            self.next()
            return Node("attr", tok.pos, left, "T")
        raise GradcalcError("syntax", "the only attribute is '.T' (transpose)",
                            name.pos if name.kind != "eof" else tok.pos)

    def call_args(self, open_tok: Token):
        args, kwargs, seen = [], [], set()
        if not self.at(")"):
            while True:
                tok = self.peek()
                nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
                if tok.kind == "name" and nxt is not None and nxt.kind == "op" and nxt.text == "=":
                    self.next()
                    self.next()
                    if tok.text in seen:
                        raise GradcalcError("call", f"keyword argument '{clip(tok.text)}' given twice", tok.pos)
                    seen.add(tok.text)
                    kwargs.append((tok.text, self.expr(), tok.pos))
                else:
                    if kwargs:
                        raise GradcalcError(
                            "syntax", "a positional argument cannot follow a keyword argument", tok.pos)
                    args.append(self.expr())
                if self.at(","):
                    self.next()
                    if self.at(")"):
                        break
                    continue
                break
        self.expect(")", "to close '(' at column %d" % (open_tok.pos + 1))
        return args, kwargs

    def index_item(self) -> Node:
        start_pos = self.peek().pos
        parts = [None, None, None]
        k = 0
        if not self.at(":"):
            parts[0] = self.expr()
            if not self.at(":"):
                return parts[0]
        while self.at(":") and k < 2:
            self.next()
            k += 1
            if not (self.at(":") or self.at(",") or self.at("]")):
                parts[k] = self.expr()
        return Node("slice", start_pos, *parts)

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
                    raise GradcalcError("syntax", f"repeated parameter name in {clip(e.a)}(...)", e.pos)
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


def parse_program(text: str, max_depth: int = 200) -> list[Node]:
    """Statements of a program or one-liner."""
    try:
        return Parser(text, max_depth).program()
    except GradcalcError as err:
        raise err.with_source(text)


def parse_expression(text: str, max_depth: int = 200) -> Node:
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
