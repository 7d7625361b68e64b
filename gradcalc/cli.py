"""The command line: click options -> api.run -> the human view, JSON, or JSON Lines.

The CLI owns argument syntax, where output goes (stdout for results, stderr for
diagnostics), exit statuses (0 ok, 1 a check disagreed, 2 bad input, 3 internal error) and
the JSON Lines loop. It computes nothing itself and imports rich only for the human view.
"""
from __future__ import annotations

import json
import os
import re
import sys

import click

from .outputs import check_writable, write_text
from .errors import (EXIT_BAD_INPUT, EXIT_DISAGREED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK,
                     EXIT_OUTPUT, GradcalcError, Limits, OutputError, as_error, caret_lines,
                     escape_text,
                     internal_error_json)

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


def _parse_size(text: str) -> int:
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = 1
    for suffix, m in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        v = float(t) * mult
    except ValueError:
        raise GradcalcError("usage", f"--max-memory takes a size such as 512M or 4G, got "
                                     f"{escape_text(text)!r}")
    if not v > 0 or v == float("inf"):
        raise GradcalcError("usage", "--max-memory must be a positive, finite size")
    return int(v)


def _positive(name, value, kind=int):
    if value is not None and not value > 0:      # also rejects NaN
        raise GradcalcError("usage", f"{name} must be positive, got {value}")
    return value


def build_limits(max_elements, max_memory, max_depth, symbolic_timeout, max_text=None,
                 max_repeat=None) -> Limits:
    lim = Limits()
    if _positive("--max-text", max_text) is not None:
        lim.max_text = max_text
    if _positive("--max-repeat", max_repeat) is not None:
        lim.max_repeat = max_repeat
    if _positive("--max-elements", max_elements) is not None:
        lim.max_elements = max_elements
    if max_memory is not None:
        lim.max_memory = _parse_size(max_memory)
    if _positive("--max-depth", max_depth) is not None:
        lim.max_depth = max_depth
    if _positive("--symbolic-timeout", symbolic_timeout) is not None:
        if symbolic_timeout == float("inf") or symbolic_timeout > 10**7:  # threads cannot wait
            raise GradcalcError("usage", "--symbolic-timeout takes a finite number of seconds "
                                         "(at most 10,000,000)")
        lim.symbolic_timeout = symbolic_timeout
    return lim


class Stdin:
    """@- may be read once per run, and at most `max_chars` characters of it (a VALUE or
    program read from stdin is text under the --max-text limit; /dev/zero must not hang)."""

    def __init__(self, max_chars: int):
        self.used = False
        self.max_chars = max_chars

    def __call__(self) -> str:
        if self.used:
            raise GradcalcError("usage", "standard input can be read only once (@- given twice)")
        self.used = True
        limit = self.max_chars
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:                       # a text stream (tests, embedding)
            text = sys.stdin.read(limit + 1)
        else:
            data = stream.read(4 * limit + 4)    # UTF-8: at most 4 bytes per character
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                if len(data) > 4 * limit:
                    text = "x" * (limit + 1)     # over the limit anyway
                else:
                    raise GradcalcError("value", "standard input is not UTF-8 text")
        if len(text) > limit:
            raise GradcalcError("limit", f"standard input holds more than {limit:,} characters "
                                         "(--max-text)")
        return text


def report_error(err: GradcalcError, as_json: bool):
    """A bad input: one-line reason on stderr (with a caret for positions), JSON on stdout
    when asked for."""
    if as_json:
        _write(sys.stdout, json.dumps({"error": err.to_json()}) + "\n")
    msg = f"gradcalc: {err.kind} error: {escape_text(err.message)}"
    lc = err.line_column()
    if lc is not None and err.source is not None and "\n" in err.source:
        msg += f" (line {lc[0]}, column {lc[1]})"
    elif err.position is not None and err.source is not None:
        msg += f" (column {err.position + 1})"
    lines = [msg]
    if err.position is not None and err.source is not None:
        text, caret = caret_lines(err.source, err.position, width=_caret_width())
        lines += ["  " + text, "  " + caret]
    _write(sys.stderr, "\n".join(lines) + "\n")


def _caret_width() -> int:
    """At most 200 characters around an error; on a terminal no wider than it, so that the
    echoed line does not wrap and the caret stays under its column."""
    try:
        if sys.stderr.isatty():
            import shutil
            return max(20, min(200, shutil.get_terminal_size().columns - 4))
    except (AttributeError, ValueError, OSError):
        pass
    return 200


