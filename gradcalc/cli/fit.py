"""`gradcalc fit`: the command line of SPEC section 10, over gradcalc.fit.

It owns the fit's options (reading them into a FitRequest: values from NAME=VALUE, --data
files and the program itself, start values from --params), where its output goes (the
report on stdout, progress on stderr only on a terminal, --history and --save-params
files written whole, the loss curve in the report on a terminal or when asked) and its
exit statuses. It trains nothing itself.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace

import click

from ..errors import (EXIT_DISAGREED, EXIT_INTERRUPTED, EXIT_OK, GradcalcError, Limits,
                      OutputError, escape_text)
from ..outputs import check_writable, write_text
from .options import build_limits, extern_options, open_externs, split_bindings

OPTIMIZERS = ("sgd", "adam", "adamw", "lm")

FIT_EXAMPLES = """\b
Examples:

\b
  # the German seed page's training: Adam, MSELoss, batches of 10, 20 epochs
  # (here on a grid; --data points.csv reads x and y from a file's columns)
  gradcalc fit 'mse_loss(2*x*w[0] + x**2*w[1], y)' x='linspace(0,1,200)' \\
      y='2.4*linspace(0,1,200) - 3.4*linspace(0,1,200)**2' --params w=0,0 \\
      --optimizer adam --lr 0.1 --epochs 20 --batch-size 10
  # least squares with Levenberg-Marquardt: the residuals, standard errors, correlation
  gradcalc fit 'a*exp(-k*t) - y' t='linspace(0,4,50)' y='3*exp(-1.3*linspace(0,4,50))' \\
      --params a=1 --params k=1 --optimizer lm

