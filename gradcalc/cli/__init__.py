"""The process: `gradcalc ...` from argv to an exit status.

`main` picks the command (`gradcalc fit` or the calculator), arranges the arguments so that
an expression is never read as an option, runs the command, and maps how it ended to the
exit statuses of the README (0, 1, 2, 3, 4, 130): a bad input as one line on stderr (and as
JSON when JSON was asked for), a bug as a short message, Ctrl-C, a closed pipe and a full
disk each as themselves. When gradcalc is the program it also tunes and ends the process.
"""
from __future__ import annotations

import os
import re
import sys

import click

from .. import lazysympy
from ..errors import (EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT,
                      GradcalcError, OutputError, as_error, caret_lines, escape_text,
                      internal_error_json)

def report_error(err: GradcalcError, as_json: bool):
    """A bad input: one-line reason on stderr (with a caret for positions), JSON on stdout
    when asked for."""
    if as_json:
        _write_json({"error": err.to_json()})
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


def _write_json(obj):
    """An error object on stdout (as UTF-8 bytes, whatever the locale), as _write writes."""
    from ..jsontext import print_line      # (only a failure writes it)
    try:
        print_line(obj, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, AttributeError, ValueError):
        pass


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
        _write_json({"error": internal_error_json(exc)})
    _write(sys.stderr,
        f"gradcalc: internal error ({type(exc).__name__}: {escape_text(str(exc))[:200]}). "
        "This is a bug in gradcalc; please report it with the command that caused it "
        "(rerun with --debug for the traceback).\n")


# start-up levers, used only when gradcalc is the program (see _owns_process); measured in
# benchmarks/RESULTS.md: one thread for OpenBLAS (its worker threads cost numpy's import ~40%
# CPU, which a busy second core makes wall time; export OPENBLAS_NUM_THREADS to choose),
# no garbage collection during a one-shot run (a collection lands inside the imports, and
# a single calculation makes little cyclic garbage), sympy's tensor module loaded only if
# used (lazysympy: its first sum would import it), and os._exit once every stream is
# flushed (interpreter teardown of numpy and sympy is a quarter of a one-liner's exit)
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


def main(argv=None):
    owner = argv is None and _owns_process()
    if owner:
        import gc
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        gc.disable()          # a long JSON Lines stream turns it back on (options.long_running)
        lazysympy.install()
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
_FILE_NAME = re.compile(r"[\w./~-]+\.(png|svg|pdf)", re.I)


def arrange(argv: list, cmd: click.Command) -> list:
    """The arguments with every option first and every positional argument after `--`.

    An argument that is `--` and a name (`--json`, `--grad=1`), or `-` and letters only
    (`-g`, `-x`), is an option
    (an unknown one is an error with click's "Did you mean"); the value an option takes is
    the next argument whatever it looks like (`-g -1`), and none left is a usage error. Any
    other argument that starts with `-` (`-tanh(x)`, `-2*x`, `-x*y`) is an expression or a
    VALUE, never a cluster of short options: so `gradcalc '-tanh(x)' x=2 --json` computes
    instead of printing --help."""
    takes_value = {name for p in cmd.params if isinstance(p, click.Option)
                   and not p.is_flag and not p.count and not p._flag_needs_value
                   for name in p.opts + p.secondary_opts}
    # an option whose value may be left out (--plot [FILE]) takes the next argument only
    # when it is neither an option, a NAME=VALUE, nor an expression
    maybe_value = {name for p in cmd.params if isinstance(p, click.Option)
                   and p._flag_needs_value for name in p.opts}
    # a short option is handed to click under its long name: click tries every option as a
    # long one first, and its "no such option" on the way builds "Did you mean" with difflib
    # (a module a one-liner with -g would otherwise import for nothing)
    long_name = {short: max(p.opts, key=len) for p in cmd.params if isinstance(p, click.Option)
                 for short in p.opts if len(short) == 2 and any(len(o) > 2 for o in p.opts)}
    options, positional = [], []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positional += rest
            break
        if _LONG_OPTION.fullmatch(arg) or _SHORT_CLUSTER.fullmatch(arg):
            takes = arg in takes_value or (arg[1] != "-" and "-" + arg[-1] in takes_value)
            if takes and not rest:      # else click would take the `--` added below as it
                raise click.BadOptionUsage(arg, f"Option '{arg}' requires an argument.")
            options.append(long_name.get(arg, arg))
            if rest and (takes or (arg in maybe_value and _FILE_NAME.fullmatch(rest[0]))):
                options.append(rest.pop(0))
        else:
            positional.append(arg)
    return options + ["--"] + positional if positional else options


def _main(argv, as_json, debug) -> int:
    """Run the command and map how it ended to an exit status. Click's own `main` is not
    used: it turns Ctrl-C into a bare newline and `Abort`, and a closed pipe into exit 1,
    both of which mean something else here."""
    if argv and argv[0] == "fit":           # `gradcalc fit ...`; an expression `fit` is `(fit)`
        from .fit import fit_command as cmd
        name, argv = "gradcalc fit", argv[1:]
    else:
        from .calc import command as cmd
        name = "gradcalc"
    try:
        with cmd.make_context(name, arrange(argv, cmd)) as ctx:
            status = cmd.invoke(ctx)
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