def _write(stream, text: str):
    """Write a diagnostic; a closed pipe or a closed stream (2>&-) must not turn a clean
    error into a traceback."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        if stream is sys.stdout:
            _silence_stdout()
    except (OSError, AttributeError, ValueError):
        pass


def internal_error(exc: BaseException, debug: bool, as_json: bool = False):
    if debug:
        import traceback
        traceback.print_exception(exc)
    if as_json:                  # a pipeline that asked for JSON still receives JSON
        _write(sys.stdout, json.dumps({"error": internal_error_json(exc)}) + "\n")
    _write(sys.stderr,
        f"gradcalc: internal error ({type(exc).__name__}: {escape_text(str(exc))[:200]}). "
        "This is a bug in gradcalc; please report it with the command that caused it "
        "(rerun with --debug for the traceback).\n")


def split_bindings(args):
    out = {}
    for a in args:
        name, eq, value = a.partition("=")
        if not eq or not name:
            raise GradcalcError("usage", f"expected NAME=VALUE, got {_q(a[:200])}")
        if not name.isidentifier() or not name.isascii():
            raise GradcalcError("usage", f"{_q(name[:200])} is not a variable name")
        if name in out:
            raise GradcalcError("usage", f"{name} is given twice")
        out[name] = value
    return out


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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--graph", is_flag=True, help="Show the autograd graph with PyTorch node names.")
@click.option("--dot", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the graph as Graphviz DOT (- for stdout, instead of the view).")
@click.option("--precision", type=click.IntRange(1, 17), default=None, metavar="N",
              help="Significant digits in the human view (default 6).")
@click.option("--max-elements", type=int, metavar="N", help="Elements per array (default 10^8).")
@click.option("--max-memory", metavar="SIZE", help="Working memory (default 2G).")
@click.option("--max-depth", type=int, metavar="N", help="Nesting depth (default 200).")
@click.option("--symbolic-timeout", type=float, metavar="S", help="Symbolic check budget (default 10 s).")
@click.option("--max-text", type=int, metavar="N",
              help="Characters of an expression, program or text VALUE (default 1,000,000).")
@click.option("--max-repeat", type=int, metavar="N", help="Largest --repeat (default 10,000).")
@click.option("--claim", multiple=True, metavar="'NAME: FORMULA'",
              help="With no NAME=VALUE: is FORMULA the derivative in NAME? (repeatable)")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.version_option(None, "--version", package_name="gradcalc", prog_name="gradcalc")
def command(args, program_file, grad, wrt, of, repeat, check, rtol, atol, jacobian, dtype, seed,
            as_json, graph, dot, precision, max_elements, max_memory, max_depth,
            symbolic_timeout, debug, max_text=None, max_repeat=None, claim=(), tangent=(),
            hessian=None, hvp=(), taylor=None):
    """Reverse-mode gradients of an expression, as PyTorch's y.backward(v) computes them.

    \b
    gradcalc EXPRESSION [NAME=VALUE ...]  one calculation
    gradcalc -f PROGRAM.grad [NAME=VALUE ...]  a program file
    gradcalc - [OPTIONS]  JSON Lines requests on stdin, one result per line
    """
    from .settings import CLI, Settings, validate
    limits = build_limits(max_elements, max_memory, max_depth, symbolic_timeout, max_text,
                          max_repeat)
    settings = validate(Settings(grad, wrt, of, repeat, check, rtol, atol, jacobian, dtype, seed,
                                 list(tangent) or None, hessian, list(hvp) or None, taylor),
                        limits, CLI)
    if program_file is None and args and args[0] == "-" :
        if len(args) > 1:
            raise GradcalcError("usage", "gradcalc - reads requests from stdin; "
                                         "NAME=VALUE arguments belong inside each request")
        from .jsonl import serve
        _long_running()
        return serve(settings, limits, debug)
    stdin = Stdin(limits.max_text)
    if program_file is not None:
        bindings = split_bindings(args)
        _stdin_once(bindings, grad, program_file == "-")
        if program_file == "-":
            text = stdin()
        else:
            try:
                # utf-8-sig: a byte-order mark from a Windows editor is not program text
                with open(program_file, encoding="utf-8-sig") as fh:
                    text = fh.read(limits.max_text + 1)   # bounded: -f /dev/zero must not hang
            except UnicodeDecodeError:
                raise GradcalcError("usage", f"cannot read {_q(program_file)}: it is not UTF-8 "
                                             "text")
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise GradcalcError("usage", f"cannot read {_q(program_file)}: {reason}")
    else:
        if not args:
            raise GradcalcError("usage", "give an EXPRESSION, -f PROGRAM.grad, or - for JSON "
                                         "Lines (see gradcalc --help)")
        text, bindings = args[0], split_bindings(args[1:])
        _stdin_once(bindings, grad, False)
    if dot is not None:
        if dot == "-" and as_json:
            raise GradcalcError("usage", "--dot - and --json both write to stdout: give --dot a "
                                         "file name")
        check_writable(dot, "--dot")
    from .api import run
    if claim and bindings:
        raise GradcalcError("usage", "--claim judges a derivative without numbers: give no "
                                     "NAME=VALUE")
    try:
        result = run(text, bindings, settings, limits, stdin=stdin)
    except GradcalcError as err:
        if err.kind != "name" or bindings:
            raise
        status = _derivative(text, claim, limits, as_json)
        if status is None:
            raise
        return status
    if claim:
        raise GradcalcError("usage", "--claim judges a derivative without numbers, but every "
                                     "name of the expression is bound")
    try:
        if dot is not None:
            from .view.graph import to_dot
            write_text(dot, to_dot(result), "--dot")
        if as_json:
            from .result import check_json_size
            check_json_size(result, limits)
            sys.stdout.write(json.dumps(result.to_json(), allow_nan=False) + "\n")
        elif dot != "-":          # `--dot -` puts the graph on stdout instead of the view
            from .view.human import render
            render(result, precision=precision, show_graph=graph)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:       # stdout on a full disk (>/dev/full) or a failing device
        raise OutputError(exc) from None
    return EXIT_OK if result.passed else EXIT_DISAGREED


def _derivative(text, claims, limits, as_json) -> int | None:
    """A derivative without numbers, when the text names variables bound nowhere (None
    when it does not: then the name error stands)."""
    from .derive import derive, free_names
    if not free_names(text, limits):
        return None
    try:
        d = derive(text, limits, claims)
    except GradcalcError as err:
        if err.kind == "usage" and not claims:   # not a scalar formula: the name error stands
            return None
        raise
    if as_json:
        sys.stdout.write(json.dumps(d.to_json(), allow_nan=False) + "\n")
    else:
        from .view.human import render_derivation
        render_derivation(d)
    return EXIT_OK if d.passed else EXIT_DISAGREED


def _q(text: str) -> str:
    """User text quoted for a message, control characters escaped (once: repr() would double
    the backslashes of the escapes)."""
    return "'" + escape_text(text) + "'"


def _stdin_once(bindings, grad, program_from_stdin):
    """Standard input can feed one thing: say so before reading it (SPEC section 8)."""
    users = [f"{n}=@-" for n, v in bindings.items() if v == "@-"]
    if grad == "@-":
        users.append("--grad @-")
    if program_from_stdin:
        users.insert(0, "-f -")
    if len(users) > 1:
        raise GradcalcError("usage", "standard input can be read only once, but "
                                     f"{' and '.join(users)} both read it")


# start-up levers, used only when gradcalc is the program (see _owns_process); measured in
# benchmarks/RESULTS.md: one thread for OpenBLAS (its worker threads cost numpy's import ~40%
# CPU, which a busy second core makes wall time; export OPENBLAS_NUM_THREADS to choose),
# no garbage collection during a one-shot run (a collection lands inside the imports, and
# a single calculation makes little cyclic garbage), and os._exit once every stream is
# flushed (interpreter teardown of numpy and sympy is a quarter of a one-liner's exit)
_GC_OFF = False


def _owns_process() -> bool:
    """True when gradcalc is the program (its console script, or python -m gradcalc), not a
    function called by someone else's code: only then may it tune and end the process."""
    main_mod = sys.modules.get("__main__")
    spec = getattr(main_mod, "__spec__", None)
    if spec is not None and spec.name == "gradcalc.__main__":
        return True
    path = getattr(main_mod, "__file__", None)
    return bool(path) and os.path.basename(path) in ("gradcalc", "gradcalc-script.py",
                                                     "gradcalc.exe")


