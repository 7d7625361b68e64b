"""The performance figures of issues 6, 10, 11, 13 and 15, each a ratio against a floor
measured in the same run (or, for a cost curve, its fitted exponent).

    python benchmarks/run.py [--torch-python PATH] [--quick] [--only 1,3,8] [--profile]
                             [--previous benchmarks/RESULTS.md]

Every figure runs in fresh worker processes (`--worker NAME`), floor and gradcalc
interleaved in pairs; the figure is the median of the pairs' ratios, repeated until the
bootstrap interval of that median is within a few per cent (or a time budget runs out), and
the table gives its spread: the interquartile range of the ratios and that interval. Whole
processes are timed in wall time and in CPU time (user + system of the child, from wait4).
The main process prints one markdown table and the machine it ran on. It is a measurement,
not a test: nothing here asserts a time. Torch (and JAX, scipy) are timed when the
interpreter given by --torch-python (default: $GRADCALC_TORCH_PYTHON when it is set) can
import them; otherwise those columns say so and the run goes on. Figures 16 (JSON Lines cost
curves) and 17 (gradcalc fit) are blocks of their own, each between `====` rulers. Figure 12 (a dense
Hessian) is a ratio against torch (12a) and jax (12b) themselves, one thread each, and is
skipped without them. With --previous, each ratio is set beside the same figure's ratio in
an earlier run's table, so the agreement of two runs is shown rather than assumed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_EXPR = "3*a + 2*b*b + log(c)"
SEED_ARGS = [SEED_EXPR, "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]

TARGETS = {
    "1": 1.25, "2": 0.85, "2·fresh": 0.85, "3a": 1.3, "3b": 1.3, "4": 1.5, "5": 2.0,
    "6": 2.0, "7": 3.0,
    "3c": 1.3, "3d": 1.3, "5b": 2.0, "6b": 2.0,
    "E1": 1.1, "E2": 1.1, "E3": 1.1, "E4": 1.1,
    "8a": 4.0, "8b": 10.0, "9": 1.5, "10": 2.0,
    "14": 1.0, "17a": 1.3, "17a·json": 1.3, "17a·torch": 1.0, "17b": 1.5, "17c": 1.0, "17d": 1.5,
}
# figure 9's floor: the same forward and VJP written by hand, printed, as one process
BIG_VIEW_N = 10**7
BIG_VIEW_BY_HAND = ("import numpy as np\n"
                    f"x = np.linspace(0, 1, {BIG_VIEW_N})\n"
                    "y = (x ** 2).sum()\n"
                    "grad = 2 * x * 1.0\n"
                    "print(y, grad)\n")
# figure 10's floor: the same numbers, the same object of SPEC 4, written with orjson
# (which writes NaN as null: non-finite arrays go through strings, as SPEC 4 requires)
BIG_JSON_BY_HAND = (
    "import sys\n"
    "import numpy as np\n"
    "import orjson\n"
    "def arr(a):\n"
    "    if np.isfinite(a).all():\n"
    "        return a\n"
    "    o = a.astype(object)\n"
    "    o[np.isnan(a)] = 'NaN'\n"
    "    o[np.isposinf(a)] = 'Infinity'\n"
    "    o[np.isneginf(a)] = '-Infinity'\n"
    "    return o.tolist()\n"
    f"x = np.linspace(0, 1, {BIG_VIEW_N})\n"
    "y = (x ** 2).sum()\n"
    "grad = 2 * x * 1.0\n"
    "obj = {'expression': 'sum(x**2)', 'output': {'name': None, 'shape': [], 'value': float(y)},\n"
    "       'cotangent': 1.0, 'grads': {'x': arr(grad)}, 'leaves': {'x': arr(x)},\n"
    "       'jacobian': None, 'checks': {}, 'repeat': 1, 'dtype': 'float64', 'no_path': [],\n"
    "       'nonfinite': None}\n"
    "sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b'\\n')\n")


def median(xs):
    return statistics.median(xs)


# ------------------------------------------------------------------ shared helpers
# Every figure is a list of ratios, one per interleaved floor/gradcalc pair; these turn such
# a list into the figure and its spread, and a curve into its fitted exponent. Blocks that
# add figures use `add_row` (one ratio) and `add_curve` (a cost curve) and nothing else.
ROWS = []       # Row records in the order the figures ran; main() prints them as one table
STARTED = time.perf_counter()


@dataclass
class Row:
    fid: str
    figure: str
    floor_text: str
    floor: float | None         # seconds (bytes for "memory", None for a curve)
    ours: float | None
    ratio: float                # the figure: a ratio, or a curve's fitted exponent
    target: float | None        # None: shown for information, no target
    spread: str = ""
    notes: str = ""
    unit: str = "s"             # "s", "memory" or "exponent"
    profile: str = ""           # what `--profile` profiles when short (default: the figure)
    held: bool = True           # a second target of the row (a curve's 2 s at 10^5) held


def quantile(xs, q):
    """The q-quantile of xs, linear between order statistics (numpy's default)."""
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def spread_of(ratios, resamples=2000):
    """(median, q1, q3, half-width of the bootstrap 95 % interval of the median relative to
    the median): the IQR says how much single pairs scatter, the interval how far another
    run's median can be expected to land (two runs agree within about twice it)."""
    import random
    rng = random.Random(0)                  # the same ratios give the same interval
    m = median(ratios)
    n = len(ratios)
    boots = sorted(median(rng.choices(ratios, k=n)) for _ in range(resamples))
    lo, hi = quantile(boots, 0.025), quantile(boots, 0.975)
    return m, quantile(ratios, 0.25), quantile(ratios, 0.75), max(m - lo, hi - m) / m


def spread_text(ratios):
    if len(ratios) < 2:
        return f"n = {len(ratios)}"
    _, q1, q3, half = spread_of(ratios)
    return f"IQR {q1:.2f}–{q3:.2f}; median ±{half * 100:.1f} % (95 %, n = {len(ratios)})"


def add_row(fid, figure, floor_text, floor, ours, ratios, target=None, notes="", unit="s",
            profile=""):
    """A figure: the median of `ratios` (one per interleaved pair; a single float is taken
    as is) against its target (TARGETS[fid] unless given)."""
    ratios = [ratios] if isinstance(ratios, (int, float)) else list(ratios)
    target = TARGETS.get(fid) if target is None else target
    r = Row(fid, figure, floor_text, floor, ours, median(ratios), target,
            spread_text(ratios) if len(ratios) > 1 else "", notes, unit, profile or fid)
    ROWS.append(r)
    shown = (lambda x: f"{x / 2**20:.0f} MiB") if unit == "memory" else fmt_t
    print(f"  {fid}: {shown(floor)} vs {shown(ours)} -> {r.ratio:.2f}x  {r.spread}  "
          f"[{time.perf_counter() - STARTED:.0f} s]", file=sys.stderr)
    return r


def loglog_exponent(xs, ys):
    """The least-squares slope of log(y) against log(x): y ~ x^k gives k (1 is linear)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return (sum((a - mx) * (b - my) for a, b in zip(lx, ly))
            / sum((a - mx) ** 2 for a in lx))


def add_curve(fid, figure, xs, ys, target=1.1, per="", notes="", held=True):
    """A cost curve: total seconds `ys` at sizes `xs`, the figure its fitted exponent
    (target: linear, <= 1.1; `held`: whatever else the notes hold it to); the points, and
    the cost per unit at each, in the notes."""
    k = loglog_exponent(xs, ys)
    pts = ", ".join(f"{x:,}: {fmt_t(y)}" + (f" ({fmt_t(y / x)}/{per})" if per else "")
                    for x, y in zip(xs, ys))
    r = Row(fid, figure, "log-log least-squares exponent of time vs size", None, ys[-1], k,
            target, f"{len(xs)} points", pts + (f"; {notes}" if notes else ""), "exponent",
            held=held)
    ROWS.append(r)
    print(f"  {fid}: exponent {k:.2f}  ({pts})  [{time.perf_counter() - STARTED:.0f} s]",
          file=sys.stderr)
    return r


def until_stable(one_pair, min_n, max_n, budget_s, tol=0.02):
    """Call one_pair(i) -> ratio until the bootstrap interval of the median is within ±tol
    (so that two runs agree within about 2*tol) after at least min_n pairs, or max_n pairs,
    or budget_s seconds (at least 3 pairs: a loaded machine shortens the figure, and its
    spread says so). Returns the ratios."""
    ratios, t0 = [], time.perf_counter()
    for i in range(max_n):
        ratios.append(one_pair(i))
        if len(ratios) >= 3 and time.perf_counter() - t0 > budget_s:
            break
        if len(ratios) >= min_n and spread_of(ratios, 500)[3] <= tol:
            break
    return ratios


# ------------------------------------------------------------------ worker side
def _interleave(floor, subject, reps, warm=1, ratios=None):
    """Median seconds of floor() and subject(), run alternately after `warm` unmeasured
    calls of each (first calls fault in code and allocator pages in both). `ratios`, a
    list, receives subject/floor of each adjacent pair: on a shared machine their median
    is steadier than a ratio of medians."""
    for _ in range(warm):
        floor()
        subject()
    tf, ts = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        floor()
        tf.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subject()
        ts.append(time.perf_counter() - t0)
    if ratios is not None:
        ratios.extend(s / f for f, s in zip(tf, ts))
    return median(tf), median(ts)


def _result(floor, subject, ratios, **extra):
    return {"floor": floor, "subject": subject, "ratio": median(ratios), "ratios": ratios,
            **extra}


def _seed_inputs(n, dtype="float64"):
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.uniform(-2, 2, n).astype(dtype)
    b = rng.uniform(-2, 2, n).astype(dtype)
    c = rng.uniform(0.5, 3, n).astype(dtype)
    v = rng.uniform(-1, 1, n).astype(dtype)
    return a, b, c, v


def _seed_by_hand(a, b, c, v):
    """What one writes by hand in numpy: the forward, then each leaf's VJP."""
    import numpy as np
    y = 3 * a + 2 * b * b + np.log(c)
    return y, 3 * v, 4 * b * v, v / c


def _seed_by_hand_reusing(a, b, c, v, bufs):
    """The same calls, each writing into buffers kept from the last run (out=): no page is
    faulted in, no array allocated; the outputs are overwritten by the next run."""
    import numpy as np
    y, t, ga, gb, gc = bufs
    np.multiply(a, 3, out=y)
    np.multiply(b, 2, out=t)
    np.multiply(t, b, out=t)
    np.add(y, t, out=y)
    np.log(c, out=t)
    np.add(y, t, out=y)
    np.multiply(v, 3, out=ga)
    np.multiply(b, 4, out=gb)
    np.multiply(gb, v, out=gb)
    np.divide(v, c, out=gc)
    return y, ga, gb, gc


def _big_limits():
    from gradcalc.errors import Limits
    return Limits(max_memory=64 * 1024**3)


def worker_fig3(n, reps):
    import gradcalc
    a, b, c, v = _seed_inputs(n)
    lim = _big_limits()

    def ours():
        return gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v, check="none",
                                jacobian=False, limits=lim)
    r, rr = [], []
    floor, subject = _interleave(lambda: _seed_by_hand(a, b, c, v), ours, reps, ratios=r)
    import numpy as np
    bufs = [np.empty(n) for _ in range(5)]
    rfloor, rsubject = _interleave(lambda: _seed_by_hand_reusing(a, b, c, v, bufs), ours, reps,
                                   ratios=rr)
    return _result(floor, subject, r, reuse={"floor": rfloor, "subject": rsubject,
                                             "ratios": rr})


