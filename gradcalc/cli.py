"""The command line: click options -> api.run -> the human view, JSON, or JSON Lines.

The CLI owns argument syntax, where output goes (stdout for results, stderr for
diagnostics), exit statuses (0 ok, 1 a check disagreed, 2 bad input, 3 internal error) and
the JSON Lines loop. It computes nothing itself and imports rich only for the human view.
"""
from __future__ import annotations

import json
import os
import sys

import click
import click.utils

from . import __version__
from .errors import GradcalcError, Limits, caret_lines, escape_text

EXAMPLES = """\b
Examples (the worked examples of the PyTorch pages gradcalc grew from):

\b
  # y.backward([0.1, 1.0, 0.0001]): each leaf's grad is v^T.J, the rows of the
  # Jacobian J weighted by v and added up: a.grad = [0.3, 3, 0.0003]
  gradcalc '3*a + 2*b*b + log(c)' a=1,2,3 b=3,4,5 c=6,7,8 -g 0.1,1.0,0.0001
  # the same program from a file that carries its cotangent in a '#:' line
  gradcalc -f samples/hindi_vjp_weights.grad

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
  gradcalc -f samples/hindi_vjp_weights.grad --graph --dot graph.dot

\b
VALUE forms: 2.5 | 1,2,3 | '[[1,2],[3,4]]' | 'linspace(-1,1,5)' | @file.json | @a.npy |
             @table.csv | @- (stdin)
Exit status: 0 ok, 1 a cross-check disagreed, 2 bad input, 3 internal error.
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

    def __init__(self, max_chars: int | None = None):
        self.used = False
        self.max_chars = max_chars

    def __call__(self) -> str:
        if self.used:
            raise GradcalcError("usage", "standard input can be read only once (@- given twice)")
        self.used = True
        limit = self.max_chars if self.max_chars is not None else Limits().max_text
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
        _write(sys.stdout, json.dumps({"error": {
            "kind": "internal", "message": f"internal error ({type(exc).__name__}); this is a "
            "bug in gradcalc, please report it", "position": None}}) + "\n")
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
                                 "ignore_unknown_options": True, "max_content_width": 100},
               epilog=EXAMPLES)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="EXPRESSION [NAME=VALUE ...]")
@click.option("-f", "--file", "program_file", metavar="PROGRAM.grad",
              help="Read a program from a file (NAME=VALUE still binds leaves).")
@click.option("-g", "--grad", metavar="VALUE",
              help="The cotangent v passed to backward: the output's shape, or one number.")
@click.option("--wrt", metavar="a,b", help="Leaves that require grad (default: all).")
@click.option("--of", metavar="NAME", help="Run backward from this named intermediate.")
@click.option("--repeat", type=int, metavar="N", help="Call backward N times; grads accumulate.")
@click.option("--check", type=click.Choice(["symbolic", "numeric", "all", "none"]),
              help="Cross-check (default symbolic).")
@click.option("--rtol", type=float, help="Relative tolerance of the checks.")
@click.option("--atol", type=float, help="Absolute tolerance of the checks.")
@click.option("--jacobian/--no-jacobian", default=None,
              help="Compute the Jacobian (default: when at most 10,000 entries).")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), help="Precision (default float64).")
@click.option("--seed", type=int, help="Seed for rand/randn.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--graph", is_flag=True, help="Show the autograd graph with PyTorch node names.")
@click.option("--dot", metavar="FILE", help="Write the graph as Graphviz DOT.")
@click.option("--precision", type=click.IntRange(1, 17), default=None, metavar="N",
              help="Significant digits in the human view (default 6).")
@click.option("--max-elements", type=int, metavar="N", help="Elements per array (default 10^8).")
@click.option("--max-memory", metavar="SIZE", help="Working memory (default 2G).")
@click.option("--max-depth", type=int, metavar="N", help="Nesting depth (default 200).")
@click.option("--symbolic-timeout", type=float, metavar="S", help="Symbolic check budget (default 10 s).")
@click.option("--max-text", type=int, metavar="N",
              help="Characters of an expression, program or text VALUE (default 1,000,000).")
@click.option("--max-repeat", type=int, metavar="N", help="Largest --repeat (default 10,000).")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.version_option(__version__, "--version", prog_name="gradcalc")
def command(args, program_file, grad, wrt, of, repeat, check, rtol, atol, jacobian, dtype, seed,
            as_json, graph, dot, precision, max_elements, max_memory, max_depth,
            symbolic_timeout, debug, max_text=None, max_repeat=None):
    """Reverse-mode gradients of an expression, as PyTorch's y.backward(v) computes them.

    \b
    gradcalc EXPRESSION [NAME=VALUE ...]  one calculation
    gradcalc -f PROGRAM.grad [NAME=VALUE ...]  a program file
    gradcalc - [OPTIONS]  JSON Lines requests on stdin, one result per line
    """
    from .api import Settings
    limits = build_limits(max_elements, max_memory, max_depth, symbolic_timeout, max_text,
                          max_repeat)
    settings = Settings(grad, wrt, of, repeat, check, rtol, atol, jacobian, dtype, seed)
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
                with open(program_file, encoding="utf-8") as fh:
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
        _check_writable(dot)
    from .api import run
    result = run(text, bindings, settings, limits, stdin=stdin)
    if dot is not None:
        from .view.graph import to_dot
        try:
            with open(dot, "w", encoding="utf-8") as fh:
                fh.write(to_dot(result))
        except OSError as exc:       # a full disk, or the path changed since it was checked
            raise GradcalcError("usage", f"--dot: cannot write to {_q(dot)}: "
                                         f"{exc.strerror or type(exc).__name__}")
    if as_json:
        from .api import check_json_size
        check_json_size(result, limits)
        sys.stdout.write(json.dumps(result.to_json(), allow_nan=False) + "\n")
    else:
        from .view.human import render
        render(result, precision=precision, show_graph=graph)
    return 0 if result.passed else 1


def _check_writable(path):
    d = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path) or not os.path.isdir(d) or not os.access(d, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise GradcalcError("usage", f"--dot: cannot write to {_q(path)}")


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
    except BrokenPipeError:
        _silence_stdout()
    code = status if isinstance(status, int) else 0
    if owner:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)
    sys.exit(code)


def _main(argv, as_json, debug) -> int:
    try:
        status = command.main(argv, prog_name="gradcalc", standalone_mode=False)
    except GradcalcError as err:
        report_error(err, as_json)
        status = 2
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.UsageError as exc:
        report_error(GradcalcError("usage", exc.format_message()), as_json)
        status = 2
    except click.ClickException as exc:
        report_error(GradcalcError("usage", exc.format_message()), as_json)
        status = 2
    except click.Abort:
        status = 2
    except SystemExit as exc:
        # click turns a broken pipe (EPIPE) into sys.exit(1) after wrapping the streams; but
        # 1 means "a check disagreed" here. The reader went away: leave quietly.
        if isinstance(sys.stdout, click.utils.PacifyFlushWrapper):
            _silence_stdout()
            status = 0
        else:
            raise
    except KeyboardInterrupt:
        _write(sys.stderr, "gradcalc: interrupted\n")
        status = 130
    except BrokenPipeError:
        _silence_stdout()
        status = 0
    except RecursionError as exc:
        report_error(GradcalcError("limit", "the input is nested too deeply"), as_json)
        status = 2
        del exc
    except MemoryError:
        report_error(GradcalcError("limit", "out of memory (see --max-memory)"), as_json)
        status = 2
    except Exception as exc:  # a bug: short message, traceback only with --debug
        internal_error(exc, debug, as_json)
        status = 3
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