\b
Exit status: 0 done, 1 the loss became NaN or infinite, 2 bad input, 130 interrupted
(the parameters so far are still reported).
"""


def _floats(text, option, n=None):
    try:
        out = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise GradcalcError("usage", f"{option} takes numbers, got '{escape_text(text)[:60]}'")
    if n is not None and len(out) != n:
        raise GradcalcError("usage", f"{option} takes {n} numbers separated by a comma")
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "max_content_width": 100},
               epilog=FIT_EXAMPLES)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="EXPRESSION [NAME=VALUE ...]")
@click.option("-f", "--file", "program_file", metavar="PROGRAM.grad",
              type=click.Path(dir_okay=False, allow_dash=True), help="Read the loss from a file.")
@click.option("--params", "params", multiple=True, metavar="w[,b] | w=VALUE",
              help="The leaves to optimise (repeatable; w=VALUE gives a start value).")
@click.option("--data", "data", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False), help="Bind the arrays of a CSV/TSV/JSON/.npz file.")
@click.option("--optimizer", metavar="[sgd|adam|adamw|lm]", default="adam",
              help="PyTorch's update rule, or Levenberg-Marquardt (default adam).")
@click.option("--lr", type=float, help="Learning rate (torch's default for the optimizer).")
@click.option("--momentum", type=float, help="SGD momentum.")
@click.option("--dampening", type=float, help="SGD dampening.")
@click.option("--nesterov", is_flag=True, default=None, help="SGD Nesterov momentum.")
@click.option("--weight-decay", type=float, help="L2 penalty (AdamW: decoupled).")
@click.option("--betas", metavar="B1,B2", help="Adam's betas (default 0.9,0.999).")
@click.option("--eps", type=float, help="Adam's eps (default 1e-8).")
@click.option("--amsgrad", is_flag=True, default=None, help="Adam's AMSGrad variant.")
@click.option("--epochs", type=int, metavar="N",
              help="Passes over the data (lm: iterations; default 10, lm 100).")
@click.option("--batch-size", type=int, metavar="B", help="Rows per mini-batch (default: all).")
@click.option("--shuffle", is_flag=True, help="Reorder the rows every epoch (from --seed).")
@click.option("--seed", type=int, default=0, metavar="N", help="Seed for --shuffle and rand.")
@click.option("--tol", type=float, metavar="X",
              help="Stop when the epoch loss changes by less than X relative.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              help="Precision (float32 reproduces PyTorch's default tensors).")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@click.option("--history", metavar="FILE.jsonl", type=click.Path(dir_okay=False, allow_dash=True),
              help="Stream one JSON line per epoch to FILE while it runs.")
@click.option("--save-params", metavar="FILE.json", type=click.Path(dir_okay=False),
              help="Write the fitted parameters as a --data file.")
@click.option("--plot", "plot", is_flag=False, flag_value="-", metavar="[FILE.png|.svg]",
              help="Draw the loss curve in the report even when stdout is not a terminal, "
                   "or write it into FILE (an image: needs the plot extra).")
@extern_options
@click.option("--max-elements", type=int, metavar="N", help="Elements per array (default 10^8).")
@click.option("--max-memory", metavar="SIZE", help="Working memory (default 2G).")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def fit_command(args, program_file, **options):
    """Fit the leaves named by --params so that the expression's output, the loss, falls:
    PyTorch's optimizers step for step, or Levenberg-Marquardt on a residual vector.

    \b
    gradcalc fit EXPRESSION [NAME=VALUE ...] --params w [OPTIONS]
    gradcalc fit -f PROGRAM.grad [NAME=VALUE ...] --params w [OPTIONS]
    """
    opts = SimpleNamespace(**options)        # every option above, by its parameter name
    limits = build_limits(opts.max_elements, opts.max_memory, None, None)
    with open_externs(opts.externs, opts.extern_diff, opts.extern_step, opts.extern_timeout,
                      limits) as ex:
        text, bindings = _text_and_bindings(args, program_file, limits)
        return _fit(text, bindings, opts, limits, None if ex is None else ex.ops)


def _fit(text, bindings, opts, limits, externs) -> int:
    """Train as the options ask and write what they ask for; the exit status."""
    for path in (p for p in (opts.save_params, opts.plot) if p and p != "-"):
        check_writable(path, "--save-params" if path == opts.save_params else "--plot")
    if opts.history and opts.history != "-":
        check_writable(opts.history, "--history")
    req = _request(text, bindings, opts, limits, externs)
    from ..fit.loop import Interrupted, fit
    from ..view.progress import FitProgress
    stream = _History(opts.history)
    status = EXIT_OK
    with FitProgress(req.epochs, enabled=not opts.as_json and sys.stderr.isatty()) as progress:
        try:
            result = fit(req, on_epoch=lambda e: (stream.write(e), progress.epoch(e)),
                         on_step=progress.step)
        except Interrupted as stop:
            result, status = stop.result, EXIT_INTERRUPTED
        finally:
            stream.close()
    if result.stopped == "nonfinite":
        status = EXIT_DISAGREED
    _write(result, text, opts)
    if status == EXIT_INTERRUPTED:
        sys.stderr.write("gradcalc: interrupted; the parameters so far are shown\n")
    return status


def _write(result, text: str, opts):
    """--save-params and --plot FILE, then the report on stdout: JSON, or the human report."""
    if opts.save_params:
        from ..result import to_plain
        from ..jsontext import text as json_text
        write_text(opts.save_params, json_text({k: to_plain(v) for k, v in
                                                result.params.items()}) + "\n", "--save-params")
    if opts.plot and opts.plot != "-":
        from ..view.plot import loss_curve_file
        loss_curve_file(result.history, opts.plot, log=_spans_decades(result.history))
    try:
        if opts.as_json:
            from ..jsontext import print_line    # (orjson: only where JSON is written)
            print_line(result.to_json(), sys.stdout)
        else:
            # the curve is a picture for a terminal: piped, it costs its drawing's modules
            # (uniplot, numpy.ma: a tenth of figure 17a's process) unless --plot asks for it
            from ..view.fit import render_fit
            render_fit(result, text, curve=opts.plot == "-" or sys.stdout.isatty())
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:       # stdout on a full disk (>/dev/full) or a failing device
        raise OutputError(exc) from None


def _text_and_bindings(args, program_file, limits: Limits):
    if program_file is not None:
        try:
            with open(program_file, encoding="utf-8-sig") as fh:
                text = fh.read(limits.max_text + 1)
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
            raise GradcalcError("usage", f"cannot read '{escape_text(program_file)[:200]}': "
                                         f"{reason}")
        return text, split_bindings(args)
    if not args:
        raise GradcalcError("usage", "give the loss: gradcalc fit EXPRESSION ... --params w "
                                     "(see gradcalc fit --help)")
    return args[0], split_bindings(args[1:])


def _params(params) -> tuple[list, dict]:
    """--params w,b and --params w=0,0 (repeatable): the names in order, and start values."""
    names, starts = [], {}
    for p in params:
        name, eq, value = p.partition("=")
        parts = [name] if eq else [n.strip() for n in p.split(",") if n.strip()]
        for n in parts:
            if not n.isidentifier() or not n.isascii():
                raise GradcalcError("usage", f"--params: '{escape_text(n)[:60]}' is not a name")
            if n in names:
                raise GradcalcError("usage", f"--params: {n} is given twice")
            names.append(n)
        if eq:
            starts[name] = value
    return names, starts


def _hyper(opts) -> dict:
    """The optimizer's hyper-parameters the options give (the rest are torch's defaults)."""
    if opts.optimizer not in OPTIMIZERS:
        raise GradcalcError("usage", f"--optimizer must be one of {', '.join(OPTIMIZERS)}, "
                                     f"got '{escape_text(opts.optimizer)[:60]}'")
    given = {"lr": opts.lr, "momentum": opts.momentum, "dampening": opts.dampening,
             "nesterov": opts.nesterov, "weight_decay": opts.weight_decay, "eps": opts.eps,
             "amsgrad": opts.amsgrad,
             "betas": None if opts.betas is None else _floats(opts.betas, "--betas", 2)}
    hyper = {k: v for k, v in given.items() if v is not None}
    if opts.optimizer == "lm" and hyper:
        raise GradcalcError("usage", f"--{next(iter(hyper)).replace('_', '-')} does not apply "
                                     "to --optimizer lm")
    return hyper


def _request(text, bindings, opts, limits, externs):
    """The FitRequest: every leaf's value (--data files, then NAME=VALUE, then --params
    w=VALUE, and the program's own leaves, compiled once to find them) and the options."""
    import numpy as np
    from ..api import value_of
    from ..datafile import read_data
    from ..fit.loop import FitRequest
    from ..programs import compile_program
    from ..settings import Settings
    names, starts = _params(opts.params)
    hyper = _hyper(opts)
    if not names:
        raise GradcalcError("usage", "--params names the leaves to optimise, e.g. --params w "
                                     "or --params w=0,0")
    dt = np.dtype(opts.dtype)
    values = {}
    for path in opts.data:
        values.update(read_data(path, dtype=dt, limits=limits))
    read = lambda v, label: value_of(v, label, dt, limits, opts.seed)  # noqa: E731
    values.update({k: read(v, k) for k, v in bindings.items()})
    values.update({k: read(v, f"--params {k}") for k, v in starts.items()})
    graph = compile_program(text, values, dt, Settings(seed=opts.seed), limits, externs)
    for name in graph.leaf_order:            # leaves the program binds itself (w = [0, 0])
        values.setdefault(name, graph.nodes[graph.leaves[name]].value)
    return FitRequest(text=text, values=values, params=names, optimizer=opts.optimizer,
                      hyper=hyper, epochs=opts.epochs or (100 if opts.optimizer == "lm" else 10),
                      batch_size=opts.batch_size, shuffle=opts.shuffle, seed=opts.seed,
                      tol=opts.tol, dtype=opts.dtype, limits=limits, externs=externs)


