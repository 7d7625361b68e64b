"""The calculator command: `gradcalc EXPRESSION [NAME=VALUE ...]`, `-f PROGRAM`, `-`.

Click options -> settings validated once -> api.run (or JSON Lines, or a derivative
without numbers) -> the human view, JSON or DOT, and the exit status of the answer. It
computes nothing itself and imports rich only for the human view.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace

import click

from ..errors import EXIT_DISAGREED, EXIT_OK, GradcalcError, OutputError
from ..outputs import check_writable, write_text
from .options import (Stdin, build_limits, extern_options, long_running, open_externs, quoted,
                      read_data_files, split_bindings, stdin_once)

EXAMPLES = """\b
Examples (the worked examples of the PyTorch pages gradcalc grew from):

\b
  # y.backward([0.1, 1.0, 0.0001]): each leaf's grad is v^T.J, the rows of the
  # Jacobian J weighted by v and added up: a.grad = [0.3, 3, 0.0003]
  gradcalc '3*a + 2*b*b + log(c)' a=1,2,3 b=3,4,5 c=6,7,8 -g 0.1,1.0,0.0001
  # a program: statements separated by ';' (or lines of a file, gradcalc -f FILE)
  gradcalc 'x = ones(2, 2); y = x + 2; out = mean(y * y * 3)'

\b
  # a scalar output needs no gradient: backward() means backward(1)
  gradcalc 'mean((x+2)**2*3)' x='ones(2,2)'
  # grads accumulate over two backward calls without zeroing: 8 and 4
  gradcalc '(x+1)**2' x='eye(5)' -g 1 --repeat 2
  # why y = z gives z.grad == z: backward(z) returns z^T.J, and J is the identity
  gradcalc 'z' z='linspace(-1,1,5)' -g 'linspace(-1,1,5)'
  # a one-hot gradient picks one row of the Jacobian: [[2, 0, 0, 0]]
  gradcalc '2*x' x='[[1,2,3,4]]' -g '[[1,0,0,0]]'
  # f = 2*x*w[0] + x**2*w[1] at x=1, w=[1,1]: w.grad = [2, 1]
  gradcalc '2*x*w[0] + x**2*w[1]' x=1 w=1,1

\b
  # machine-readable, for jq
  gradcalc '3*a + 2*b*b + log(c)' a=1,2,3 b=3,4,5 c=6,7,8 -g 0.1,1,0.0001 --json | jq .grads
  # JSON Lines: one request per line in, one result per line out
  echo '{"expr": "sum(z**2)", "vars": {"z": "linspace(1,5,5)"}}' | gradcalc -
  # the autograd graph with PyTorch's node names, also as Graphviz DOT
  gradcalc 'sum(3*a + 2*b*b + log(c))' a=1,2,3 b=3,4,5 c=6,7,8 --graph --dot graph.dot

\b
VALUE forms: 2.5 | 1,2,3 | '[[1,2],[3,4]]' | 'linspace(-1,1,5)' | @file.json | @a.npy |
             @table.csv | @- (stdin)
Exit status: 0 ok, 1 a cross-check disagreed, 2 bad input, 3 internal error,
             4 the output could not be written, 130 interrupted (Ctrl-C).
More: the README (language reference, JSON schema, limits).
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "max_content_width": 100},
               epilog=EXAMPLES)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="EXPRESSION [NAME=VALUE ...]")
@click.option("-f", "--file", "program_file", metavar="PROGRAM.grad",
              type=click.Path(dir_okay=False, allow_dash=True),
              help="Read a program from a file (NAME=VALUE still binds leaves).")
@click.option("-g", "--grad", metavar="VALUE",
              help="The cotangent v passed to backward: the output's shape, or one number.")
@click.option("--wrt", metavar="a,b", help="Leaves that require grad (default: all).")
@click.option("--of", metavar="NAME", help="Run backward from this named intermediate.")
@click.option("--repeat", metavar="N", help="Call backward N times; grads accumulate.")
@click.option("--check", metavar="[symbolic|numeric|all|none]",
              help="Cross-check (default symbolic).")
@click.option("--rtol", metavar="X", help="Relative tolerance of the checks.")
@click.option("--atol", metavar="X", help="Absolute tolerance of the checks.")
@click.option("--jacobian/--no-jacobian", default=None,
              help="Compute the Jacobian (default: when at most 10,000 entries).")
@click.option("--dtype", metavar="[float64|float32]", help="Precision (default float64).")
@click.option("--seed", metavar="N", help="Seed for rand/randn.")
@click.option("-t", "--tangent", multiple=True, metavar="NAME=VALUE",
              help="Forward mode: J·u along this leaf tangent (repeatable; others get 0).")
