"""Compile a parsed program into a flat, ordered graph of equations.

The compiler owns name resolution (variables, constants, user functions, built-in ops and
the externs of one run), argument binding against the op table's signatures, shape
inference before allocation, constant folding, the leaf rule of SPEC section 3, and the
element/memory/node limits. It walks expressions with an explicit stack, so `a+a+...+a` of
any length never recurses.
Every later feature (forward, backward, Jacobian, symbolic form, graph display) is a loop
over `Graph.nodes`.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import GradcalcError, Limits, clip, fmt_bytes
from .ops import OPS, Op, Site
from .parser import Node

CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan,
             "NaN": math.nan,         # as gradcalc writes it in JSON (SPEC 4)
             "True": 1.0, "False": 0.0}


def close_match(name: str, known: list) -> list:
    """The known name nearest to a misspelt one ([] or one name), for "did you mean". Only an
    error needs it, so difflib (and heapq) load only then, not in every run's start-up."""
    import difflib
    return difflib.get_close_matches(name, known, 1)


class Eq:
    """One node of the graph: a leaf, a constant, or an op applied to earlier nodes."""

    __slots__ = ("id", "kind", "op", "inputs", "params", "shape", "pos", "name", "value",
                 "requires_grad", "torch", "size")

    def __init__(self, id, kind, op, inputs, params, shape, pos, name=None, value=None):
        self.id, self.kind, self.op, self.inputs, self.params = id, kind, op, inputs, params
        self.shape, self.pos, self.name, self.value = shape, pos, name, value
        self.requires_grad = False
        self.torch = None
        self.size = math.prod(shape)    # read per node by every size estimate; shape is fixed

    def with_value(self, value) -> "Eq":
        """A copy of this node holding `value` (a compiled program rebound to a call's
        values): every slot copied as it is, without __init__'s call and size (a third of a
        small call's rebinding)."""
        new = Eq.__new__(Eq)
        (new.id, new.kind, new.op, new.inputs, new.params, new.shape, new.pos, new.name,
         new.value, new.requires_grad, new.torch, new.size) = (
            self.id, self.kind, self.op, self.inputs, self.params, self.shape, self.pos,
            self.name, value, self.requires_grad, self.torch, self.size)
        return new

    def __repr__(self):
        what = self.op.name if self.op else self.kind
        return f"Eq({self.id} {what}{list(self.inputs)} {self.shape} {self.name or ''})"


class Graph:
    """A compiled program (a plain class: a dataclass costs 0.3-1 ms to define, at the start
    of every process; a graph is never compared or printed)."""

    def __init__(self, nodes: list, leaves: dict, names: dict, output: int,
                 output_name: str | None, source: str, dtype: np.dtype,
                 leaf_order: list | None = None, folded: dict | None = None,
                 random: bool = False):
        self.nodes = nodes
        self.leaves = leaves             # name -> node id of every named leaf
        self.names = names               # name -> node id of its newest binding
        self.output, self.output_name, self.source, self.dtype = output, output_name, source, dtype
        self.leaf_order = [] if leaf_order is None else leaf_order
        # const id -> (op name, input ids) folded into it
        self.folded = {} if folded is None else folded
        self.random = random             # it drew from the --seed generator: never reuse it
        # derived data of this compiled program (the engine's schedules, the symbolic
        # check's derivation), shared by every rebinding of it to new leaf values
        self.memo: dict = {}


def _children(node: Node):
    k = node.kind
    if k in ("num", "name"):
        return []
    if k == "unary":
        return [node.operand]
    if k == "binary":
        return [node.left, node.right]
    if k == "call":
        return list(node.args) + [v for _, v, _ in node.kwargs]
    if k == "index":
        out = [node.target]
        for item in node.items:
            if item.kind == "slice":
                out.extend(p for p in (item.start, item.stop, item.step) if p is not None)
            else:
                out.append(item)
        return out
    if k == "attr":
        return [node.target]
    if k == "array":
        return list(node.items)
    raise GradcalcError("syntax", f"unexpected {k}", node.pos)