def _spans_decades(history) -> bool:
    import math
    losses = [h.loss for h in history if math.isfinite(h.loss) and h.loss > 0]
    return bool(losses) and max(losses) / min(losses) >= 100


class _History:
    """--history FILE.jsonl: one line per epoch, flushed as it is written. A file that
    cannot be written (a full disk) is a usage error naming the option, as --save-params's."""

    def __init__(self, path):
        self.fh, self.path = None, path
        if path == "-":
            self.fh = sys.stderr
        elif path:
            try:
                self.fh = open(path, "w", encoding="utf-8")
            except OSError as exc:
                raise self._cannot(exc) from None

    def write(self, epoch):
        if self.fh is not None:
            from ..jsontext import text     # (orjson: only where JSON is written)
            try:
                self.fh.write(text(epoch.to_json()) + "\n")
                self.fh.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise self._cannot(exc) from None

    def close(self):
        if self.fh is not None and self.fh is not sys.stderr:
            fh, self.fh = self.fh, None
            try:
                fh.close()                  # (what a failed write left is flushed again)
            except OSError as exc:
                raise self._cannot(exc) from None

    def _cannot(self, exc: OSError) -> GradcalcError:
        return GradcalcError("usage", f"--history: cannot write to "
                                      f"'{escape_text(self.path)[:200]}': {exc.strerror}")