def worker_fig4(n):
    """Peak traced memory (numpy reports its buffers to tracemalloc) above the inputs,
    results included, for the hand-written version and for gradcalc, in one process."""
    import tracemalloc
    import gradcalc
    a, b, c, v = _seed_inputs(n)
    lim = _big_limits()
    gradcalc.compute(SEED_EXPR, a=a[:10], b=b[:10], c=c[:10], grad=v[:10], check="none",
                     jacobian=False, limits=lim)       # imports and op-table set-up
    out = {}
    tracemalloc.start()
    for name, fn in (("floor", lambda: _seed_by_hand(a, b, c, v)),
                     ("subject", lambda: gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v,
                                                          check="none", jacobian=False,
                                                          limits=lim))):
        out[name] = peak_bytes(fn)
    tracemalloc.stop()
    return out


def _fig5_by_hand(a, b):
    """Figure 5's floor: two n x n zero matrices with their diagonals set by hand."""
    import numpy as np
    n = a.size
    ja = np.zeros((n, n))
    jb = np.zeros((n, n))
    np.fill_diagonal(ja, np.cos(a) * b + 2 * a)
    np.fill_diagonal(jb, np.sin(a))
    return ja, jb


def _one_blas_thread():
    """Figures 5 and 6 compare one thread with one thread (the floors use no BLAS), as the
    gradcalc command runs: its start-up sets OPENBLAS_NUM_THREADS=1 unless set. Call before
    numpy is imported."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def worker_fig5(n, reps):
    _one_blas_thread()
    import numpy as np
    import gradcalc
    rng = np.random.default_rng(1)
    a = rng.uniform(-2, 2, n)
    b = rng.uniform(-2, 2, n)

    def by_hand():
        return _fig5_by_hand(a, b)

    def ours():
        return gradcalc.compute("sin(a)*b + a**2", a=a, b=b, grad=1.0, check="none",
                                jacobian=True)
    r = []
    floor, subject = _interleave(by_hand, ours, reps, ratios=r)
    return _result(floor, subject, r)


def worker_fig6(n, reps):
    _one_blas_thread()
    import numpy as np
    import gradcalc
    rng = np.random.default_rng(2)
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    a = rng.uniform(-2, 2, n)

    def closed():
        return W * (1 - np.tanh(a) ** 2)

    def ours():
        return gradcalc.compute("W @ tanh(a)", W=W, a=a, wrt=["a"], grad=1.0, check="none",
                                jacobian=True)
    r = []
    floor, subject = _interleave(closed, ours, reps, ratios=r)
    return _result(floor, subject, r)


def worker_fig7(n, reps):
    """The symbolic check's own time (a run with it minus a run without) against the
    program's forward + backward; sympy is imported first, so its import is not counted.
    The first checked run of the process is the one a one-liner pays: its pair is the runs
    without the check just before and just after it."""
    import sympy
    t0 = time.perf_counter()
    x = sympy.Symbol("x")
    str((x * x + sympy.log(x)).diff(x))   # sympy imports more on first use (x*x: its tensor
    lazy = time.perf_counter() - t0       # module): count that as sympy's import too
    import gradcalc
    a, b, c, v = _seed_inputs(n)

    def run(check):
        t0 = time.perf_counter()
        gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v, check=check, jacobian=False)
        return time.perf_counter() - t0
    run("none")
    before = run("none")
    cold = run("symbolic")
    after = run("none")
    around = (before + after) / 2
    warm = []
    for _ in range(reps):
        f = run("none")
        warm.append((run("symbolic") - f) / f)
    return {"floor": around, "cold": cold - around, "ratio": (cold - around) / around,
            "warm_ratio": median(warm), "sympy_lazy": lazy}


def _requests(count, check):
    import numpy as np
    rng = np.random.default_rng(3)
    lines = []
    for i in range(count):
        a, b = rng.uniform(-2, 2, (2, 3)).round(6)
        c = rng.uniform(0.5, 3, 3).round(6)
        req = {"id": i, "expr": SEED_EXPR, "vars": {"a": a.tolist(), "b": b.tolist(),
                                                     "c": c.tolist()},
               "grad": [0.1, 1.0, 0.0001]}
        if check:
            req["check"] = check
        lines.append(json.dumps(req))
    return lines


def worker_fig8_floor(count, reps):
    """A hand-written loop in one process: json.loads, numpy forward + VJP, json.dumps."""
    import numpy as np
    lines = _requests(count, None)
    sink = open(os.devnull, "w")

    def loop():
        for line in lines:
            r = json.loads(line)
            vs = r["vars"]
            a = np.array(vs["a"], dtype=float)
            b = np.array(vs["b"], dtype=float)
            c = np.array(vs["c"], dtype=float)
            g = np.array(r["grad"], dtype=float)
            y, ga, gb, gc = _seed_by_hand(a, b, c, g)
            sink.write(json.dumps({"id": r["id"], "output": y.tolist(), "grads": {
                "a": ga.tolist(), "b": gb.tolist(), "c": gc.tolist()}}) + "\n")
            sink.flush()
    loop()                  # warm: the first pass pays for imports and caches
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        loop()
        ts.append(time.perf_counter() - t0)
    return {"floor": median(ts) / count}


# torch/jax workers run under --torch-python: numpy and torch only, no gradcalc
def worker_torch(fig, n, reps):
    import numpy as np
    import torch
    torch.set_default_dtype(torch.float64)
    out = {"torch_version": torch.__version__}
    fig = str(fig)
    if fig == "3":
        a, b, c, v = _seed_inputs(n)
        ta, tb, tc, tv = (torch.from_numpy(x) for x in (a, b, c, v))

        def run():
            xa, xb, xc = (t.clone().requires_grad_() for t in (ta, tb, tc))
            y = 3 * xa + 2 * xb * xb + torch.log(xc)
            y.backward(tv)
            return y, xa.grad, xb.grad, xc.grad
        # the clones are part of what torch needs to hold leaves that require grad; time
        # them apart and subtract, so torch is charged for forward + backward only
        clone = lambda: [t.clone() for t in (ta, tb, tc)]  # noqa: E731
        floor, subject = _interleave(lambda: _seed_by_hand(a, b, c, v), run, reps)
        _, cl = _interleave(lambda: None, clone, reps)
        out.update(floor=floor, subject=subject - cl)
    elif fig == "5":
        rng = np.random.default_rng(1)
        a = rng.uniform(-2, 2, n)
        b = rng.uniform(-2, 2, n)

        def by_hand():
            return _fig5_by_hand(a, b)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        f = lambda x, y: torch.sin(x) * y + x ** 2  # noqa: E731
        run = lambda: torch.autograd.functional.jacobian(f, (ta, tb), vectorize=True)  # noqa: E731
        floor, subject = _interleave(by_hand, run, reps)
        out.update(floor=floor, subject=subject)
    elif fig == "6":
        rng = np.random.default_rng(2)
        W = rng.standard_normal((n, n)) / np.sqrt(n)
        a = rng.uniform(-2, 2, n)
        tW, ta = torch.from_numpy(W), torch.from_numpy(a)
        closed = lambda: W * (1 - np.tanh(a) ** 2)  # noqa: E731
        run = lambda: torch.autograd.functional.jacobian(  # noqa: E731
            lambda x: tW @ torch.tanh(x), ta, vectorize=True)
        for _ in range(3):      # torch's run is tens of seconds: warm only the floor
            closed()
        floor, subject = _interleave(closed, run, reps, warm=0)
        out.update(floor=floor, subject=subject)
    return out


def worker_jax(fig, n, reps):
    import numpy as np
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    out = {"jax_version": jax.__version__}
    if str(fig) == "5":
        rng = np.random.default_rng(1)
        a, b = jnp.asarray(rng.uniform(-2, 2, n)), jnp.asarray(rng.uniform(-2, 2, n))
        jac = jax.jit(jax.jacfwd(lambda x, y: jnp.sin(x) * y + x ** 2, argnums=(0, 1)))
        an, bn = np.asarray(a), np.asarray(b)

        def by_hand():
            ja = np.zeros((n, n))
            jb = np.zeros((n, n))
            np.fill_diagonal(ja, np.cos(an) * bn + 2 * an)
            np.fill_diagonal(jb, np.sin(an))
            return ja, jb
        run = lambda: [x.block_until_ready() for x in jac(a, b)]  # noqa: E731
        floor, subject = _interleave(by_hand, run, reps)
        out.update(floor=floor, subject=subject)
    else:
        return {"skipped": "not timed"}
    return out


def _cli_call(args):
    """A call of the command line in this process, its output swallowed (for profiles)."""
    import io
    from gradcalc import cli

    def call():
        old = sys.stdout
        sys.stdout = io.StringIO()
        try:
            cli.main(args)
        except SystemExit:
            pass
        finally:
            sys.stdout = old
    return call


def worker_profile(fig, top=18):
    """cProfile of gradcalc's side of a figure (the calls the figure times), top functions
    by own time, as text."""
    import cProfile
    import io
    fig = str(fig)
    if fig in ("6", "6b", "17c"):
        _one_blas_thread()        # as the figure's own worker (else BLAS threads are profiled)
    elif fig.startswith("14:"):
        _one_core()
    import numpy as np
    import gradcalc
    if fig in ("3", "3a", "3b"):
        n = 10**6 if fig != "3b" else 10**7
        a, b, c, v = _seed_inputs(n)
        lim = _big_limits()
        call = lambda: gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v,  # noqa: E731
                                        check="none", jacobian=False, limits=lim)
        reps = 10
    elif fig in ("6", "6b"):
        n = 3000 if fig == "6" else 1000
        rng = np.random.default_rng(2)
        W = rng.standard_normal((n, n)) / np.sqrt(n)
        a = rng.uniform(-2, 2, n)
        call = lambda: gradcalc.compute("W @ tanh(a)", W=W, a=a, wrt=["a"],  # noqa: E731
                                        grad=1.0, check="none", jacobian=True)
        reps = 10 if fig == "6" else 100
    elif fig.startswith("14:"):
        n = int(fig[3:])
        a, b, c, v = _seed_inputs(n)
        lim = _big_limits()
        call = lambda: gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v,  # noqa: E731
                                        check="none", limits=lim)
        reps = max(10, 10**6 // n)
    elif fig == "17c":
        from gradcalc.fit.loop import FitRequest, fit
        x, y = _decay(10**5)
        call = lambda: fit(FitRequest(  # noqa: E731
            text="A*exp(-k*x) + c - y", params=["A", "k", "c"], optimizer="lm", epochs=100,
            values={"x": x, "y": y, "A": np.array(1.0), "k": np.array(1.0),
                    "c": np.array(0.0)}))
        reps = 10
    elif fig == "9":
        call = _cli_call(["sum(x**2)", f"x=linspace(0,1,{BIG_VIEW_N})", "--check", "none"])
        reps = 3
    elif fig in ("8", "8a", "8b"):
        from gradcalc.errors import Limits
        from gradcalc.jsonl import serve
        from gradcalc.settings import Settings
        data = ("\n".join(_requests(2000, None)) + "\n").encode()
        check = "symbolic" if fig == "8b" else "none"

        def call():
            class Stdin:
                buffer = io.BytesIO(data)
            old = sys.stdin, sys.stdout
            sys.stdin, sys.stdout = Stdin, io.StringIO()
            try:
                serve(Settings(check=check), Limits())
            finally:
                sys.stdin, sys.stdout = old
        reps = 1
    elif fig == "7":
        import sympy
        x = sympy.Symbol("x")
        str((x * x + sympy.log(x)).diff(x))       # sympy's first use, as the figure has it
        from gradcalc.checks import Context, symbolic
        from gradcalc.errors import Limits
        a, b, c, v = _seed_inputs(10**6)
        r = gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v, check="numeric",
                             jacobian=False)       # a result holding every value
        context = Context(graph=r.graph, values=r.values, output_id=r.output_id,
                          cotangent=r.cotangent, wrt=tuple(r.wrt), grads=dict(r.grads),
                          jacobian=None, dtype=r.dtype, limits=Limits())

        def call():               # the check's worker body, in this thread so it is seen
            symbolic.run_here(context, symbolic.Budget(100))
        reps = 1
        prof = cProfile.Profile()
        prof.enable()
        call()                    # the first check of the process
        prof.disable()
        return {"text": _stats(prof, top, "figure 7, the first check (sympy used once "
                                          "before)", "tottime")}
    elif fig == "2":
        call = _cli_call(SEED_ARGS)
        prof = cProfile.Profile()
        prof.enable()
        call()                    # cold: every import happens inside
        prof.disable()
        return {"text": _stats(prof, top, "figure 2, one cold run in-process (main thread; "
                                          "the symbolic check's own thread shows as the wait "
                                          "in check)", "cumulative")}
    elif fig == "17a":
        call = _cli_call(GERMAN_FIT)
        prof = cProfile.Profile()
        prof.enable()
        call()                    # cold: click and the fit's modules load inside
        prof.disable()
        return {"text": _stats(prof, 30, "figure 17a, one cold `gradcalc fit` in-process "
                                         "(numpy and click imported before)", "cumulative")}
    elif fig in SECOND_ORDER_CALLS:
        call, reps = SECOND_ORDER_CALLS[fig]()
    else:
        return {"text": f"no profile for figure {fig}"}
    call()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(reps):
        call()
    prof.disable()
    return {"text": _stats(prof, top, f"figure {fig}, {reps} run(s)", "tottime")}


def _stats(prof, top, title, order):
    import io
    import pstats
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(order).print_stats(int(top))
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    keep = lines[lines.index(next(ln for ln in lines if "ncalls" in ln)):]
    # (a venv's standard library lies under its base interpreter's prefix, not its own)
    return f"{title}, by {order} time:\n" + "\n".join(
        ln.replace(str(ROOT) + "/", "").replace(sys.prefix, "<python>")
        .replace(sys.base_prefix, "<python>") for ln in keep)


# ================================================================== JSON Lines cost curves
# issue 15, item 3: the cost of a stream against its number of requests, one program
# repeated and every request a program of its own, in process (serve() on an in-memory
# stream, so start-up is not in the curve).
JSONL_SIZES = (10, 100, 1000, 10000)


def _stream(count, distinct):
    """`count` request lines of the seed expression; with `distinct`, each request's text is
    its own program (a different constant added), so none is served from the cache."""
    lines = _requests(count, None)
    if not distinct:
        return ("\n".join(lines) + "\n").encode()
    out = []
    for i, line in enumerate(lines):
        req = json.loads(line)
        req["expr"] = f"{SEED_EXPR} + {i}"
        out.append(json.dumps(req))
    return ("\n".join(out) + "\n").encode()


def worker_jsonl_curve(kind, sizes):
    """CPU seconds of the process to serve each size's stream (median of a few repetitions
    for the small ones), each serve() with its own program cache, as a fresh `gradcalc -`
    has. CPU time, not wall: on a shared machine the wall time of a ten-second point drifts
    with the load, which bends a curve that is straight in CPU time."""
    import io
    from gradcalc.errors import Limits
    from gradcalc.jsonl import serve
    from gradcalc.settings import Settings
    sink = open(os.devnull, "w")
    totals = []
    for count in map(int, str(sizes).split(",")):
        data = _stream(count, kind == "distinct")

        def run():
            class Stdin:
                buffer = io.BytesIO(data)
            old = sys.stdin, sys.stdout
            sys.stdin, sys.stdout = Stdin, sink
            try:
                t0 = time.process_time()
                serve(Settings(check="none"), Limits())
                return time.process_time() - t0
            finally:
                sys.stdin, sys.stdout = old
        run() if count <= 100 else None        # warm imports for the small sizes
        totals.append(median([run() for _ in range(max(2, min(9, 5000 // count)))]))
    return {"totals": totals}


# ================================================================== gradcalc fit (issue 11)
# The German page's whole training as a process against a numpy script and a PyTorch
# script; one step of an MLP against a hand-written numpy step (and torch); lm against
# scipy's curve_fit (scipy and torch run under --torch-python).
GERMAN_FIT = ["fit", "-f", "samples/fit/german_training.grad", "--data",
              "samples/german_points.csv", "--params", "w=0,0", "--optimizer", "adam", "--lr",
              "0.1", "--epochs", "20", "--batch-size", "10", "--dtype", "float32"]
GERMAN_LOAD = ("import numpy as np\n"
               "d = np.loadtxt('samples/german_points.csv', delimiter=',', skiprows=1, "
               "dtype=np.float32)\n")
# torch.optim.Adam's update, by hand, on the same batches (DataLoader(batch_size=10))
GERMAN_BY_HAND = GERMAN_LOAD + (
    "x, y = d[:, 0], d[:, 1]\n"
    "w = np.zeros(2, np.float32); m = np.zeros(2, np.float32); v = np.zeros(2, np.float32)\n"
    "lr, b1, b2, eps, t = 0.1, 0.9, 0.999, 1e-8, 0\n"
    "for epoch in range(20):\n"
    "    for i in range(0, 200, 10):\n"
    "        xb, yb = x[i:i + 10], y[i:i + 10]\n"
    "        g = 2 * (2 * xb * w[0] + xb ** 2 * w[1] - yb) / xb.size\n"
    "        grad = np.array([(g * 2 * xb).sum(), (g * xb ** 2).sum()], np.float32)\n"
    "        t += 1\n"
    "        m = b1 * m + (1 - b1) * grad\n"
    "        v = b2 * v + (1 - b2) * grad * grad\n"
    "        w = w - (lr / (1 - b1 ** t)) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)\n"
    "print(w)\n")
GERMAN_TORCH = GERMAN_LOAD + (
    "import torch\n"
    "x, y = torch.from_numpy(d[:, 0]), torch.from_numpy(d[:, 1])\n"
    "w = torch.zeros(2, requires_grad=True)\n"
    "opt = torch.optim.Adam([w], lr=0.1)\n"
    "loss_fn = torch.nn.MSELoss()\n"
    "loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)\n"
    "for epoch in range(20):\n"
    "    for xb, yb in loader:\n"
    "        opt.zero_grad()\n"
    "        loss_fn(2 * xb * w[0] + xb ** 2 * w[1], yb).backward()\n"
    "        opt.step()\n"
    "print(w.detach().numpy())\n")
MLP_TEXT = "mse_loss(relu(X @ W1 + b1) @ W2 + b2, y)"
MLP_BATCH = 256


def _mlp_problem():
    import numpy as np
    rng = np.random.default_rng(4)
    X = rng.standard_normal((10000, 100))
    y = rng.standard_normal(10000)
    params = {"W1": rng.standard_normal((100, 256)) * 0.1, "b1": np.zeros(256),
              "W2": rng.standard_normal(256) * 0.1, "b2": np.array(0.0)}
    return X, y, params


def _adam_by_hand(params, grads, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam's default (non-foreach order of operations does not matter for time)."""
    import numpy as np
    state["t"] = t = state.get("t", 0) + 1
    for k, g in grads.items():
        m = state.setdefault("m" + k, np.zeros_like(g))
        v = state.setdefault("v" + k, np.zeros_like(g))
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        params[k] -= (lr / (1 - b1 ** t)) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)


