"""Compiled programs for a stream of requests: each distinct program is compiled once.

A program's graph depends on its text, dtype, wrt, seed, limits and the names and shapes of
the bound variables, never on their values, so JSON Lines (and repeated API calls) keep the
compiled graph and rebind its leaves to each request's values. Derived data lives in the
graph's own `memo`, which rebound copies share. It never evaluates anything.
"""
from __future__ import annotations

from .compile import Compiler
from .errors import GradcalcError, Limits
from .parser import parse_program
from .settings import CLI, Settings, program_settings, validate


def compile_program(text: str, bindings: dict, dtype, s: Settings, limits: Limits,
                    externs: dict | None = None):
    """Parse and compile `text` with its leaves bound (and the run's extern ops callable);
    errors carry the text for a caret."""
    stmts = parse_program(text, limits.max_depth)
    try:
        return Compiler(text, bindings, dtype=dtype, wrt=s.wrt, seed=s.seed,
                        limits=limits, externs=externs).program(stmts)
    except GradcalcError as err:
        raise err.with_source(text)


class ProgramCache:
    """Compiled programs, for a stream of requests (JSON Lines): a program's graph depends
    on its text, dtype, wrt, seed, limits and the names and shapes of the bound variables,
    never on their values, so each distinct one is parsed and compiled once and its leaves
    are rebound to every later request's values. The rebound graph shares the compiled
    one's `memo`, where derived data (the engine's plan, the symbolic check's
    derivation) is kept. Programs that draw random numbers, and ones whose text makes large
    constants, are compiled every time."""

    MAX_PROGRAMS = 256
    MAX_ELEMENTS = 1 << 16

    def __init__(self):
        self._settings = {}
        self._graphs = {}
        self._limits = (None, None, None)   # the Limits last seen, its fields, their key

    def settings(self, text: str, limits: Limits) -> Settings:
        """The text's `#:` options, validated, once per text and limits."""
        key = (text, self.limits_key(limits))
        hit = self._settings.get(key)
        if hit is None:
            hit = validate(program_settings(text), limits, CLI)
            if len(self._settings) >= self.MAX_PROGRAMS:
                self._settings.clear()
            self._settings[key] = hit
        return hit

    def limits_key(self, limits: Limits) -> tuple:
        """A hashable key of `limits`' fields, made again only when they change."""
        lim, fields, key = self._limits
        if lim is not limits or fields != vars(limits):
            fields = dict(vars(limits))
            key = tuple(fields.items())
            self._limits = (limits, fields, key)
        return key

    def graph(self, text: str, bindings: dict, dtype, s: Settings, limits: Limits,
              externs: dict | None = None):
        """The compiled program for these bindings (externs are fixed for the cache's life:
        one run's, declared on the command line)."""
        key = (text, dtype.str, None if s.wrt is None else tuple(s.wrt), s.seed,
               self.limits_key(limits), *[(name, v.shape) for name, v in bindings.items()])
        hit = self._graphs.get(key)
        if hit is not None:
            template, bound = hit
            return rebind(template, bound, bindings)
        graph = compile_program(text, bindings, dtype, s, limits, externs)
        if graph.random:
            return graph
        bound = [eq.id for eq in graph.nodes if eq.kind == "leaf" and eq.name in bindings
                 and eq.value is bindings[eq.name]]
        # the cache keeps the values compiled from the text (a program's own ones(10**6)),
        # never the bound ones: the program's size in bound elements does not matter
        bound_ids = set(bound)
        fixed = [eq for eq in graph.nodes
                 if eq.kind in ("const", "leaf") and eq.id not in bound_ids]
        if sum(eq.size for eq in fixed) <= self.MAX_ELEMENTS:
            if len(self._graphs) >= self.MAX_PROGRAMS:
                self._graphs.clear()
            self._graphs[key] = (_template(graph, bound, fixed), bound)
        return graph


def _template(graph, bound, fixed):
    """What the cache keeps of a compiled program, so that no call's values reach another:
    the bound leaves hold None (a rebound copy gets each call's; the caller's arrays are not
    kept), and the values compiled from the text (`fixed`: constants, leaves the text
    assigns), which every copy shares, are read-only: a caller writing into a result's array
    gets an error instead of changing the next call's program."""
    for eq in fixed:
        eq.value.flags.writeable = False
    return rebind(graph, bound, dict.fromkeys(graph.nodes[i].name for i in bound))


def rebind(template, bound, bindings):
    """A copy of a compiled graph whose leaves `bound` (node ids) hold new values. The
    template's memo must exist already (ProgramCache makes it) for the copy to share it."""
    nodes = list(template.nodes)
    for i in bound:
        old = nodes[i]
        nodes[i] = old.with_value(bindings[old.name])
    graph = object.__new__(type(template))      # a shallow copy: shares memo, not nodes
    graph.__dict__.update(template.__dict__)
    graph.nodes = nodes
    return graph