def _long_running():
    """A JSON Lines stream may run for hours: collect garbage again, but never rescan what
    the imports created."""
    global _GC_OFF
    if _GC_OFF:
        import gc
        gc.enable()
        gc.freeze()
        _GC_OFF = False


def main(argv=None):
    global _GC_OFF
    owner = argv is None and _owns_process()
    if owner:
        import gc
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        gc.disable()
        _GC_OFF = True
    argv = sys.argv[1:] if argv is None else list(argv)
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:   # started with the stream closed (<&-, >&-, 2>&-)
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))
    debug = "--debug" in argv
    # with --json, and in JSON Lines mode (`gradcalc -`), a failure is also JSON on stdout
    as_json = "--json" in argv or ("-" in argv and "-f" not in argv and "--file" not in argv)
    import warnings
    with warnings.catch_warnings():      # restored afterwards: main() may be called in-process
        if not debug:
            # numpy's RuntimeWarnings (overflow, invalid value) are results here, not news:
            # they must not reach stderr, least of all once per JSON Lines request
            warnings.simplefilter("ignore")
        status = _main(argv, as_json, debug)
    try:
        sys.stdout.flush()
    except OSError:              # the reader went away, or the error JSON met a full disk
        _silence_stdout()
    code = status if isinstance(status, int) else 0
    if owner:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)
    sys.exit(code)