def _mlp_epoch_by_hand(X, y, params, state):
    """One epoch of hand-written forward, backward and Adam steps over MLP_BATCH batches."""
    import numpy as np
    for i in range(0, len(X), MLP_BATCH):
        xb, yb = X[i:i + MLP_BATCH], y[i:i + MLP_BATCH]
        h = xb @ params["W1"] + params["b1"]
        a = np.maximum(h, 0)
        r = a @ params["W2"] + params["b2"] - yb
        g = 2 * r / r.size
        ga = np.outer(g, params["W2"])
        ga[h <= 0] = 0
        _adam_by_hand(params, {"W1": xb.T @ ga, "b1": ga.sum(0), "W2": a.T @ g,
                               "b2": np.array(g.sum())}, state)


def worker_fit_mlp(reps):
    """Seconds per step in the steady state: gradcalc fit's second epoch (its programs
    compiled in the first) over its number of steps, and the hand-written epoch's."""
    from gradcalc.fit.loop import FitRequest, fit
    X, y, start = _mlp_problem()
    steps = -(-len(X) // MLP_BATCH)

    def ours():
        marks = []
        req = FitRequest(text=MLP_TEXT, values={"X": X, "y": y, **start}, params=list(start),
                         optimizer="adam", hyper={"lr": 1e-3}, epochs=2, batch_size=MLP_BATCH)
        fit(req, on_epoch=lambda e: marks.append(time.perf_counter()))
        return (marks[1] - marks[0]) / steps

    def by_hand():
        params, state = {k: v.copy() for k, v in start.items()}, {}
        _mlp_epoch_by_hand(X, y, params, state)          # as the fit: time the second epoch
        t0 = time.perf_counter()
        _mlp_epoch_by_hand(X, y, params, state)
        return (time.perf_counter() - t0) / steps
    tf, ts = [], []
    for _ in range(reps):
        tf.append(by_hand())
        ts.append(ours())
    return {"floor": median(tf), "subject": median(ts),
            "ratios": [s / f for f, s in zip(tf, ts)]}


def worker_fit_mlp_torch(reps):
    """torch's step (one thread) beside the numpy floor timed in the same process."""
    import torch
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    X, y, start = _mlp_problem()
    steps = -(-len(X) // MLP_BATCH)
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)

    def epoch(ps, opt):
        for i in range(0, len(X), MLP_BATCH):
            opt.zero_grad()
            xb, yb = tX[i:i + MLP_BATCH], ty[i:i + MLP_BATCH]
            out = torch.relu(xb @ ps["W1"] + ps["b1"]) @ ps["W2"] + ps["b2"]
            torch.nn.functional.mse_loss(out, yb).backward()
            opt.step()

    def run():
        ps = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
        opt = torch.optim.Adam(list(ps.values()), lr=1e-3)
        epoch(ps, opt)
        t0 = time.perf_counter()
        epoch(ps, opt)
        return (time.perf_counter() - t0) / steps

    def by_hand():
        params, state = {k: v.copy() for k, v in start.items()}, {}
        _mlp_epoch_by_hand(X, y, params, state)
        t0 = time.perf_counter()
        _mlp_epoch_by_hand(X, y, params, state)
        return (time.perf_counter() - t0) / steps
    tf, ts = [], []
    for _ in range(reps):
        tf.append(by_hand())
        ts.append(run())
    return {"floor": median(tf), "subject": median(ts), "torch_version": torch.__version__}


def _decay(n):
    import numpy as np
    x = np.linspace(0, 10, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + np.random.default_rng(5).normal(0, 0.05, n)
    return x, y


def worker_fit_lm(n, reps):
    """lm on an exponential decay of n points against curve_fit (finite-difference and
    analytic Jacobians), interleaved in one process (run under --torch-python, which has
    scipy; gradcalc's fit core needs only numpy there). Also the largest gap in popt."""
    import numpy as np
    from scipy.optimize import curve_fit
    from gradcalc.errors import GradcalcError
    from gradcalc.fit.loop import FitRequest, fit
    x, y = _decay(n)
    p0 = (1.0, 1.0, 0.0)
    f = lambda x, A, k, c: A * np.exp(-k * x) + c  # noqa: E731

    def jac(x, A, k, c):
        e = np.exp(-k * x)
        return np.stack([e, -A * x * e, np.ones_like(x)], axis=1)

    def ours():
        req = FitRequest(text="A*exp(-k*x) + c - y", params=["A", "k", "c"], optimizer="lm",
                         values={"x": x, "y": y, **{k: np.array(v) for k, v in
                                                    zip("Akc", p0)}}, epochs=100)
        r = fit(req)
        return np.array([float(r.params[k]) for k in "Akc"])
    try:
        t0 = time.perf_counter()
        ours()
    except (GradcalcError, MemoryError) as exc:   # the CLI reports a MemoryError as a limit
        return {"error": f"{type(exc).__name__} ({str(exc)[:90]}) after "
                         f"{fmt_t(time.perf_counter() - t0)}"}
    tg, tfd, tj, gap = [], [], [], 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        popt = curve_fit(f, x, y, p0=p0)[0]
        t1 = time.perf_counter()
        curve_fit(f, x, y, p0=p0, jac=jac)
        t2 = time.perf_counter()
        mine = ours()
        t3 = time.perf_counter()
        tfd.append(t1 - t0)
        tj.append(t2 - t1)
        tg.append(t3 - t2)
        gap = max(gap, float(np.max(np.abs(mine - popt) / np.abs(popt))))
    return {"fd": median(tfd), "jac": median(tj), "subject": median(tg), "gap": gap,
            "ratios_fd": [g / f_ for g, f_ in zip(tg, tfd)],
            "ratios_jac": [g / j for g, j in zip(tg, tj)]}


# ================================================================== end of the fit figures


# ================================================================== compute() vs torch, jax (figure 14)
# compute() of the seed expression against torch and jax.jit at n = 10^2 ... 10^7, in
# process, one thread each, compile excluded. Every engine's worker is pinned to one core
# before numpy, torch or jax start their thread pools.
FIG14_NS = [10**k for k in range(2, 8)]


def _one_core():
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                      XLA_FLAGS="--xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _per_call(f, batches=7):
    """Median seconds per call of f(), over `batches` batches of calls each long enough
    (about 20 ms) for the clock, after warm calls."""
    for _ in range(3):
        f()
    t0 = time.perf_counter()
    f()
    k = max(1, int(0.02 / max(time.perf_counter() - t0, 1e-7)))
    ts = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(k):
            f()
        ts.append((time.perf_counter() - t0) / k)
    return median(ts)


def worker_fig14(engine, quick=0):
    """{n: seconds per call} of one engine: "gradcalc" (compute(), cached program),
    "torch" (leaves that require grad, forward, backward(v)) or "jax" (jax.jit of the
    forward and its VJP, inputs already device arrays)."""
    _one_core()
    out = {}
    if engine == "gradcalc":
        import gradcalc
        lim = _big_limits()

        def make(a, b, c, v):
            return lambda: gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v, check="none",
                                            limits=lim)
    elif engine == "torch":
        import torch
        torch.set_num_threads(1)
        out["version"] = torch.__version__

        def make(a, b, c, v):
            tv = torch.from_numpy(v)

            def run():
                xa, xb, xc = (torch.from_numpy(x).requires_grad_() for x in (a, b, c))
                y = 3 * xa + 2 * xb * xb + torch.log(xc)
                y.backward(tv)
                return y, xa.grad, xb.grad, xc.grad
            return run
    else:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        out["version"] = jax.__version__
        f = lambda a, b, c: 3 * a + 2 * b * b + jnp.log(c)  # noqa: E731

        @jax.jit
        def fvjp(a, b, c, v):
            y, back = jax.vjp(f, a, b, c)
            return y, back(v)

        def make(a, b, c, v):
            args = [jnp.asarray(x) for x in (a, b, c, v)]
            return lambda: jax.block_until_ready(fvjp(*args))
    for n in FIG14_NS[:4] if quick else FIG14_NS:
        out[str(n)] = _per_call(make(*_seed_inputs(n)), batches=5 if n >= 10**6 else 7)
    return out
# ================================================================== end of figure 14


# ================================================================== engine cost curves
# Issue 15 item 3: parse + compile + forward + backward (`--check none`, no Jacobian) of
# programs of 10 ... 10^5 operations and of 1 ... 1,000 leaves, each curve with the
# exponent of a least-squares line through its log-log points (1 is linear; target 1.1).
CURVE_TARGET = 1.1
CURVE_SECONDS = 2.0          # the largest program (10^5 operations) without the check
CURVES = {   # figure -> (kind, what it is, sizes)
    "E1": ("sum_chain", "a long chain `x + x + ... + x`", (10, 100, 1000, 10**4, 10**5)),
    "E2": ("sin_chain", "a chain of statements `y=sin(x)`, `y=sin(y)`, ... (nesting "
                        "`sin(sin(...))` stops at the depth limit, 199; 10^5 statements fit "
                        "the 10^6-character text limit written this short)",
           (10, 100, 1000, 10**4, 10**5)),
    "E3": ("wide_sum", "a wide sum `a0*b0 + a1*b1 + ...` (one leaf per operation)",
           (10, 100, 1000, 10**4, 10**5)),
    "E4": ("leaves", "`x0 + x1 + ... ` by number of leaves", (1, 10, 100, 1000)),
}


def curve_program(kind: str, k: int):
    """(text, variables) of a program of about k operations (k leaves for "leaves")."""
    import numpy as np
    x = np.linspace(0.1, 1.0, 8)
    if kind == "sum_chain":
        return "+".join(["x"] * (k + 1)), {"x": x}
    if kind == "sin_chain":
        return "\n".join(["y=sin(x)"] + ["y=sin(y)"] * (k - 1)), {"x": x}
    if kind == "wide_sum":
        m = max(1, (k + 1) // 2)
        return " + ".join(f"a{i}*b{i}" for i in range(m)), \
            {**{f"a{i}": x for i in range(m)}, **{f"b{i}": x + 1 for i in range(m)}}
    if kind == "leaves":
        return (" + ".join(f"x{i}" for i in range(k)) if k > 1 else "x0 * 1"), \
            {f"x{i}": x for i in range(k)}
    raise ValueError(kind)


def worker_engine_curve(kind, sizes, reps):
    """Wall and CPU seconds of one gradcalc.compute per size (median of `reps` after a
    warm-up; of three runs at 10^5, where one run's time moved by 10-20 % with the machine's
    state), each on a freshly compiled program (the API's program cache emptied)."""
    import gradcalc
    from gradcalc import api
    from gradcalc.errors import Limits
    sizes = [int(x) for x in str(sizes).split(",")]
    wall, cpu = [], []
    for k in sizes:
        text, variables = curve_program(kind, k)
        runs = []
        for _ in range(3 if k >= 10**5 else reps + 1):   # (below 10^5: the first warms up)
            api.PROGRAMS = type(api.PROGRAMS)()
            t0, c0 = time.perf_counter(), time.process_time()
            gradcalc.compute(text, check="none", grad=1.0, jacobian=False, limits=Limits(),
                             **variables)
            runs.append((time.perf_counter() - t0, time.process_time() - c0))
        runs = runs if k >= 10**5 else runs[1:]
        wall.append(median([r[0] for r in runs]))
        cpu.append(median([r[1] for r in runs]))
    return {"sizes": sizes, "wall": wall, "cpu": cpu, "last_walls": [r[0] for r in runs]}


def engine_curve_rows(want, quick):
    """The curves E1-E4, each fitted in CPU time (on a shared machine the wall time of a
    large point drifts with the load); the notes give the wall exponent and the largest
    program's wall and CPU time against the 2 s target."""
    for fid, (kind, what, sizes) in CURVES.items():
        if not (want(fid) or want("E")):
            continue
        if quick:
            sizes = sizes[:-1]
        r = spawn("engine_curve", kind, ",".join(map(str, sizes)), 1 if quick else 3)
        note = f"exponent in wall time {loglog_exponent(r['sizes'], r['wall']):.2f}"
        held = True
        if r["sizes"][-1] >= 10**5:
            held = r["wall"][-1] < CURVE_SECONDS
            walls = r["last_walls"]
            note += (f"; 10^5 operations {fmt_t(r['wall'][-1])} wall, {fmt_t(r['cpu'][-1])} "
                     f"CPU, medians of {len(walls)} runs (wall {fmt_t(min(walls))}–"
                     f"{fmt_t(max(walls))}; {'under' if held else '**over**'} "
                     f"{CURVE_SECONDS:.0f} s wall)")
        add_curve(fid, f"cost curve: parse + compile + forward + backward, `--check none`, of "
                       f"{what}: CPU time vs operations", r["sizes"], r["cpu"],
                  target=CURVE_TARGET, per="op" if kind != "leaves" else "leaf", notes=note,
                  held=held)


# ================================================================== end of the engine cost curves


WORKERS = {"profile": worker_profile, "fig3": worker_fig3, "fig4": worker_fig4, "fig5": worker_fig5, "fig6": worker_fig6,
           "fig7": worker_fig7, "fig8_floor": worker_fig8_floor, "torch": worker_torch,
           "jax": worker_jax, "jsonl_curve": worker_jsonl_curve, "fit_mlp": worker_fit_mlp,
           "fit_mlp_torch": worker_fit_mlp_torch, "fit_lm": worker_fit_lm,
           "fig14": worker_fig14, "engine_curve": worker_engine_curve}


# ------------------------------------------------------------------ main side
def spawn(name, *args, python=None, timeout=900, env=None):
    cmd = [python or sys.executable, str(Path(__file__).resolve()), "--worker", name,
           *map(str, args)]
    env = dict(os.environ, **(env or {}),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gradcalc_command():
    """The console script installed beside this interpreter (what `gradcalc` runs once the
    shell has found it), else `python -m gradcalc`."""
    script = Path(sys.executable).parent / "gradcalc"
    if script.exists():
        return [str(script)], "<python>/bin/gradcalc"
    return [sys.executable, "-m", "gradcalc"], "python -m gradcalc"


def time_process(cmd, stdin_data=None, env=None):
    """(wall seconds, CPU seconds) of one whole process; CPU is the child's user + system
    time from wait4, so a process that waits (a loaded core) and one that computes on a
    second core (numpy's import) are told apart."""
    import tempfile
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if stdin_data is None
                                else subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=str(ROOT), env=env)
        if stdin_data is not None:
            proc.stdin.write(stdin_data)
            proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here, not by Popen
        if proc.returncode not in (0, 1):
            err.seek(0)
            raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {err.read()[-500:]!r}")
    return wall, usage.ru_utime + usage.ru_stime


def _kept_stream(cmd, data, count, reps):
    """Median seconds per request of a JSON Lines stream whose program's derivation an
    earlier process kept (checks/stored.py), in a cache directory of its own."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="gradcalc-bench-") as cache:
        env = dict(os.environ, GRADCALC_CACHE_DIR=cache)
        env.pop("GRADCALC_NO_CACHE", None)
        time_process(cmd, data, env)                 # derives and keeps
        return median([time_process(cmd, data, env)[0] / count for _ in range(reps)])


def cold_pairs(floor_cmd, cmd, min_n, max_n, budget_s, stdin_data=None):
    """Whole processes, floor and gradcalc alternately (the order swapped every pair, so
    neither always runs second), until the median wall ratio is steady. Returns lists of
    (wall, cpu) for floor and gradcalc, pair by pair."""
    for _ in range(2):                               # warm the page cache for both
        time_process(floor_cmd, stdin_data)
        time_process(cmd, stdin_data)
    fs, ss = [], []

    def pair(i):
        if i % 2:
            s_ = time_process(cmd, stdin_data)
            f_ = time_process(floor_cmd, stdin_data)
        else:
            f_ = time_process(floor_cmd, stdin_data)
            s_ = time_process(cmd, stdin_data)
        fs.append(f_)
        ss.append(s_)
        return s_[0] / f_[0]
    until_stable(pair, min_n, max_n, budget_s)
    return fs, ss


def add_cold_rows(fid, figure, floor_text, fs, ss, cpu_row=False):
    """The wall-time figure of whole-process pairs, and its CPU time beside it (a row of
    its own when `cpu_row`, else in the notes)."""
    wall = [s[0] / f[0] for f, s in zip(fs, ss)]
    cpu = [s[1] / f[1] for f, s in zip(fs, ss)]
    cpu_note = (f"CPU (user+sys) {median(cpu):.2f}× ({fmt_t(median(f[1] for f in fs))} vs "
                f"{fmt_t(median(s[1] for s in ss))})")
    add_row(fid, figure + " — wall", floor_text, median(f[0] for f in fs),
            median(s[0] for s in ss), wall, notes="" if cpu_row else cpu_note)
    if cpu_row:
        add_row(fid + "·cpu", figure + " — CPU (user+sys of the process)", floor_text,
                median(f[1] for f in fs), median(s[1] for s in ss), cpu, target=TARGETS[fid],
                notes="the target is for wall time; CPU shown so the figure says which it is")


def spawn_pooled(name, args, workers):
    """Run a worker `workers` times (fresh processes) and pool the pair ratios: one
    process's memory layout and page faults are not the figure."""
    runs = [spawn(name, *args) for _ in range(workers)]
    pooled = pool(runs)
    if all("reuse" in r for r in runs):        # figure 3's second floor (3c, 3d)
        pooled["reuse"] = pool([r["reuse"] for r in runs])
    return pooled


def pool(parts):
    """Medians of the parts' floors and subjects, and all their pair ratios."""
    return {"floor": median(p["floor"] for p in parts),
            "subject": median(p["subject"] for p in parts),
            "ratios": [x for p in parts for x in p["ratios"]]}


def torch_python(arg):
    path = arg if arg is not None else os.environ.get("GRADCALC_TORCH_PYTHON")
    if not path or path == "none":
        return None, None, "no --torch-python given"
    found = {}
    for mod in ("torch", "jax"):
        try:
            r = subprocess.run([path, "-c", f"import {mod}; print({mod}.__version__)"],
                               capture_output=True, text=True, timeout=120)
            found[mod] = r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            found[mod] = None
    return path, found, None


def machine():
    import numpy
    info = {"python": platform.python_version(), "numpy": numpy.__version__,
            "os": platform.platform(), "cores": os.cpu_count()}
    try:
        import sympy
        info["sympy"] = sympy.__version__
    except ImportError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT),
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    info["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def fmt_t(s):
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


# ------------------------------------------------ second order (issue 10): figures 11-13
# Each gradcalc figure is a ratio against its own gradient in the same worker, interleaved;
# figure 12 against torch and jax, one thread each, in alternating processes.
TARGETS.update({"11": 4.0, "12a": 1.0, "12b": 2.0, "13": 3.0})
ELEMENTWISE_LOSS = "sum(sin(a)*b + exp(-a*a))"
MIXING = "logsumexp(W @ tanh(x))"
# one thread for every side of figure 12 (numpy's BLAS, torch's OpenMP, XLA's Eigen pool)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def _loss_inputs(n):
    import numpy as np
    rng = np.random.default_rng(5)
    return {k: rng.uniform(-2, 2, n) for k in ("a", "b", "ua", "ub")}


def _loss_calls(n):
    """(the gradient, the HVP along (ua, ub), the Hessian) of figures 11 and 13."""
    import gradcalc
    x = _loss_inputs(n)
    lim = _big_limits()

    def call(**kw):
        return lambda: gradcalc.compute(ELEMENTWISE_LOSS, a=x["a"], b=x["b"], check="none",
                                        limits=lim, **kw)
    return (call(), call(hvp={"a": x["ua"], "b": x["ub"]}), call(hessian=True))


def worker_fig11(n, reps):
    grad, hvp, _ = _loss_calls(n)
    r = []
    floor, subject = _interleave(grad, hvp, reps, ratios=r)
    return _result(floor, subject, r)


def worker_fig13(n, reps):
    grad, _, hessian = _loss_calls(n)
    r = []
    floor, subject = _interleave(grad, hessian, reps, ratios=r)
    return _result(floor, subject, r)


def worker_fig13_memory(n):
    """Peak traced memory above the inputs of the gradient and of the Hessian (numpy reports
    its buffers to tracemalloc), results included."""
    import tracemalloc
    grad, _, hessian = _loss_calls(n)
    _loss_calls(10)[2]()                     # imports and op-table set-up
    out = {}
    tracemalloc.start()
    for name, fn in (("grad", grad), ("hessian", hessian)):
        out[name] = peak_bytes(fn)
    tracemalloc.stop()
    return out


def peak_bytes(fn):
    """Bytes fn() allocated at its peak above what was live before it (tracemalloc running),
    its result dropped before the next measurement."""
    import gc
    import tracemalloc
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    r = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    del r
    return peak


def _mixing_inputs(n):
    import numpy as np
    rng = np.random.default_rng(6)
    return rng.standard_normal((n, n)) / np.sqrt(n), rng.uniform(-2, 2, n)


def _median_time(fn, reps, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return median(ts)


def worker_fig12(n, reps):
    import gradcalc
    W, x = _mixing_inputs(n)
    return {"t": _median_time(lambda: gradcalc.compute(MIXING, W=W, x=x, wrt=["x"],
                                                       check="none", hessian=True), reps)}


def worker_fig12_torch(n, reps):
    import torch
    torch.set_num_threads(1)
    W, x = _mixing_inputs(n)
    tW, tx = torch.from_numpy(W), torch.from_numpy(x)
    f = lambda v: torch.logsumexp(tW @ torch.tanh(v), 0)  # noqa: E731
    run = lambda: torch.autograd.functional.hessian(f, tx, vectorize=True)  # noqa: E731
    return {"t": _median_time(run, reps), "version": torch.__version__}


def worker_fig12_jax(n, reps):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    W, x = _mixing_inputs(n)
    jW, jx = jnp.asarray(W), jnp.asarray(x)
    h = jax.jit(jax.hessian(lambda v: jax.nn.logsumexp(jW @ jnp.tanh(v))))
    # the first call compiles: the warm call takes it out of the timing
    return {"t": _median_time(lambda: h(jx).block_until_ready(), reps, warm=2),
            "version": jax.__version__}


def _profile_fig11():
    return _loss_calls(10**6)[1], 5


def _profile_fig12():
    import gradcalc
    W, x = _mixing_inputs(1000)
    return (lambda: gradcalc.compute(MIXING, W=W, x=x, wrt=["x"], check="none",
                                     hessian=True)), 3


def _profile_fig13():
    return _loss_calls(10**6)[2], 5


SECOND_ORDER_CALLS = {"11": _profile_fig11, "12a": _profile_fig12, "12b": _profile_fig12,
                      "13": _profile_fig13}
WORKERS.update({"fig11": worker_fig11, "fig12": worker_fig12,
                "fig12_torch": worker_fig12_torch, "fig12_jax": worker_fig12_jax,
                "fig13": worker_fig13, "fig13_memory": worker_fig13_memory})


def second_order(want, quick, tpy, has_jax):
    """Rows 11, 12a/12b and 13, each pooled over fresh workers (3; 2 with --quick)."""
    n = 10**6

    def pooled(name):
        return pool([spawn(name, n, 5 if quick else 9) for _ in range(2 if quick else 3)])
    if want("11"):
        r = pooled("fig11")
        add_row("11", f"HVP of `{ELEMENTWISE_LOSS}` at n = 10^6 (`hvp=` along (ua, ub), the "
                      "whole call: gradient and H·u)", "its gradient (the same call without hvp)",
                r["floor"], r["subject"], r["ratios"])
    if want("12"):
        _second_order_dense(quick, tpy, has_jax)
    if want("13"):
        r = pooled("fig13")
        mems = {k: spawn("fig13_memory", k) for k in (n, 2 * n)}
        per = "; ".join(f"n = {k:,}: {m['hessian'] / 2**20:.0f} MiB peak "
                        f"({m['hessian'] / k:.0f} B/element; gradient {m['grad'] / 2**20:.0f} MiB)"
                        for k, m in mems.items())
        add_row("13", f"elementwise Hessian (`--hessian`, kept as diagonals) of "
                      f"`{ELEMENTWISE_LOSS}` at n = 10^6", "its gradient (the same call without "
                      "hessian)", r["floor"], r["subject"], r["ratios"], notes=f"memory: {per}")


def _second_order_dense(quick, tpy, has_jax):
    """Figure 12: gradcalc, torch and jax in alternating processes, one thread each; the
    ratio is the median of the rounds' ratios. Torch's time is 12a's floor (the target is
    to be ahead of it), jax's (compile excluded) 12b's."""
    n, rounds = 1000, 2 if quick else 3
    if tpy is None:
        print("  12: skipped (no torch interpreter)", file=sys.stderr)
        return
    ours, torch_t, jax_t, version = [], [], [], {}
    for _ in range(rounds):
        r = spawn("fig12_torch", n, 1 if quick else 2, python=tpy, env=ONE_THREAD, timeout=1800)
        torch_t.append(r["t"])
        version["torch"] = r["version"]
        ours.append(spawn("fig12", n, 3 if quick else 5, env=ONE_THREAD)["t"])
        if has_jax:
            r = spawn("fig12_jax", n, 5 if quick else 9, python=tpy, env=ONE_THREAD)
            jax_t.append(r["t"])
            version["jax"] = r["version"]
    figure = f"dense Hessian of `{MIXING}`, W 1000×1000, n = 1000, one thread each"
    vs_torch = [o / t for o, t in zip(ours, torch_t)]
    add_row("12a", figure, f"torch {version['torch']} `autograd.functional.hessian("
                           "vectorize=True)`", median(torch_t), median(ours), vs_torch)
    if jax_t:
        vs_jax = [o / j for o, j in zip(ours, jax_t)]
        add_row("12b", figure, f"jax {version['jax']} `jit(hessian)`, compile excluded",
                median(jax_t), median(ours), vs_jax)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch-python", help="an interpreter with torch (and/or jax) to time "
                                           "them too; 'none' to skip")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--only", help="comma list of figure numbers, e.g. 1,3,8")
    ap.add_argument("--profile", action="store_true",
                    help="append a cProfile of gradcalc's side of every target not met")
    ap.add_argument("--previous", type=Path, metavar="RESULTS.md",
                    help="an earlier run's table: show each figure's ratio in it and how far "
                         "this run's is from it")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        name, *rest = args.worker
        conv = [int(x) if x.lstrip("-").isdigit() else x for x in rest]
        print(json.dumps(WORKERS[name](*conv)))
        return 0

    only = set(args.only.split(",")) if args.only else None
    q = args.quick
    # every figure derives its symbolic checks afresh, as it did before derivations were
    # kept across processes (checks/stored.py), except figure 2, which measures both
    os.environ["GRADCALC_NO_CACHE"] = "1"
    want = lambda k: only is None or k in only  # noqa: E731
    # what a wheel install would have: byte-compiled modules (this environment sets
    # PYTHONDONTWRITEBYTECODE, so an editable checkout never caches them by itself)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "gradcalc")],
                   check=False, capture_output=True)
    tpy, tfound, tnote = torch_python(args.torch_python)
    has_torch = bool(tfound and tfound.get("torch"))
    has_jax = bool(tfound and tfound.get("jax"))
    gc_cmd, gc_shown = gradcalc_command()
    py = sys.executable
    started = time.perf_counter()
    load_before = os.getloadavg()

    def torch_col(fig, n, reps, floor):
        """Other engines' time over the figure's floor, as measured by gradcalc's worker (in
        torch's own process the numpy floor runs slower: its OpenMP threads spin after each
        op on the other core)."""
        parts = []
        if has_torch:
            try:
                r = spawn("torch", fig, n, reps, python=tpy, timeout=1800)
                parts.append(f"torch {r['torch_version']}: {r['subject'] / floor:.2f}x "
                             f"({fmt_t(r['subject'])})")
            except Exception as exc:  # report, never stop the run
                parts.append(f"torch failed ({str(exc).splitlines()[0][:60]})")
        else:
            parts.append("torch: not available")
        if has_jax and fig == "5":
            try:
                r = spawn("jax", fig, n, reps, python=tpy, timeout=1800)
                parts.append(f"jax jacfwd+jit: {r['subject'] / floor:.2f}x")
            except Exception as exc:
                parts.append(f"jax failed ({str(exc).splitlines()[0][:60]})")
        return "; ".join(parts)

    if want("1"):
        fs, ss = cold_pairs([py, "-c", "import numpy"],
                            gc_cmd + SEED_ARGS + ["--json", "--check", "none"],
                            *((7, 15, 15) if q else (25, 80, 45)))
        add_cold_rows("1", "cold one-liner, `--json --check none`, the seed example",
                      "`python -c \"import numpy\"`", fs, ss, cpu_row=True)
    if want("2"):
        # the derivations gradcalc keeps across processes (checks/stored.py) in a directory
        # of this run's own: the warm-up runs of cold_pairs keep the seed's, so figure 2 is a
        # repeated one-liner; 2·fresh turns keeping off (a program's first run, or
        # GRADCALC_NO_CACHE=1), which derives with sympy every time
        import tempfile
        os.environ["GRADCALC_CACHE_DIR"] = tempfile.mkdtemp(prefix="gradcalc-bench-")
        del os.environ["GRADCALC_NO_CACHE"]
        floor2 = [py, "-c", "import numpy, sympy, click, rich.console, rich.table"]
        floor2_text = "`python -c \"import numpy, sympy, click, rich.console, rich.table\"`"
        try:
            fs, ss = cold_pairs(floor2, gc_cmd + SEED_ARGS, *((5, 9, 20) if q else (15, 50, 60)))
        finally:
            os.environ["GRADCALC_NO_CACHE"] = "1"
        add_cold_rows("2", "cold one-liner, default human view with the symbolic check "
                           "(repeated: its derivation kept by an earlier process)",
                      floor2_text, fs, ss, cpu_row=True)
        fs, ss = cold_pairs(floor2, gc_cmd + SEED_ARGS, *((5, 9, 20) if q else (15, 50, 60)))
        add_cold_rows("2·fresh", "cold one-liner, default human view with the symbolic check "
                                 "derived afresh (no kept derivation: sympy imported)",
                      floor2_text, fs, ss, cpu_row=True)
    if want("3"):
        for fid, n, reps, workers in (("3a", 10**6, 9 if q else 21, 2 if q else 4),
                                      ("3b", 10**7, 3 if q else 7, 2 if q else 3)):
            r = spawn_pooled("fig3", (n, reps), workers)
            add_row(fid, f"forward + backward of the seed expression, n = 10^{len(str(n)) - 1}",
                    "hand-written numpy forward + VJP, same process", r["floor"], r["subject"],
                    r["ratios"], notes=torch_col("3", n, reps, r["floor"]))
            # issue 15 item 5: the same against a floor that pays no page faults
            u = r["reuse"]
            add_row(fid.replace("3a", "3c").replace("3b", "3d"),
                    f"forward + backward of the seed expression, n = 10^{len(str(n)) - 1}, "
                    "against a floor that reuses its buffers", "hand-written numpy forward + "
                    "VJP writing into buffers kept between runs (out=)", u["floor"],
                    u["subject"], u["ratios"])
    if want("4"):
        r = spawn("fig4", 10**7)
        add_row("4", "peak memory of 3 at n = 10^7 (traced, above the inputs)",
                "the hand-written version's peak", r["floor"], r["subject"],
                r["subject"] / r["floor"], unit="memory",
                notes=f"{r['floor'] / 2**20:.0f} MiB vs {r['subject'] / 2**20:.0f} MiB; "
                      "deterministic (no spread)")
    # figures 5 and 6 at n = 3000 and (5b, 6b; issue 15 item 6) n = 1000, where fixed
    # per-call costs weigh most and the floor's fresh pages hide less
    for fid, n in (("5", 3000), ("5b", 1000)):
        if want("5") or want(fid):
            reps = (3 if q else 9) if n > 1000 else (9 if q else 31)
            r = spawn_pooled("fig5", (n, reps), 2 if q else 3)
            add_row(fid, f"full Jacobian of `sin(a)*b + a**2` wrt a, b, n = {n}, dense",
                    "two n×n zero matrices filled by hand", r["floor"], r["subject"],
                    r["ratios"], notes=torch_col("5", n, 2 if q else 3, r["floor"]))
    for fid, n in (("6", 3000), ("6b", 1000)):
        if want("6") or want(fid):
            reps = (3 if q else 9) if n > 1000 else (9 if q else 31)
            r = spawn_pooled("fig6", (n, reps), 2 if q else 3)
            add_row(fid, f"full Jacobian of `W @ tanh(a)` wrt a, n = {n}",
                    "closed form `W * (1 - tanh(a)**2)`", r["floor"], r["subject"],
                    r["ratios"], notes=torch_col("6", n, 1, r["floor"]))
    if want("7"):
        runs = []

        def fig7_pair(_i):
            runs.append(spawn("fig7", 10**6, 3))
            return runs[-1]["ratio"]
        ratios = until_stable(fig7_pair, *((3, 5, 20) if q else (9, 25, 60)), tol=0.025)
        add_row("7", "symbolic check of the seed expression at n = 10^6 (first check in the "
                     "process; sympy imported and used once)",
                "its own forward + backward (the runs just before and after)",
                median(r["floor"] for r in runs), median(r["cold"] for r in runs), ratios,
                notes=f"later checks in the same process: "
                      f"{median(r['warm_ratio'] for r in runs):.2f}x; sympy's first use (not "
                      f"counted): {fmt_t(median(r['sympy_lazy'] for r in runs))}; one fresh "
                      "process per pair")
    if want("8"):
        count = 2000 if q else 10000
        data = ("\n".join(_requests(count, None)) + "\n").encode()
        for fid, check, budget in (("8a", "none", 60), ("8b", "symbolic", 90)):
            cmd = gc_cmd + ["-", "--check", check]
            floors, runs, empties = [], [], []

            def fig8_pair(_i):
                floors.append(spawn("fig8_floor", count, 1)["floor"])
                runs.append(time_process(cmd, data)[0] / count)
                empties.append(time_process(cmd, b"")[0])
                return runs[-1] / floors[-1]
            ratios = until_stable(fig8_pair, *((2, 3, 20) if q else (5, 15, budget)),
                                  tol=0.025)
            f, per, empty = median(floors), median(runs), median(empties)
            marginal = [(r - e / count) / fl for fl, r, e in zip(floors, runs, empties)]
            notes = f"without start-up ({fmt_t(empty)}): {median(marginal):.2f}x"
            if check == "symbolic":
                notes += f"; {_kept_stream(cmd, data, count, 3 if q else 7) / f:.2f}x " \
                         "with the derivation kept by an earlier process (no sympy)"
            add_row(fid, f"JSON Lines, {count:,} requests of the seed expression, "
                         f"`--check {check}` (whole process, start-up included)",
                    "hand-written loop in one process, per request", f, per, ratios,
                    notes=notes)
    if want("9"):
        fs, ss = cold_pairs([py, "-c", BIG_VIEW_BY_HAND],
                            gc_cmd + ["sum(x**2)", f"x=linspace(0,1,{BIG_VIEW_N})",
                                      "--check", "none"], *((3, 3, 10) if q else (7, 15, 40)))
        add_cold_rows("9", "human view of `sum(x**2)` at n = 10^7, `--check none` (whole "
                           "process, start-up included)",
                      "`python -c` forward + VJP by hand in numpy, printed", fs, ss)
    if want("10"):
        fs, ss = cold_pairs([py, "-c", BIG_JSON_BY_HAND],
                            gc_cmd + ["sum(x**2)", f"x=linspace(0,1,{BIG_VIEW_N})",
                                      "--check", "none", "--json"],
                            *((3, 3, 10) if q else (5, 11, 40)))
        add_cold_rows("10", "`--json` of `sum(x**2)` at n = 10^7 (2 x 10^7 numbers), "
                            "`--check none` (whole process, start-up included)",
                      "`python -c` forward + VJP by hand in numpy, the same object written "
                      "by orjson", fs, ss)

    # ================================================================ compute() vs torch, jax
    # issue 15, item 4 (stream): in process, one thread each, compile excluded
    if want("14"):
        engines = ["gradcalc"] + ([e for e in ("torch", "jax") if tfound.get(e)]
                                  if tpy else [])
        times = {e: {} for e in engines}
        # rounds: the engines' workers alternate, and each round is one pair (a fresh
        # process's allocator and caches move small-n times by tens of per cent: three
        # rounds against the median of the others' gave 0.68x and 1.42x in two runs)
        for _ in range(2 if q else 7):
            for e in engines:
                r = spawn("fig14", e, int(q), python=py if e == "gradcalc" else tpy,
                          timeout=1800)
                times[e]["version"] = r.pop("version", None)
                for n, t in r.items():
                    times[e].setdefault(n, []).append(t)
        for n in (FIG14_NS[:4] if q else FIG14_NS):
            ours = times["gradcalc"][str(n)]
            others = {e: median(times[e][str(n)]) for e in engines[1:]}
            if others:
                best = min(others, key=others.get)
                floor, floor_text = others[best], f"the faster of torch and jax.jit ({best})"
            else:
                floor, floor_text = median(ours), "no torch or jax given (--torch-python)"
            note = "; ".join(f"{e} {times[e]['version']}: {fmt_t(t)} "
                             f"({median(ours) / t:.2f}x)" for e, t in others.items())
            # each round's ratio against the faster other engine of that round
            best_of = [min(times[e][str(n)][i] for e in others) for i in range(len(ours))] \
                if others else ours
            add_row("14", f"`compute()` of the seed expression, n = 10^{len(str(n)) - 1}, "
                          "`check=\"none\"`, cached program, one thread (in process)",
                    floor_text, floor, median(ours),
                    [t / b for t, b in zip(ours, best_of)], notes=note, profile=f"14:{n}")
    # ================================================================ end of figure 14

    # ================================================================ JSON Lines curves
    # issue 15, item 3 (bench): one program repeated against every request its own program
    if want("16"):
        sizes = JSONL_SIZES[:3] if q else JSONL_SIZES
        per = {}
        for fid, kind, what in (("16a", "one", "one program (the seed expression)"),
                                ("16b", "distinct", "every request a distinct program")):
            totals = spawn("jsonl_curve", kind, ",".join(map(str, sizes)))["totals"]
            per[kind] = totals[-1] / sizes[-1]
            add_curve(fid, f"JSON Lines in process, `--check none`, {what}: CPU time vs "
                           "requests",
                      sizes, totals, per="request",
                      notes="" if kind == "one" else
                      f"a distinct program costs {per['distinct'] / per['one']:.1f}x a "
                      f"repeated one at {sizes[-1]:,} requests")
    # ================================================================ end of JSON Lines curves

    # ================================================================ gradcalc fit (issue 11)
    if want("17"):
        fs, ss = cold_pairs([py, "-c", GERMAN_BY_HAND], gc_cmd + GERMAN_FIT,
                            *((3, 3, 15) if q else (7, 21, 40)))
        add_cold_rows("17a", "the German page's fit (200 points, batch 10, 20 epochs, Adam: "
                             "400 steps, float32) as `gradcalc fit`, whole process",
                      "`python -c`: numpy, the CSV read, the same 400 Adam steps by hand",
                      fs, ss)
        # a script's fit: the report as JSON (orjson), no human report
        fs, ss = cold_pairs([py, "-c", GERMAN_BY_HAND], gc_cmd + GERMAN_FIT + ["--json"],
                            *((3, 3, 15) if q else (7, 21, 40)))
        add_cold_rows("17a·json", "the same fit as a script runs it, `gradcalc fit --json`, "
                                  "whole process",
                      "`python -c`: numpy, the CSV read, the same 400 Adam steps by hand",
                      fs, ss)
        if has_torch:
            fs, ss = cold_pairs([tpy, "-c", GERMAN_TORCH], gc_cmd + GERMAN_FIT,
                                *((2, 2, 15) if q else (5, 11, 40)))
            add_cold_rows("17a·torch", "the German fit against the same loop as a PyTorch "
                                       "script (DataLoader, Adam, MSELoss)",
                          "`python -c`: torch, the CSV read, the loop", fs, ss)
        r = spawn("fit_mlp", 3 if q else 9, env={"OPENBLAS_NUM_THREADS": "1"})
        notes = "one thread each; the second epoch's steps (programs compiled in the first)"
        if has_torch:
            try:
                t = spawn("fit_mlp_torch", 3 if q else 5, python=tpy,
                          env={"OPENBLAS_NUM_THREADS": "1"})
                notes += (f"; torch {t['torch_version']}: {t['subject'] / t['floor']:.2f}x its "
                          f"own process's floor ({fmt_t(t['subject'])} a step)")
            except Exception as exc:  # report, never stop the run
                notes += f"; torch failed ({str(exc).splitlines()[0][:60]})"
        add_row("17b", f"one Adam step of an MLP loss, `{MLP_TEXT}`, X 10,000×100, W1 100×256, "
                       f"batch {MLP_BATCH}", "hand-written numpy forward, backward and Adam step",
                r["floor"], r["subject"], r["ratios"], notes=notes)
        if has_torch:
            # one thread each, as 17b: MINPACK is one thread, and the BLAS products of lm's
            # JᵀJ gain nothing at three parameters from a second (numbers unchanged by it)
            big = spawn("fit_lm", 10**5, 3 if q else 9, python=tpy, env=ONE_THREAD)
            n = 10**5 if "error" not in big else 1000
            r = big if "error" not in big else spawn("fit_lm", n, 3 if q else 7, python=tpy,
                                                     env=ONE_THREAD)
            note = ("" if n == 10**5 else f"at 10^5 points: {big['error']}; measured at "
                                          f"{n:,} points instead; ")
            if "error" in r:
                note += f"at {n:,}: {r['error']}"
            else:
                note += f"popt within {r['gap']:.1e} of curve_fit's"
                add_row("17c", f"`gradcalc fit --optimizer lm`, exponential decay, {n:,} "
                               "points, one thread each",
                        "scipy curve_fit, finite-difference Jacobian",
                        r["fd"], r["subject"], r["ratios_fd"], notes=note)
                add_row("17d", f"the same lm fit, {n:,} points",
                        "scipy curve_fit given an analytic `jac`", r["jac"], r["subject"],
                        r["ratios_jac"])
    # ================================================================ end of the fit figures

    engine_curve_rows(want, q)      # E1-E4: the engine's cost curves (issue 15 item 3)

    second_order(want, q, tpy if has_torch else None, has_jax)
    total = time.perf_counter() - started
    previous = previous_ratios(args.previous) if args.previous else None
    print_table(total, load_before, args.profile, tpy, tfound, tnote, gc_shown, previous)
    return 0


def previous_ratios(path):
    """{(figure id, occurrence): ratio} from an earlier run's markdown table (figure 14 has
    one row per n, told apart by their order)."""
    found, seen, cols = {}, {}, None
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:1] == ["#"] and "ratio" in cells:
            cols = cells.index("#"), cells.index("ratio")
            continue
        if cols is None or len(cells) <= max(cols) or not line.startswith("| "):
            continue
        fid, shown = cells[cols[0]], cells[cols[1]].removeprefix("k = ").rstrip("×")
        try:
            ratio = float(shown)
        except ValueError:
            continue
        k = seen[fid] = seen.get(fid, -1) + 1
        found[(fid, k)] = ratio
    return found


