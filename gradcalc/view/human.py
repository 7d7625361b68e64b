"""The human view: what `gradcalc` prints without --json.

It owns the layout of one Result on a terminal: the expression, the output, the cotangent v,
a table of leaves with their grads and sympy's formulas, each leaf's Jacobian J as a matrix
with v beside its rows and vᵀ·J under it, the checks, non-finite values and limits notes.
It draws with the style kit (view.style) and lays out numbers (view.numbers), Jacobians
(view.jacobian) and the --graph tree (view.graph); it never computes a gradient, and never
lets user text be read as markup: every user string goes into a rich Text, escaped.
"""
from __future__ import annotations

import sys

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import caret_lines, escape_text
from .graph import tree
from .higher import brief_higher, render_higher
from .jacobian import jacobian_block
from .numbers import Numbers, fits, formula, shape_text, summary
from .plain import ASCII, STYLE, statements
from .style import (RULED, glyphs, make_console, needed_width, StatusLine, styled, trimmed_lines,
                    user)

MAX_J_LEAVES = 8         # leaves whose Jacobian gets a table; the rest get a summary line
MAX_SOURCE_LINES = 12    # statement lines echoed at the top
PROSE_WIDTH = 100        # explanations wrap here even on a wider terminal
MAX_CHECK_ITEMS = 5      # entries of a check's list (disagreements, ...) shown


def shape_words(shape) -> str:
    return "a scalar" if not tuple(shape) else f"shape {shape_text(shape)}"