_SHORT_CLUSTER = re.compile(r"-[A-Za-z]+")
_LONG_OPTION = re.compile(r"--[A-Za-z][-A-Za-z0-9]*(=.*)?", re.S)


def arrange(argv: list, cmd: click.Command) -> list:
    """The arguments with every option first and every positional argument after `--`.

    An argument that is `--` and a name (`--json`, `--grad=1`), or `-` and letters only
    (`-g`, `-x`), is an option
    (an unknown one is an error with click's "Did you mean"); the value an option takes is
    the next argument whatever it looks like (`-g -1`). Any other argument that starts with
    `-` (`-tanh(x)`, `-2*x`, `-x*y`) is an expression or a VALUE, never a cluster of short
    options: so `gradcalc '-tanh(x)' x=2 --json` computes instead of printing --help."""
    takes_value = {name for p in cmd.params if isinstance(p, click.Option)
                   and not p.is_flag and not p.count for name in p.opts + p.secondary_opts}
    options, positional = [], []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            positional.extend(it)
            break
        if _LONG_OPTION.fullmatch(arg) or _SHORT_CLUSTER.fullmatch(arg):
            options.append(arg)
            if arg in takes_value or (arg[1] != "-" and "-" + arg[-1] in takes_value):
                value = next(it, None)
                if value is not None:
                    options.append(value)
        else:
            positional.append(arg)
    return options + ["--"] + positional if positional else options


def _main(argv, as_json, debug) -> int:
    """Run the command and map how it ended to an exit status. Click's own `main` is not
    used: it turns Ctrl-C into a bare newline and `Abort`, and a closed pipe into exit 1,
    both of which mean something else here."""
    try:
        with command.make_context("gradcalc", arrange(argv, command)) as ctx:
            status = command.invoke(ctx)
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.ClickException as exc:
        message = exc.format_message()
        if isinstance(exc, click.NoSuchOption) and _SHORT_CLUSTER.fullmatch(exc.option_name):
            message += (" (an expression that is a minus and a name only is read as options: "
                        f"write it as '(-{exc.option_name[1:]})')")
        report_error(GradcalcError("usage", message), as_json)
        status = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _write(sys.stderr, "gradcalc: interrupted\n")
        status = EXIT_INTERRUPTED
    except OutputError as exc:
        _silence_stdout()
        _write(sys.stderr, f"gradcalc: cannot write the output: {exc}\n")
        status = EXIT_OUTPUT
    except BrokenPipeError:
        _silence_stdout()
        status = EXIT_OK
    except Exception as exc:  # noqa: BLE001 - bad input is exit 2, anything else a bug
        err = as_error(exc)
        if err is not None:
            report_error(err, as_json)
            status = EXIT_BAD_INPUT
        else:             # a bug: short message, traceback only with --debug
            internal_error(exc, debug, as_json)
            status = EXIT_INTERNAL
    return status


def _silence_stdout():
    """The reader went away (`| head -1`): point stdout at /dev/null so that the flush at
    interpreter exit does not print "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