def _min_nodes(root: Node, funcs: dict, cap: int) -> int:
    """A lower bound of the graph nodes that compiling `root` adds, with every call of a user
    function in `funcs` counted as its body's bound (its 4th field): each number, operator,
    index, transpose, array literal and built-in call adds at least one node; names and a
    unary plus may add none. Capped just above `cap`, so that the numbers stay small."""
    total, work = 0, [root]
    while work and total <= cap:
        node = work.pop()
        work.extend(_children(node))
        if node.kind == "call" and node.name in funcs:
            total += funcs[node.name][3]
        elif node.kind != "name" and not (node.kind == "unary" and node.op == "+"):
            total += 1
    return min(total, cap + 1)


# infix operators, as the table's entries declare them ("+" reaches add, "<" lt)
_BINOPS = {op.syntax: op.name for op in OPS.values() if op.syntax and "x" not in op.syntax}


class Compiler:
    def __init__(self, source: str, bindings: dict | None = None, *, dtype=np.float64,
                 limits: Limits, wrt=None, seed=None, constants_only=False,
                 free_scalars=False, externs: dict[str, Op] | None = None):
        self.source = source
        # ops of this run only (--extern), looked up before the table
        self.externs = dict(externs or {})
        for name in self.externs:
            if name in OPS:
                raise GradcalcError("usage", f"--extern: '{name}' is already a function of "
                                             "gradcalc; give the extern another name")
        self.bindings = dict(bindings or {})
        self.dtype = np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.limits = limits
        self.nodes: list[Eq] = []
        self.bytes = 0
        self.env: dict[str, int] = {}
        self.funcs: dict[str, tuple] = {}
        self.leaves: dict[str, int] = {}
        self.leaf_order: list[str] = []
        self.var_refs = 0
        self.wrt = None if wrt is None else set(wrt)
        self.seed = seed
        self._rng = None
        self.constants_only = constants_only
        # a name bound nowhere becomes a scalar leaf (a derivative without numbers)
        self.free_scalars = free_scalars
        self.none_nodes: set[int] = set()
        self.folded: dict[int, tuple] = {}

    # -- nodes -------------------------------------------------------------------------
    def _account(self, shape, pos):
        # (every node passes here: the four limits tested at once, then named one by one)
        limits = self.limits
        size = math.prod(shape)
        if len(shape) > limits.max_ndim or size > limits.max_elements or \
                self.bytes + size * self.itemsize > limits.max_memory or \
                len(self.nodes) >= limits.max_nodes:
            self._refuse(shape, pos)
        self.bytes += size * self.itemsize

    def _refuse(self, shape, pos):
        """The first limit a node of `shape` goes over, as an error."""
        if len(shape) > self.limits.max_ndim:
            raise GradcalcError("limit", f"an array with {len(shape)} dimensions is over the limit "
                                         f"of {self.limits.max_ndim}", pos)
        size = math.prod(shape)
        if size > self.limits.max_elements:
            raise GradcalcError("limit", f"an array of shape {tuple(shape)} has {size:,} elements, "
                                         f"over the limit of {self.limits.max_elements:,} "
                                         "(--max-elements)", pos)
        if self.bytes + size * self.itemsize > self.limits.max_memory:
            raise GradcalcError("limit", "the calculation needs more than the memory limit of "
                                         f"{fmt_bytes(self.limits.max_memory)} (--max-memory)", pos)
        raise self.too_many_nodes(pos)

    def too_many_nodes(self, pos, estimated=False) -> GradcalcError:
        about = " (counted before inlining its functions)" if estimated else ""
        return GradcalcError("limit", f"the program expands to more than "
                                      f"{self.limits.max_nodes:,} operations{about}", pos)

    def expand_bounded(self, node: Node, funcs: dict):
        """Refuse an expression before inlining it if it surely makes too many nodes: a
        program of functions that each call the previous one twice doubles at every line, and
        expanding 2**30 nodes only to hit the limit would take minutes."""
        if len(self.nodes) + _min_nodes(node, funcs, self.limits.max_nodes) > \
                self.limits.max_nodes:
            raise self.too_many_nodes(node.pos, estimated=True)

    def add(self, kind, op, inputs, params, shape, pos, value=None, name=None) -> int:
        self._account(shape, pos)
        eq = Eq(len(self.nodes), kind, op, tuple(inputs), params, tuple(shape), pos, name, value)
        if kind == "op":
            nodes = self.nodes
            for j, i in enumerate(inputs):
                if nodes[i].requires_grad and op.vjp(j) is not None:
                    eq.requires_grad = True
                    break
            # the site (operand kinds and ranks) only for an op whose name depends on it
            eq.torch = op.torch_name(self._site(inputs, params)) if callable(op.torch) \
                else op.torch
        self.nodes.append(eq)
        return eq.id

    def _site(self, inputs, params) -> Site:
        ins = [self.nodes[i] for i in inputs]
        return Site(tuple(n.kind == "const" for n in ins), params, tuple(len(n.shape) for n in ins))

    def const(self, value, pos) -> int:
        value = np.asarray(value, dtype=self.dtype)
        return self.add("const", None, (), {}, value.shape, pos, value=value)

    def leaf(self, name, value, pos) -> int:
        if type(value) is not np.ndarray or value.dtype is not self.dtype:
            value = np.asarray(value, dtype=self.dtype)     # (a bound array mostly is one)
        i = self.add("leaf", None, (), {}, value.shape, pos, value=value, name=name)
        eq = self.nodes[i]
        eq.requires_grad = self.wrt is None or name in self.wrt
        eq.torch = "AccumulateGrad"
        if name not in self.leaves:
            self.leaf_order.append(name)
        self.leaves[name] = i
        return i

    def rng(self):
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def apply(self, op: Op, inputs, params, pos) -> int:
        nodes = self.nodes
        for i in inputs if self.none_nodes else ():
            if i in self.none_nodes:
                raise GradcalcError("call", "None can only stand for a left-out argument, "
                                            "as in clamp(x, None, 1) or sum(x, dim=None)",
                                    nodes[i].pos)
        shapes = [nodes[i].shape for i in inputs]
        try:
            shape, params = op.infer(shapes, params)
        except GradcalcError as err:
            if err.position is None:
                err.position = pos
            raise
        if op.at_site is not None:
            params = dict(params, **op.at_site(self._site(inputs, params)))
        if op.family == "constructor":
            params = dict(params, _dtype=self.dtype)
            if op.random:
                params["_rng"] = self.rng()
        # (the first input decides most calls at once: a variable's op is never folded)
        if (not inputs or nodes[inputs[0]].kind == "const") and \
                all(nodes[i].kind == "const" for i in inputs):
            self._account(shape, pos)          # check before allocating
            self.bytes -= math.prod(shape) * self.dtype.itemsize
            try:
                with np.errstate(all="ignore"):
                    value = op.forward(*[self.nodes[i].value for i in inputs], **params)
            except GradcalcError as err:
                if err.position is None:
                    err.position = pos
                raise
            i = self.const(value, pos)
            self.folded[i] = (op.name, tuple(inputs))   # so a non-finite constant can name its cause
            return i
        return self.add("op", op, inputs, params, shape, pos)

    # -- statements ---------------------------------------------------------------------
    def program(self, stmts) -> Graph:
        if not stmts:
            raise GradcalcError("syntax", "the program has no statement", 0)
        last = stmts[-1]
        if last.kind == "funcdef":
            raise GradcalcError("syntax", "the last statement must be an expression or an "
                                          "assignment: it is the output", last.pos)
        out, out_name = None, None
        ends = [st.pos for st in stmts[1:]] + [len(self.source)]
        for st, end in zip(stmts, ends):
            if st.kind == "funcdef":
                if st.name in self.externs:
                    raise GradcalcError("name", f"'{st.name}' is an extern (--extern); the "
                                                "program cannot define it again", st.pos)
                cost = _min_nodes(st.body, self.funcs, self.limits.max_nodes)
                self.funcs[st.name] = (st.params, st.body, dict(self.funcs), cost)
                continue
            # without functions to inline, a statement's bound is at most its characters
            # (each node it counts has a token of its own): count it only when that could
            # reach the limit (a walk of every statement was a seventh of compiling)
            if self.funcs or len(self.nodes) + end - st.pos > self.limits.max_nodes:
                self.expand_bounded(st.value, self.funcs)
            if st.kind == "assign":
                refs = self.var_refs
                value = self.not_none(self.expr(st.value))
                if self.var_refs == refs:           # depends on no other name: a leaf
                    if st.name in self.bindings:
                        existing = self.leaves.get(st.name)
                        value = existing if existing is not None else \
                            self.leaf(st.name, self.bindings[st.name], st.pos)
                    else:
                        value = self.leaf(st.name, self.nodes[value].value, st.pos)
                self.env[st.name] = value
                out, out_name = value, st.name
            else:
                out, out_name = self.not_none(self.expr(st.value)), None
        for name, val in self.bindings.items():     # given but never used: no path
            if name not in self.leaves:
                self.leaf(name, val, None)
        return Graph(self.nodes, dict(self.leaves), dict(self.env), out, out_name, self.source,
                     self.dtype, list(self.leaf_order), folded=dict(self.folded),
                     random=self._rng is not None)

    def not_none(self, i: int) -> int:
        """`None` is a placeholder for a left-out argument, never a value (it is held as a NaN
        constant, which must not leak into a result, an array or a leaf)."""
        if i in self.none_nodes:
            raise GradcalcError("value", "None is not a number: it can only stand for a left-out "
                                         "argument, as in clamp(x, None, 1) or sum(x, dim=None)",
                                self.nodes[i].pos)
        return i

    # -- expressions --------------------------------------------------------------------
    def expr(self, root: Node) -> int:
        work = [(root, self.env, self.funcs, -1)]
        vals: list[int] = []
        while work:
            node, env, funcs, n = work.pop()
            if n < 0:                   # first visit: its children first, then it again
                if node.kind == "name":     # (no children: reduced at once)
                    vals.append(self.lookup(node, env, funcs))
                    continue
                kids = _children(node)
                work.append((node, env, funcs, len(kids)))
                for kid in reversed(kids):
                    work.append((kid, env, funcs, -1))
                continue
            args = vals[len(vals) - n:] if n else []
            if n:
                del vals[len(vals) - n:]
            if node.kind == "binary":   # the commonest node, without reduce(); a: its operator
                vals.append(self.apply(OPS[_BINOPS[node.a]], args, {}, node.pos))
                continue
            result = self.reduce(node, args, env, funcs, work)
            if result is not None:
                vals.append(result)
        return vals[-1]

    def reduce(self, node, args, env, funcs, work):
        k = node.kind
        if k == "num":
            return self.const(float(node.text), node.pos)
        if k == "unary":
            if node.op == "+":
                return args[0]
            return self.apply(OPS["neg"], args, {}, node.pos)
        if k == "attr":
            return self.apply(OPS["transpose"], args, {}, node.pos)
        if k == "array":
            return self.array(node, args)
        if k == "index":
            return self.index(node, args)
        if k == "call":
            return self.call(node, args, env, funcs, work)
        raise AssertionError(k)

    def lookup(self, node, env, funcs) -> int:
        name = node.name
        if name in env:
            self.var_refs += 1
            return env[name]
        if name in self.bindings and not self.constants_only:
            self.var_refs += 1
            i = self.leaves.get(name)
            if i is None:
                i = self.leaf(name, self.bindings[name], node.pos)
            return i
        if name in CONSTANTS:
            return self.const(CONSTANTS[name], node.pos)
        if name == "None":                     # "leave this argument out": f(x, dim=None)
            i = self.const(math.nan, node.pos)
            self.none_nodes.add(i)
            return i
        shown = clip(name)
        if name in funcs or name in self.externs or (name in OPS and OPS[name].named):
            raise GradcalcError("name", f"'{shown}' is a function: call it, e.g. {shown}(x)",
                                node.pos)
        if self.free_scalars:
            self.bindings[name] = np.asarray(1.0, dtype=self.dtype)
            return self.lookup(node, env, funcs)
        if self.constants_only:
            raise GradcalcError("name", f"unknown name '{shown}': a value can use numbers, "
                                        "constants and functions, not variables", node.pos)
        known = list(env) + list(self.bindings) + list(CONSTANTS)
        near = close_match(name, known)
        hint = f"; did you mean '{clip(near[0])}'?" if near else \
            "; bind it on the command line, e.g. " + f"{shown}=1.0"
        raise GradcalcError("name", f"unknown name '{shown}'{hint}", node.pos)

    def _scalar(self, i, what, pos, kind="number"):
        eq = self.nodes[i]
        if eq.kind != "const":
            raise GradcalcError("call", f"{what} must be a constant number, not an expression of "
                                        "variables", pos)
        if eq.size != 1:
            raise GradcalcError("call", f"{what} must be a single number, got shape "
                                        f"{eq.shape}", pos)
        v = float(eq.value.reshape(()))
        if kind == "int":
            if not math.isfinite(v) or v != int(v):
                raise GradcalcError("call", f"{what} must be a whole number, got {v:g}", pos)
            return int(v)
        if kind == "bool":
            return bool(v)
        return v

    def array(self, node, args) -> int:
        if not args:
            raise GradcalcError("value", "an empty array literal [] has no shape to use", node.pos)
        shapes = set()
        for i, el in zip(args, node.items):
            self.not_none(i)
            if self.nodes[i].kind != "const":
                raise GradcalcError("call", "array literals hold numbers and constants only; "
                                            "build an array from variables with stack(a, b)",
                                    el.pos)
            shapes.add(self.nodes[i].shape)
        if len(shapes) != 1:
            raise GradcalcError("value", "array literal is not rectangular: its elements have "
                                         "shapes " + ", ".join(map(str, sorted(shapes))), node.pos)
        self._account((len(args),) + next(iter(shapes)), node.pos)
        self.bytes -= len(args) * math.prod(next(iter(shapes))) * self.dtype.itemsize
        i = self.const(np.stack([self.nodes[i].value for i in args]), node.pos)
        self.folded[i] = ("array", tuple(args))
        return i

    def index(self, node, args) -> int:
        target, rest = args[0], list(args[1:])
        idx = []
        for item in node.items:
            if item.kind == "slice":
                parts = []
                for p in (item.start, item.stop, item.step):
                    parts.append(None if p is None else
                                 self._scalar(rest.pop(0), "a slice bound", p.pos, "int"))
                idx.append(slice(*parts))
            else:
                idx.append(self._scalar(rest.pop(0), "an index", item.pos, "int"))
        return self.apply(OPS["index"], [target], {"idx": tuple(idx)}, node.pos)

    def call(self, node, args, env, funcs, work):
        name, pos = node.name, node.pos
        shown = clip(name)
        nkw = len(node.kwargs)
        pos_args = args[: len(args) - nkw] if nkw else args
        kw_args = dict(zip((kname for kname, _, _ in node.kwargs), args[len(args) - nkw:])) \
            if nkw else {}
        if name in funcs:
            params, body, defs, _ = funcs[name]
            if kw_args:
                bad = next(iter(kw_args))
                if bad not in params or len(pos_args) + len(kw_args) != len(params):
                    raise GradcalcError("call", f"{shown}() takes {len(params)} arguments "
                                                f"({', '.join(params)})", pos)
            if len(pos_args) + len(kw_args) != len(params):
                raise GradcalcError("call", f"{shown}() takes {len(params)} argument"
                                            f"{'s' if len(params) != 1 else ''} "
                                            f"({', '.join(params)}), got {len(pos_args) + len(kw_args)}",
                                    pos)
            bound = dict(zip(params, pos_args))
            for kname, v in kw_args.items():
                if kname in bound:
                    raise GradcalcError("call", f"{shown}(): '{clip(kname)}' given twice", pos)
                bound[kname] = v
            work.append((body, {**env, **bound}, defs, -1))   # a first visit
            return None
        op = self.externs.get(name) or OPS.get(name)
        if op is None or not op.named:
            if name in env or name in self.bindings:
                raise GradcalcError("name", f"'{shown}' is a variable, not a function", pos)
            near = close_match(name, [n for n, o in OPS.items() if o.named] + list(funcs))
            hint = f"; did you mean {near[0]}()?" if near else ""
            raise GradcalcError("name", f"unknown function '{shown}'{hint}", pos)
        inputs, params = self.bind(op, pos_args, kw_args, node)
        if name in self.externs:
            params = self.extern_params(op, inputs, pos)
        return self.apply(op, inputs, params, pos)

    def extern_params(self, op: Op, inputs, pos) -> dict:
        """An extern's output shape is what its first call answers (SPEC 11), so it is
        called once here with its inputs' values (a failure points at this call); its
        params tell its VJP which inputs require grad (one backward perturbs them all in
        one batch)."""
        for i in inputs:
            self.not_none(i)
        params = {"_wrt": tuple(self.nodes[i].requires_grad for i in inputs)}
        try:
            op.forward(*self.values_of(inputs), **params)
        except GradcalcError as err:
            if err.position is None:
                err.position = pos
            raise
        return params

    def values_of(self, ids) -> list:
        """Forward values of some nodes, computed from the leaves and constants (the
        table's random ops are constructors, folded already: this draws nothing)."""
        need = set(ids)
        for eq in reversed(self.nodes[: max(ids) + 1]):
            if eq.id in need and eq.kind == "op":
                need.update(eq.inputs)
        vals = {}
        with np.errstate(all="ignore"):
            for eq in self.nodes[: max(ids) + 1]:
                if eq.id in need:
                    vals[eq.id] = eq.value if eq.kind != "op" else np.asarray(
                        eq.op.forward(*[vals[i] for i in eq.inputs], **eq.params), self.dtype)
        return [vals[i] for i in ids]

    def bind(self, op: Op, pos_args, kw_args, node):
        """Match a call's arguments to the op's signature: array inputs and constant params."""
        if not kw_args and len(pos_args) == _arrays_only(op) and not (
                self.none_nodes and any(i in self.none_nodes for i in pos_args)):
            return list(pos_args), {}     # sin(x), f(a, b): the general walk below, shortened
        pos = node.pos
        kw_pos = {kname: kp for kname, _, kp in node.kwargs}
        arg_pos = [a.pos for a in node.args]
        inputs, params = [], {}
        queue = list(zip(pos_args, arg_pos))
        names = {p.name for p in op.params}
        for kname in kw_args:
            if kname not in names or op.params and any(
                    p.name == kname and p.kind in ("arrays", "ints") for p in op.params):
                raise GradcalcError("call", f"{op.name}() got an unexpected keyword argument "
                                            f"'{clip(kname)}'{_sig_hint(op)}", kw_pos[kname])
        for p in op.params:
            if p.kind == "arrays":
                inputs.extend(i for i, _ in queue)
                queue = []
                continue
            if p.kind == "ints":
                params[p.name] = tuple(self._scalar(i, f"{op.name}() size", ap, "int")
                                       for i, ap in queue)
                queue = []
                continue
            if queue and not p.kwonly:
                i, ap = queue.pop(0)
                if p.name in kw_args:
                    raise GradcalcError("call", f"{op.name}() got '{p.name}' twice", kw_pos[p.name])
            elif p.name in kw_args:
                i, ap = kw_args[p.name], kw_pos[p.name]
            elif p.optional:
                self._left_out(p, inputs, params, pos)
                continue
            else:
                raise GradcalcError("call", f"{op.name}() is missing its argument "
                                            f"'{p.name}'{_sig_hint(op)}", pos)
            if i in self.none_nodes:
                if not p.optional:
                    raise GradcalcError("call", f"{op.name}() argument '{p.name}' cannot be None",
                                        ap)
                self._left_out(p, inputs, params, pos)
                continue
            if p.kind == "array":
                inputs.append(i)
            else:
                try:
                    params[p.name] = self._scalar(i, f"{op.name}() argument '{p.name}'", ap, p.kind)
                except GradcalcError as err:
                    if op.hint:
                        err.message += f" ({op.hint})"
                    raise
        if queue:
            extra = f" ({op.hint})" if op.hint else ""
            n = sum(1 for p in op.params if not p.kwonly)
            raise GradcalcError("call", f"{op.name}() takes at most {n} positional argument"
                                        f"{'s' if n != 1 else ''}{_sig_hint(op)}{extra}",
                                queue[0][1])
        if op.family != "constructor" and not inputs:
            raise GradcalcError("call", f"{op.name}() needs an array argument{_sig_hint(op)}", pos)
        return inputs, params

    def _left_out(self, p, inputs, params, pos):
        """A parameter left out (or None) takes its default. An array input becomes a constant
        and its name is listed in the internal param `_absent`: torch's rule for clamp with
        min only differs from its rule with both bounds, even where max is +inf."""
        if p.kind != "array":
            params[p.name] = p.default
            return
        inputs.append(self.const(p.default, pos))
        params["_absent"] = params.get("_absent", ()) + (p.name,)


_ARRAYS_ONLY: dict = {}


def _arrays_only(op: Op) -> int:
    """How many parameters `op` has when every one is a required positional array (then a
    call with that many positional arguments binds each to an input), else -1."""
    hit = _ARRAYS_ONLY.get(id(op))
    if hit is None or hit[0] is not op:
        simple = op.params and all(p.kind == "array" and not p.optional and not p.kwonly
                                   for p in op.params)
        hit = _ARRAYS_ONLY[id(op)] = (op, len(op.params) if simple else -1)
    return hit[1]


def _sig_hint(op: Op) -> str:
    return f": {op.name}({op.sig.replace(':int', '').replace(':number', '').replace(':bool', '').replace('?', '').replace(':array', '')})"