class View:
    def __init__(self, result, precision=None, console: Console | None = None):
        self.r = result
        self.c = console or make_console()
        self.s = glyphs(self.c)
        self.fmt = Numbers(precision, ascii_only=self.s is ASCII)
        self.width = self.c.width
        self.prose = min(self.width, PROSE_WIDTH)   # sentences stay readable on wide screens
        self.summarised = False
        leaves = result.leaves
        name = result.output_name
        if name is None:
            name = "y" if "y" not in leaves else "out"
        self.y = name
        self.derivs = self._derivatives()

    # -- helpers -----------------------------------------------------------------------
    def print(self, *things):
        self.c.print(*things)

    def table(self, table):
        """A table, its lines without the blanks that pad its last column."""
        self.c.print(trimmed_lines(self.c, table))

    def hang(self, text: Text, indent: int, width: int | None = None):
        """A paragraph whose continuation lines are indented by `indent`, wrapped at the prose
        width (or `width`), without trailing blanks."""
        for k, line in enumerate(text.wrap(self.c, max(20, (width or self.prose) - indent))):
            line.rstrip()
            self.c.print(Text(" " * indent) + line if k else line)

    def note(self, text: Text, indent: int = 2):
        """An indented paragraph; wrapped lines keep the indent (and no trailing blanks)."""
        for line in text.wrap(self.c, max(20, self.prose - indent)):
            line.rstrip()
            self.c.print(Text(" " * indent) + line)

    def array_lines(self, a, width: int, matrix: bool = False) -> str:
        """A whole array when it fits `width`, else a summary (and remember to say so)."""
        if fits(a, self.fmt, width):
            return self.fmt.block(a)
        self.summarised = True
        return "\n".join(summary(a, self.fmt, width, matrix=matrix))

    def _derivatives(self) -> dict:
        sym = self.r.checks.get("symbolic")
        if not isinstance(sym, dict):
            return {}
        d = sym.get("derivatives")
        return d if isinstance(d, dict) else {}

    def d(self, leaf: str) -> str:
        return f"{self.s['d']}{self.y}/{self.s['d']}{leaf}"

    def vtj(self) -> str:
        return f"v{self.s['T']}{self.s['dot']}J"

    # -- sections ----------------------------------------------------------------------
    def render(self, show_graph=False):
        self.answer()
        self.verdict(show_graph)

    def answer(self):
        """Everything but the checks: what is known as soon as backward has run."""
        self.source()
        self.output()
        # cotangent None and no grads note: only J·u or Taylor was asked for (SPEC 9)
        if self.r.cotangent is not None or self.r.grads_note:
            self.nonfinite()
            self.cotangent()
            self.leaves()
            self.jacobians()
            self.finite_differences()
        render_higher(self)

    def verdict(self, show_graph=False):
        """The checks (with sympy's formulas when the leaves table went out without them),
        the graph, and the closing note."""
        if not self.derivs:
            self.late_formulas()
        self.checks()
        if show_graph:
            self.print(styled(f"autograd graph: from the output {self.y} back to the leaves, "
                              "with PyTorch's grad_fn names", style=STYLE["head"]))
            self.print(tree(self.r, self.fmt, self.width, self.y))
            self.print()
        if self.summarised:
            self.note(styled(f"Arrays too large for {self.width} columns are summarised; "
                            "--json prints every value (add --jacobian to compute a "
                            "Jacobian that was skipped).", style=STYLE["note"]), indent=0)

    def late_formulas(self):
        """sympy's derivative formulas, when the check finished after the leaves table."""
        sym = self.r.checks.get("symbolic")
        d = sym.get("derivatives") if isinstance(sym, dict) else None
        if not isinstance(d, dict) or not any(d.values()):
            return
        parts = [f"{self.d(n)} = {formula(f)}" for n, f in d.items() if f is not None]
        self.hang(styled("sympy: ", style=STYLE["head"]) + styled("; ".join(parts),
                                                              style=STYLE["formula"]), 2)

    def brief(self):
        """--brief: the output, each grad, each second-order answer and the checks'
        verdicts (with what each compared of the second order), one line each."""
        r = self.r
        out = self.fmt.line_fitting(np.asarray(r.output), max(20, self.width - 4 - len(self.y)))
        self.print(styled(f"{self.y} = ", style=STYLE["name"]) + Text(out))
        for n, g in r.grads.items():
            text = self.fmt.line_fitting(np.asarray(g), max(20, self.width - 9 - len(n)))
            self.print(styled(f"{n}.grad = ", style=STYLE["name"]) + styled(text, STYLE["grad"]))
        brief_higher(self)
        for kind, c in r.checks.items():
            self.hang(check_line(kind, c, self.s, self.fmt)[0], 2)
            for line in second_order_lines(c, self.s):
                self.hang(line, 6)

    def finite_differences(self):
        """Which grads rest on an opaque extern's finite differences, and with what step."""
        for leaf, through in getattr(self.r, "finite_differences", {}).items():
            how = "; ".join(f"{t['extern']}: {t['diff']} differences, step "
                            f"{t['step']:.3g}·max(1, |x|)" for t in through)
            self.note(styled(f"{self.s['warn']} {leaf}.grad rests on finite differences "
                             f"through the opaque extern ({how}); everything around it is "
                             "exact autograd", style=STYLE["warn"]), indent=0)
        if getattr(self.r, "finite_differences", None):
            self.print()

    def source(self):
        text = self.r.expression
        lines = text.splitlines() or [text]
        stmts = statements(text)
        opts = [ln.strip()[2:].strip() for ln in lines if ln.lstrip().startswith("#:")]
        limit = max(40, 4 * self.width)
        unnamed = None
        if self.r.output_name is None and len(stmts) == 1 and ";" not in stmts[0]:
            stmts = [f"{self.y} = {stmts[0].strip()}"]      # name the value we call y
        elif self.r.output_name is None:
            unnamed = f"the value of the last statement is called {self.y} below"
        for ln in stmts[:MAX_SOURCE_LINES]:
            t = user(ln[:limit], STYLE["head"])
            if len(ln) > limit:
                t.append(f" {self.s['hdots']} ({len(ln):,} characters)", style=STYLE["note"])
            self.hang(t, 4, width=self.width)       # code: the whole width, continuations in
        if len(stmts) > MAX_SOURCE_LINES:
            self.print(styled(f"{self.s['hdots']} {len(stmts) - MAX_SOURCE_LINES} more lines",
                            style=STYLE["note"]))
        if unnamed:
            self.note(styled(unnamed, style=STYLE["note"]))
        for o in opts:
            self.note(styled("options from the program's #: line: ", style=STYLE["note"])
                       + user(o[:limit], STYLE["note"]))
        self.print()

    def output(self):
        r = self.r
        out = np.asarray(r.output)
        head = styled("output ", style=STYLE["head"]) + styled(self.y, style=STYLE["name"])
        if r.graph is not None and r.output_id != r.graph.output:
            head += styled(" (the intermediate chosen by --of)", style=STYLE["note"])
        head += styled(", " + shape_words(out.shape), style=STYLE["note"])
        self.print(head)
        self.print(Text(self._indent(self.array_lines(out, self.width - 4))))
        self.print()

    def nonfinite(self):
        nf = self.r.nonfinite
        if not nf:
            return
        msg = nf.get("message") if isinstance(nf, dict) else str(nf)
        self.print(styled(f"{self.s['warn']} non-finite numbers: ", style=STYLE["warn"])
                   + user(msg or "", STYLE["warn"]))
        pos = nf.get("position") if isinstance(nf, dict) else None
        if isinstance(pos, int) and self.r.expression:
            text, caret = caret_lines(self.r.expression, pos, width=max(20, self.width - 6))
            self.note(Text("  ") + user(text))
            self.note(styled("  " + caret, style=STYLE["warn"]))
        self.note(styled("They are results, not errors (IEEE arithmetic); --json writes them "
                        'as "NaN"/"Infinity".', style=STYLE["note"]))
        self.print()

    def cotangent(self):
        r = self.r
        if r.cotangent is None:           # --jacobian without --grad: J alone
            self.print(styled("v", style=STYLE["v"] + " bold") + styled(
                f", the gradient argument of {self.y}.backward(v): none given", STYLE["head"]))
            self.note(styled(f"the Jacobian was asked for (--jacobian), so it is shown alone; "
                             f"pass --grad v for the grads {self.vtj()}", style=STYLE["note"]))
            self.print()
            return
        v = np.asarray(r.cotangent)
        y = self.y
        head = styled("v", style=STYLE["v"] + " bold") + styled(
            f", the gradient argument of {y}.backward(v)", style=STYLE["head"])
        head += styled(", " + shape_words(v.shape), style=STYLE["note"])
        self.print(head)
        if r.cotangent_implied:
            why = ("is a scalar" if v.ndim == 0 else
                   f"has one element (shape {shape_text(v.shape)})")
            self.note(styled("  " + self.fmt.block(v), style=STYLE["v"]))
            rule = "as in PyTorch" if v.ndim == 0 else "as PyTorch does when numel() == 1"
            self.note(styled(f"implied: {y} {why}, so {y}.backward() means "
                           f"{y}.backward(1), {rule}", style=STYLE["note"]))
        else:
            self.print(styled(self._indent(self.array_lines(v, self.width - 4)), style=STYLE["v"]))
            self.note(styled(f"{y}.backward(v) gives each leaf the grad {self.vtj()}: the "
                           "Jacobian's rows weighted by v and added up (below)",
                           style=STYLE["note"]))
        self.print()

    def leaves(self):
        r = self.r
        names = list(r.leaves)
        if not names:
            self.print(styled("no leaves: the output is a constant, nothing to differentiate",
                            style=STYLE["note"]))
            self.print()
            return
        grad_head = "grad" if r.repeat == 1 else f"grad ({r.repeat} calls)"
        with_formulas = any(self.derivs.get(n) is not None for n in names)
        budget = max(20, self.width - 10)     # a cell may be as wide as a line of its own
        rows = []
        for n in names:
            val = self.array_lines(np.asarray(r.leaves[n]), budget)
            if r.grads_note and n in r.wrt:
                grad = styled("not computed: no --grad", style=STYLE["note"])
            elif n not in r.grads:
                grad = styled("none: a constant (not in --wrt)", style=STYLE["note"])
            elif n in r.no_path:
                grad = styled(self.fmt.block(r.grads[n]) if fits(r.grads[n], self.fmt, budget)
                            else "all 0", style=STYLE["grad"])
                grad += styled(f"\nno path: {self.y} does not depend on {n}", style=STYLE["note"])
            else:
                grad = styled(self.array_lines(np.asarray(r.grads[n]), budget), style=STYLE["grad"])
            f = self.derivs.get(n)
            ftext = styled(formula(f), STYLE["formula"]) if f is not None else (
                styled("(per element)" if n in self.derivs else "", style=STYLE["note"]))
            rows.append((styled(n, style=STYLE["name"]),
                         styled(shape_text(np.shape(r.leaves[n])), style=STYLE["note"]),
                         Text(val), grad, ftext))
        table = Table(box=RULED, show_edge=False, pad_edge=False, padding=(0, 1))
        table.add_column("leaf", no_wrap=True)
        table.add_column("shape", no_wrap=True)
        table.add_column("value", no_wrap=True)
        table.add_column(f"{grad_head} = {self.vtj()}" if r.repeat == 1 else grad_head,
                         no_wrap=True)
        if with_formulas:
            table.add_column(f"{self.s['d']}{self.y}/{self.s['d']}leaf (sympy)")
        for row in rows:
            table.add_row(*(row if with_formulas else row[:4]))
        if needed_width(self.c, table) <= self.width:
            self.table(table)
        else:                       # too narrow for a table: one block per leaf
            for leaf, shape, val, grad, ftext in rows:
                self.print(leaf + styled("  shape ", style=STYLE["note"]) + shape)
                self.note(Text("value  ") + Text(self._indent(val.plain, 7).lstrip()))
                self.note(Text("grad   ") + styled(self._indent(grad.plain, 7).lstrip(),
                                                 style=STYLE["grad"]))
                if ftext.plain:
                    self.note(Text(f"{self.d(leaf.plain)} = ") + ftext)
        if r.repeat > 1:
            self.note(styled(f"grads are accumulated over {r.repeat} backward calls without "
                            f"zeroing (PyTorch adds into .grad): each is {r.repeat} "
                            f"{self.s['times']} {self.vtj()}", style=STYLE["warn"]))
        self.print()

    def jacobians(self):
        r = self.r
        shown = [n for n in (r.wrt if r.grads_note else r.grads) if n not in r.no_path]
        if r.jacobian is None:
            note = r.jacobian_note or "not computed"
            self.hang(styled("Jacobian J: ", style=STYLE["head"]) + user(note, STYLE["note"]), 2)
            self.note(styled(f"Each grad above is still {self.vtj()}: one backward pass "
                            "computes it without forming J.", style=STYLE["note"]))
            self.print()
            return
        if shown and r.cotangent is not None:
            s = self.s
            self.print(styled(f"Why these grads: {self.y}.backward(v) returns {self.vtj()}",
                            style=STYLE["head"]))
            self.note(styled(f"J = {s['d']}{self.y}/{s['d']}leaf has one row per element of "
                           f"{self.y} and one column per element of the leaf. v weights the "
                           f"rows (column v); the weighted rows add up to the grad (row "
                           f"{self.vtj()}).", style=STYLE["note"]))
            self.print()
        for k, n in enumerate(shown):
            J = r.jacobian.get(n)
            if J is None:
                continue
            jacobian_block(self, n, np.asarray(J), full=k < MAX_J_LEAVES)

    def checks(self):
        checks = self.r.checks
        if not checks:
            asked = getattr(self.r, "check_kinds", ())
            why = (f"{' and '.join(asked)} asked for, but nothing to check" if asked
                   else "--check none")
            self.print(styled(f"checks: none run ({why})", style=STYLE["note"]))
            self.print()
            return
        for kind, c in checks.items():
            first, *more = check_line(kind, c, self.s, self.fmt)
            self.hang(first, 2)
            for line in more:
                self.hang(line, 6)
        self.print()

    @staticmethod
    def _indent(text: str, n: int = 4) -> str:
        return "\n".join(" " * n + ln for ln in text.split("\n"))