def previous_cell(r, k, previous):
    """The previous run's ratio of row `r` (its k-th occurrence) and the change from it."""
    before = previous.get((r.fid, k))
    if before is None:
        return "—"
    if r.unit == "exponent":
        return f"k = {before:.2f} ({r.ratio - before:+.2f})"
    return f"{before:.2f}× ({(r.ratio / before - 1) * 100:+.0f} %)"


def print_table(total, load_before, profile, tpy, tfound, tnote, gc_shown, previous=None):
    info = machine()
    print("# gradcalc benchmark results\n")
    print(f"Produced by `python benchmarks/run.py` in {total:.0f} s. Each figure is the median "
          "of the ratios of interleaved floor/gradcalc pairs, measured in the same run (fresh "
          "worker processes); lower is better. Spread: the interquartile range of the pair "
          "ratios, and the half-width of the bootstrap 95 % interval of their median (another "
          "run's median is expected within about twice it). A curve's figure is its fitted "
          "exponent.\n")
    then = " previous run |" if previous is not None else ""
    print("| # | figure | floor | floor time | gradcalc | ratio | target | met | spread | "
          "other engines / notes |" + then)
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if then else ""))
    seen = {}
    for r in ROWS:
        if r.unit == "memory":
            ft, st = f"{r.floor / 2**20:.0f} MiB", f"{r.ours / 2**20:.0f} MiB"
        else:
            ft, st = fmt_t(r.floor), fmt_t(r.ours)
        shown = f"k = {r.ratio:.2f}" if r.unit == "exponent" else f"{r.ratio:.2f}×"
        if r.target is None:
            target, met = "—", "—"
        else:
            target = f"≤ {r.target}" + ("" if r.unit == "exponent" else "×")
            met = "yes" if r.ratio <= r.target and r.held else "**no**"
        k = seen[r.fid] = seen.get(r.fid, -1) + 1
        then = f" {previous_cell(r, k, previous)} |" if previous is not None else ""
        print(f"| {r.fid} | {r.figure} | {r.floor_text} | {ft} | {st} | {shown} | {target} | "
              f"{met} | {r.spread} | {r.notes} |" + then)
    if profile:
        for r in ROWS:
            if r.target is None or r.ratio <= r.target or r.unit == "exponent":
                continue
            try:
                text = spawn("profile", r.profile.split("·")[0])["text"]
            except Exception as exc:
                text = f"profile of {r.fid} failed: {exc}"
            print(f"\n```\n{text}\n```")
    print("\nMachine: " + "; ".join(f"{k} {v}" for k, v in info.items())
          + f" (load at the start {' '.join(f'{x:.2f}' for x in load_before)}).")
    print(f"gradcalc command: `{gc_shown}` (bytecode compiled, as a wheel install has it).")
    if tpy:
        print("Other engines (from --torch-python): " + ", ".join(
            f"{k} {v or 'not installed'}" for k, v in tfound.items()) + ".")
    else:
        print(f"Other engines: skipped ({tnote}).")


if __name__ == "__main__":
    sys.exit(main())