@click.option("--hessian", is_flag=True, default=None,
              help="The Hessian of a scalar output (or v^T y with --grad v).")
@click.option("--hvp", multiple=True, metavar="NAME=VALUE",
              help="Hessian-vector product H·u without forming H (repeatable).")
@click.option("--taylor", metavar="N", help="Derivatives of order 1..N along the tangent.")
@click.option("--steps", is_flag=True, default=None,
              help="The backward pass as the chain rule, one step per line.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--graph", is_flag=True, help="Show the autograd graph with PyTorch node names.")
@click.option("--dot", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the graph as Graphviz DOT (- for stdout, instead of the view).")
@click.option("--plot", "plot", is_flag=False, flag_value="-", metavar="[FILE.png|.svg]",
              help="Draw y and dy/dx over a 1-D grid leaf in the terminal, or into FILE.")
@click.option("--brief", is_flag=True,
              help="Only the output, each grad (and second-order answer) and the checks' "
                   "verdicts.")
@click.option("--precision", type=click.IntRange(1, 17), default=None, metavar="N",
              help="Significant digits in the human view (default 6).")
@click.option("--max-elements", type=int, metavar="N", help="Elements per array (default 10^8).")
@click.option("--max-memory", metavar="SIZE", help="Working memory (default 2G).")
@click.option("--max-depth", type=int, metavar="N", help="Nesting depth (default 200).")
@click.option("--symbolic-timeout", type=float, metavar="S", help="Symbolic check budget (default 10 s).")
@click.option("--max-text", type=int, metavar="N",
              help="Characters of an expression, program or text VALUE (default 1,000,000).")
@click.option("--max-repeat", type=int, metavar="N", help="Largest --repeat (default 10,000).")
@click.option("--data", "data", multiple=True, metavar="FILE", type=click.Path(dir_okay=False),
              help="Bind the arrays of a CSV/TSV (header row), JSON object or .npz file "
                   "(repeatable; NAME=VALUE overrides).")
@extern_options
@click.option("--claim", multiple=True, metavar="'NAME: FORMULA'",
              help="With no NAME=VALUE: is FORMULA the derivative in NAME? (repeatable)")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.version_option(None, "--version", package_name="gradcalc", prog_name="gradcalc")
def command(args, program_file, **options):
    """Reverse-mode gradients of an expression, as PyTorch's y.backward(v) computes them.

    \b
    gradcalc EXPRESSION [NAME=VALUE ...]  one calculation
    gradcalc -f PROGRAM.grad [NAME=VALUE ...]  a program file
    gradcalc - [OPTIONS]  JSON Lines requests on stdin, one result per line
    gradcalc fit ... --params w  fit leaves to data (see gradcalc fit --help)
    """
    from ..settings import CLI, Settings, validate
    o = SimpleNamespace(**options)           # every option above, by its parameter name
    # --plot: v = 1 makes each grad element the derivative there
    grad = "1" if o.plot is not None and o.grad is None else o.grad
    limits = build_limits(o.max_elements, o.max_memory, o.max_depth, o.symbolic_timeout,
                          o.max_text, o.max_repeat)
    settings = validate(Settings(grad=grad, wrt=o.wrt, of=o.of, repeat=o.repeat,
                                 check=o.check, rtol=o.rtol, atol=o.atol, jacobian=o.jacobian,
                                 dtype=o.dtype, seed=o.seed, tangent=list(o.tangent) or None,
                                 hessian=o.hessian, hvp=list(o.hvp) or None, taylor=o.taylor,
                                 steps=o.steps),
                        limits, CLI)
    externs_of = lambda: open_externs(o.externs, o.extern_diff, o.extern_step,  # noqa: E731
                                      o.extern_timeout, limits)
    if program_file is None and args and args[0] == "-":
        if len(args) > 1:
            raise GradcalcError("usage", "gradcalc - reads requests from stdin; "
                                         "NAME=VALUE arguments belong inside each request")
        return _stream(settings, limits, o.debug, read_data_files(o.data, settings, limits),
                       externs_of)
    stdin = Stdin(limits.max_text)
    text, bindings = _text_and_bindings(args, program_file, grad, stdin, limits)
    if o.data:
        bindings = {**read_data_files(o.data, settings, limits), **bindings}
    if o.dot is not None:
        if o.dot == "-" and o.as_json:
            raise GradcalcError("usage", "--dot - and --json both write to stdout: give --dot a "
                                         "file name")
        check_writable(o.dot, "--dot")
    from ..api import run
    if o.claim and bindings:
        raise GradcalcError("usage", "--claim judges a derivative without numbers: give no "
                                     "NAME=VALUE")
    with externs_of() as ex:
        try:
            # the human view shows the answer before a slow check finishes
            human = not o.as_json and o.dot != "-"
            result = run(text, bindings, settings, limits, stdin=stdin, externs=ex,
                         defer_checks=human)
        except GradcalcError as err:
            if err.kind != "name" or bindings:
                raise
            status = _derivative(text, o.claim, limits, o.as_json)
            if status is None:
                raise
            return status
        if o.claim:
            raise GradcalcError("usage", "--claim judges a derivative without numbers, but "
                                         "every name of the expression is bound")
        if o.plot is not None:
            _plot(result, o.plot)
        return _write_result(result, limits, o)


def _stream(settings, limits, debug, data_values, externs_of) -> int:
    """`gradcalc -`: JSON Lines, with a status line on a terminal's stderr."""
    from ..jsonl import serve
    from ..view.progress import StreamProgress
    long_running()
    progress = StreamProgress()
    try:
        with externs_of() as ex:
            return serve(settings, limits, debug, data=data_values, externs=ex,
                         on_answer=progress.answered)
    finally:
        progress.close()


def _text_and_bindings(args, program_file, grad, stdin, limits) -> tuple[str, dict]:
    """The expression or program text (from argv, -f FILE or -f -) and NAME=VALUE."""
    if program_file is None:
        if not args:
            raise GradcalcError("usage", "give an EXPRESSION, -f PROGRAM.grad, or - for JSON "
                                         "Lines (see gradcalc --help)")
        bindings = split_bindings(args[1:])
        stdin_once(bindings, grad, False)
        return args[0], bindings
    bindings = split_bindings(args)
    stdin_once(bindings, grad, program_file == "-")
    if program_file == "-":
        return stdin(), bindings
    try:
        # utf-8-sig: a byte-order mark from a Windows editor is not program text
        with open(program_file, encoding="utf-8-sig") as fh:
            return fh.read(limits.max_text + 1), bindings   # bounded: -f /dev/zero
    except UnicodeDecodeError:
        raise GradcalcError("usage", f"cannot read {quoted(program_file)}: it is not UTF-8 text")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GradcalcError("usage", f"cannot read {quoted(program_file)}: {reason}")


def _plot(result, path):
    """--plot: y and dy/dx over the grid leaf, in the terminal (before the view) or a file."""
    from ..api import curve
    name, x, y, dydx = curve(result)
    if path != "-":
        from ..view.plot import derivative_file
        derivative_file(name, x, y, dydx, path)
        return
    from ..view.plot import derivative_lines
    from ..view.style import glyphs, make_console
    console = make_console()
    for line in derivative_lines(name, x, y, dydx, width=min(console.width, 100),
                                 ascii_only=glyphs(console)["d"] == "d"):
        console.print(line, highlight=False, markup=False)
    console.print()


def _write_result(result, limits, o) -> int:
    """The answer on stdout (and the graph in --dot), as the options `o` ask."""
    try:
        if o.dot is not None:
            from ..view.graph import to_dot
            write_text(o.dot, to_dot(result), "--dot")
        if o.as_json:
            from ..jsontext import dump
            from ..result import check_json_size
            check_json_size(result, limits)
            dump(result.to_json(arrays=True), sys.stdout)
            sys.stdout.write("\n")
        elif o.dot != "-":        # `--dot -` puts the graph on stdout instead of the view
            from ..view.human import render
            render(result, precision=o.precision, show_graph=o.graph, brief=o.brief)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:       # stdout on a full disk (>/dev/full) or a failing device
        raise OutputError(exc) from None
    return EXIT_OK if result.passed else EXIT_DISAGREED


def _derivative(text, claims, limits, as_json) -> int | None:
    """A derivative without numbers, when the text names variables bound nowhere (None
    when it does not: then the name error stands)."""
    from ..derive import derive, free_names
    if not free_names(text, limits):
        return None
    try:
        d = derive(text, limits, claims)
    except GradcalcError as err:
        if err.kind == "usage" and not claims:   # not a scalar formula: the name error stands
            return None
        raise
    if as_json:
        from ..jsontext import print_line
        print_line(d.to_json(), sys.stdout)
    else:
        from ..view.human import render_derivation
        render_derivation(d)
    return EXIT_OK if d.passed else EXIT_DISAGREED