KNOWN_CHECK_KEYS = {"passed", "derivatives", "max_abs_error", "max_rel_error", "skipped",
                    "rtol", "atol", "elements_checked", "elements_total", "method",
                    "jacobian_entries_checked", "jacobian_entries_total", "second_order"}


def second_order_lines(c, s) -> list:
    """What a check compared of SPEC 9's answers: "J·u: 3 of 3 entries checked", and why
    not all, one line per answer."""
    so = c.get("second_order")
    names = {"jvp": f"J{s['dot']}u", "taylor": "Taylor", "hvp": f"H{s['dot']}u",
             "hessian": "Hessian"}
    lines = []
    for kind, cov in (so.items() if isinstance(so, dict) else ()):
        if not isinstance(cov, dict):
            continue
        line = styled(f"  {names.get(kind, escape_text(str(kind)))}: "
                      f"{cov.get('entries_checked', 0):,} of {cov.get('entries_total', 0):,} "
                      "entries checked", style=STYLE["note"])
        if cov.get("not_checked"):
            line += styled(" (", style=STYLE["note"]) + user(str(cov["not_checked"]),
                                                            STYLE["note"]) + \
                styled(")", style=STYLE["note"])
        lines.append(line)
    return lines


def check_line(kind, c, s, fmt) -> list:
    """One check's verdict, whatever keys the check filled in: the verdict line, then one
    line per entry of any list it reports."""
    t = styled(f"{kind} check: ", style=STYLE["head"])
    if not isinstance(c, dict):
        return [t + user(c)]
    passed = c.get("passed")
    if passed is True:
        t += styled(f"{s['ok']} agrees with autograd", style=STYLE["ok"])
    elif passed is False:
        t += styled(f"{s['bad']} DISAGREES with autograd (exit status 1)", style=STYLE["bad"])
    else:
        t += styled("skipped", style=STYLE["warn"])
        if c.get("skipped"):
            t += Text(": ") + user(c["skipped"], STYLE["note"])
    details = []
    for key, label in (("max_abs_error", "max abs error"), ("max_rel_error", "max rel error")):
        if isinstance(c.get(key), (int, float)):
            details.append(f"{label} {fmt.num(c[key])}")
    if isinstance(c.get("elements_checked"), int) and isinstance(c.get("elements_total"), int):
        verb = "perturbed" if kind == "numeric" else "checked"
        details.append(f"{c['elements_checked']:,} of {c['elements_total']:,} grad elements "
                       f"{verb}")
    if isinstance(c.get("jacobian_entries_checked"), int) and isinstance(
            c.get("jacobian_entries_total"), int):
        details.append(f"{c['jacobian_entries_checked']:,} of {c['jacobian_entries_total']:,} "
                       "Jacobian entries")
    if isinstance(c.get("method"), str):
        details.append(f"method {escape_text(c['method'])}")
    if isinstance(c.get("rtol"), (int, float)) and isinstance(c.get("atol"), (int, float)):
        details.append(f"rtol {c['rtol']:g}, atol {c['atol']:g}")
    for key, value in c.items():     # other scalar facts the check reports, in its words
        if key not in KNOWN_CHECK_KEYS and isinstance(value, (int, float, str)) and not \
                isinstance(value, bool) and len(str(value)) <= 40:
            details.append(f"{escape_text(str(key)).replace('_', ' ')} {escape_text(str(value))}")
    if details:
        t += styled(" (" + "; ".join(details) + ")", style=STYLE["note"])
    lines = [t] + second_order_lines(c, s)
    for key, value in c.items():      # lists and records: one line per item
        if key in KNOWN_CHECK_KEYS or value in (None, [], {}, "") or (
                isinstance(value, (int, float, str)) and not isinstance(value, bool)
                and len(str(value)) <= 40):
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        label = escape_text(str(key)).replace("_", " ")
        for item in items[:MAX_CHECK_ITEMS]:
            lines.append(styled(f"  {label}: ", style=STYLE["note"]) + user(_item(item),
                                                                             STYLE["note"]))
        if len(items) > MAX_CHECK_ITEMS:
            lines.append(styled(f"  ... {len(items) - MAX_CHECK_ITEMS} more {label} "
                                "(all of them: --json)", style=STYLE["note"]))
    return lines


def _item(value, limit: int = 300) -> str:
    """One entry of a check's list, e.g. {"leaf": "b", "index": [0], "op": None} ->
    "leaf b, index [0]"."""
    if isinstance(value, dict):
        text = ", ".join(f"{k} {v}" for k, v in value.items() if v not in (None, "", [], {}))
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


# a check that has not finished after this many seconds no longer holds the answer back
# (long enough that an ordinary check, sympy's import included, keeps its formulas in the
# leaves table on a busy machine; the slow ones users waited for took 10 s)
PATIENCE = 2.0
SKIPPED_BY_USER = "interrupted (Ctrl-C): the answer above stands unchecked"


def render(result, precision=None, show_graph=False, console: Console | None = None,
           brief: bool = False):
    """Print the human view of `result` to stdout (or `console`). Checks still pending run
    here: when they take longer than PATIENCE the answer is shown first and the checks
    follow under a status line on stderr; Ctrl-C during them skips them and keeps the
    answer (their verdict is then "skipped", which changes no exit status)."""
    if brief:
        _checks_interruptible(result)
        view = View(result, precision, console)
        view.brief()
    else:
        waiting = PendingChecks(result)
        if waiting.done_within(PATIENCE):
            view = View(result, precision, console)
            with view.c:           # the whole view in one write, not one per line
                view.render(show_graph=show_graph)
        else:
            view = View(result, precision, console)
            view.answer()
            waiting.wait_with_status()
            view.verdict(show_graph)
    _say_failed(result)
    return view


class PendingChecks:
    """The result's pending checks run in a helper thread, so that the answer need not wait
    for them. Their reports are stored in the result only when they finish; after Ctrl-C
    they are skipped and whatever the thread still computes is dropped."""

    def __init__(self, result):
        import threading
        self.result = result
        self.box = {}
        self.worker = None
        pending, result.pending_checks = result.pending_checks, None
        if pending is not None:
            self.worker = threading.Thread(target=lambda: self.box.setdefault("reports", pending()),
                                           name="gradcalc-checks", daemon=True)
            self.worker.start()

    def done_within(self, seconds: float) -> bool:
        if self.worker is None:
            return True
        self.worker.join(seconds)
        if self.worker.is_alive():
            return False
        self.result.checks.update(self.box.get("reports", {}))
        return True

    def wait_with_status(self):
        """Wait under a status line on stderr (a terminal only); Ctrl-C skips the checks."""
        kinds = self.result.check_kinds
        status = None
        if sys.stderr.isatty():
            status = StatusLine(f"{' and '.join(kinds)} check{'s' if len(kinds) > 1 else ''}"
                                 "... Ctrl-C skips it")
            status.start()
        try:
            while self.worker.is_alive():
                self.worker.join(0.1)
            self.result.checks.update(self.box.get("reports", {}))
        except KeyboardInterrupt:
            self.result.skip_checks(SKIPPED_BY_USER)
        finally:
            if status is not None:
                status.stop()


def _checks_interruptible(result):
    try:
        result.finish_checks()
    except KeyboardInterrupt:
        result.skip_checks(SKIPPED_BY_USER)


def _say_failed(result):
    if not result.passed:
        failed = [k for k, c in result.checks.items()
                  if isinstance(c, dict) and c.get("passed") is False]
        make_console(stderr=True).print(Text(
            f"gradcalc: the {' and '.join(failed)} check disagreed with autograd "
            "(exit status 1)"))


def render_derivation(d, console: Console | None = None):
    """A derivative without numbers: the formula, each partial derivative, each claim."""
    console = console or make_console()
    g = glyphs(console)
    console.print(user("y = " + d.output, STYLE["head"]))
    for name, text in d.derivatives.items():
        console.print(Text.assemble((f"{g['d']}y/{g['d']}{name} = ", STYLE["name"]),
                                    user(text, STYLE["formula"])))
    for c in d.claims:
        verdict = {True: (g["ok"] + " right", STYLE["ok"]), False: (g["bad"] + " wrong", STYLE["bad"]),
                   None: (g["warn"] + " undecided", STYLE["warn"])}[c.right]
        line = Text.assemble(f"claim {g['d']}y/{g['d']}{c.leaf} = ", user(c.text), ": ", verdict,
                             f" ({c.how})")
        if c.counterexample:
            at = ", ".join(f"{k}={v:.6g}" for k, v in c.counterexample["at"].items())
            line.append(f"; at {at} the claim gives {c.counterexample['claim']:.6g}, the "
                        f"derivative {c.counterexample['derivative']:.6g}")
        console.print(line)
