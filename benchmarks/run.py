"""The performance figures of issue 6 (and figure 9, issue 13's human view of a large array;
figure 10, issue 15's `--json` of a large array; figures 11-13, issue 10's second order),
each a ratio against a floor measured in the same run.

    python benchmarks/run.py [--torch-python PATH] [--quick] [--only 1,3,8] [--profile]

Every figure runs in fresh worker processes (`--worker NAME`), floor and gradcalc
interleaved, several repetitions, medians; the main process prints one markdown table and
the machine it ran on. It is a measurement, not a test: nothing here asserts a time.
Torch (and JAX) are timed on figures 3, 5 and 6 when the interpreter given by
--torch-python (default: /work/torchenv/bin/python when it exists) can import them;
otherwise those columns say so and the run goes on. Figure 12 (a dense Hessian) is a
ratio against torch (12a) and jax (12b) themselves, one thread each, and is skipped
without them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_EXPR = "3*a + 2*b*b + log(c)"
SEED_ARGS = [SEED_EXPR, "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]
DEFAULT_TORCH = "/work/torchenv/bin/python"

TARGETS = {
    "1": 1.25, "2": 0.85, "3a": 1.3, "3b": 1.3, "4": 1.5, "5": 2.0, "6": 2.0, "7": 3.0,
    "8a": 4.0, "8b": 10.0, "9": 1.5, "10": 2.0,
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
    return {"floor": floor, "subject": subject, "ratio": median(ratios), **extra}


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
    r = []
    floor, subject = _interleave(lambda: _seed_by_hand(a, b, c, v), ours, reps, ratios=r)
    return _result(floor, subject, r)


def worker_fig4(n):
    """Peak traced memory (numpy reports its buffers to tracemalloc) above the inputs,
    results included, for the hand-written version and for gradcalc, in one process."""
    import gc
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
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        r = fn()
        out[name] = tracemalloc.get_traced_memory()[1] - base
        del r
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


def worker_fig5(n, reps):
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
    The first checked run of the process is the one a one-liner pays."""
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
    none = median([run("none") for _ in range(reps)])
    cold = run("symbolic")
    warm = median([run("symbolic") for _ in range(reps)])
    return {"floor": none, "cold": cold, "warm": warm, "sympy_lazy": lazy}


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


def worker_profile(fig, top=18):
    """cProfile of gradcalc's side of a figure (the calls the figure times), top functions
    by own time, as text."""
    import cProfile
    import io
    import pstats
    import numpy as np
    import gradcalc
    fig = str(fig)
    if fig in ("3", "3a", "3b"):
        n = 10**6 if fig != "3b" else 10**7
        a, b, c, v = _seed_inputs(n)
        lim = _big_limits()
        call = lambda: gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v,  # noqa: E731
                                        check="none", jacobian=False, limits=lim)
        reps = 10
    elif fig == "6":
        rng = np.random.default_rng(2)
        W = rng.standard_normal((3000, 3000)) / np.sqrt(3000)
        a = rng.uniform(-2, 2, 3000)
        call = lambda: gradcalc.compute("W @ tanh(a)", W=W, a=a, wrt=["a"],  # noqa: E731
                                        grad=1.0, check="none", jacobian=True)
        reps = 10
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
        a, b, c, v = _seed_inputs(10**6)
        r = gradcalc.compute(SEED_EXPR, a=a, b=b, c=c, grad=v, check="numeric",
                             jacobian=False)       # a result holding every value
        context = Context(graph=r.graph, values=r.values, output_id=r.output_id,
                          cotangent=r.cotangent, wrt=tuple(r.wrt), grads=dict(r.grads),
                          jacobian=None, dtype=r.dtype)

        def call():               # the check's worker body, in this thread so it is seen
            symbolic.run_here(context, symbolic.Budget(100))
        reps = 1
        prof = cProfile.Profile()
        prof.enable()
        call()                    # the first check of the process
        prof.disable()
        return {"text": _stats(prof, top, f"figure 7, the first check (sympy used once "
                                          f"before)", "tottime")}
    elif fig == "2":
        from gradcalc import cli

        def call():
            old = sys.stdout
            sys.stdout = io.StringIO()
            try:
                cli.main(SEED_ARGS)
            except SystemExit:
                pass
            finally:
                sys.stdout = old
        prof = cProfile.Profile()
        prof.enable()
        call()                    # cold: every import happens inside
        prof.disable()
        return {"text": _stats(prof, top, "figure 2, one cold run in-process (main thread; "
                                          "the symbolic check's own thread shows as the wait "
                                          "in check)", "cumulative")}
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
    return f"{title}, by {order} time:\n" + "\n".join(
        ln.replace(str(ROOT) + "/", "").replace(sys.prefix, "<python>") for ln in keep)


WORKERS = {"profile": worker_profile, "fig3": worker_fig3, "fig4": worker_fig4, "fig5": worker_fig5, "fig6": worker_fig6,
           "fig7": worker_fig7, "fig8_floor": worker_fig8_floor, "torch": worker_torch,
           "jax": worker_jax}


# ------------------------------------------------------------------ main side
def spawn(name, *args, python=None, timeout=900, env=None):
    cmd = [python or sys.executable, str(Path(__file__).resolve()), "--worker", name,
           *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **(env or {}))
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
        return [str(script)], str(script)
    return [sys.executable, "-m", "gradcalc"], "python -m gradcalc"


def time_process(cmd, stdin_data=None):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin_data, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, cwd=str(ROOT))
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {proc.stderr[-500:]!r}")
    return dt


def cold_pair(floor_cmd, cmd, reps):
    """(median floor, median gradcalc, median of the pairwise ratios) of whole processes."""
    for _ in range(2):                               # warm the page cache for both
        time_process(floor_cmd)
        time_process(cmd)
    tf, ts = [], []
    for _ in range(reps):
        tf.append(time_process(floor_cmd))
        ts.append(time_process(cmd))
    return median(tf), median(ts), median([s / f for f, s in zip(tf, ts)])


def torch_python(arg):
    path = arg if arg is not None else (DEFAULT_TORCH if os.path.exists(DEFAULT_TORCH) else None)
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
    import gc
    import tracemalloc
    grad, _, hessian = _loss_calls(n)
    _loss_calls(10)[2]()                     # imports and op-table set-up
    out = {}
    tracemalloc.start()
    for name, fn in (("grad", grad), ("hessian", hessian)):
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        r = fn()
        out[name] = tracemalloc.get_traced_memory()[1] - base
        del r
    tracemalloc.stop()
    return out


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


def _workers(name, n, quick):
    """Figure `name` in 3 fresh workers (2 with --quick): medians of their floors, times
    and ratios, and the ratios as text (the spread between processes)."""
    rs = [spawn(name, n, 5 if quick else 9) for _ in range(2 if quick else 3)]
    spread = ", ".join(f"{r['ratio']:.2f}" for r in rs)
    return {k: median([r[k] for r in rs]) for k in ("floor", "subject", "ratio")}, spread


def second_order(want, quick, row, tpy, has_jax):
    """Rows 11, 12a/12b and 13 (rows of the table, as `row` appends them)."""
    n = 10**6
    if want("11"):
        r, spread = _workers("fig11", n, quick)
        row("11", f"HVP of `{ELEMENTWISE_LOSS}` at n = 10^6 (`hvp=` along (ua, ub), the whole "
                  "call: gradient and H·u)", "its gradient (the same call without hvp)",
            r["floor"], r["subject"],
            f"median of 3 workers (2 with --quick); their ratios {spread}",
            ratio=r)
    if want("12"):
        _second_order_dense(quick, row, tpy, has_jax)
    if want("13"):
        r, spread = _workers("fig13", n, quick)
        mems = {k: spawn("fig13_memory", k) for k in (n, 2 * n)}
        per = "; ".join(f"n = {k:,}: {m['hessian'] / 2**20:.0f} MiB peak "
                        f"({m['hessian'] / k:.0f} B/element; gradient {m['grad'] / 2**20:.0f} MiB)"
                        for k, m in mems.items())
        row("13", f"elementwise Hessian (`--hessian`, kept as diagonals) of `{ELEMENTWISE_LOSS}` "
                  "at n = 10^6", "its gradient (the same call without hessian)", r["floor"],
            r["subject"],
            f"median of 3 workers (2 with --quick); their ratios {spread}. Memory: {per}",
            ratio=r)


def _second_order_dense(quick, row, tpy, has_jax):
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
    row("12a", figure, f"torch {version['torch']} `autograd.functional.hessian(vectorize=True)`",
        median(torch_t), median(ours), "rounds: " + ", ".join(f"{x:.2f}" for x in vs_torch),
        ratio=median(vs_torch))
    if jax_t:
        vs_jax = [o / j for o, j in zip(ours, jax_t)]
        row("12b", figure, f"jax {version['jax']} `jit(hessian)`, compile excluded",
            median(jax_t), median(ours), "rounds: " + ", ".join(f"{x:.2f}" for x in vs_jax),
            ratio=median(vs_jax))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch-python", help="an interpreter with torch (and/or jax) to time "
                                           "them too; 'none' to skip")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--only", help="comma list of figure numbers, e.g. 1,3,8")
    ap.add_argument("--profile", action="store_true",
                    help="append a cProfile of gradcalc's side of every target not met")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        name, *rest = args.worker
        conv = [int(x) if x.lstrip("-").isdigit() else x for x in rest]
        print(json.dumps(WORKERS[name](*conv)))
        return 0

    only = set(args.only.split(",")) if args.only else None
    q = args.quick
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
    rows = []      # (id, figure, floor text, floor s, ours s, ratio, target, others)
    started = time.perf_counter()

    def row(fid, figure, floor_text, floor, ours, others="", ratio=None):
        ratio = ours / floor if ratio is None else ratio
        if isinstance(ratio, dict):
            ratio = ratio["ratio"]
        rows.append((fid, figure, floor_text, floor, ours, ratio, TARGETS[fid], others))
        print(f"  {fid}: {fmt_t(floor)} vs {fmt_t(ours)} -> {ratio:.2f}x", file=sys.stderr)

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
        f, s, ratio = cold_pair([py, "-c", "import numpy"],
                                gc_cmd + SEED_ARGS + ["--json", "--check", "none"],
                                9 if q else 25)
        row("1", "cold one-liner, `--json --check none`, the seed example",
            "`python -c \"import numpy\"`", f, s, ratio=ratio)
    if want("2"):
        f, s, ratio = cold_pair([py, "-c", "import numpy, sympy, click, rich.console, rich.table"],
                                gc_cmd + SEED_ARGS, 7 if q else 21)
        row("2", "cold one-liner, default human view with the symbolic check",
            "`python -c \"import numpy, sympy, click, rich.console, rich.table\"`", f, s,
            ratio=ratio)
    if want("3"):
        for fid, n, reps in (("3a", 10**6, 9 if q else 21), ("3b", 10**7, 3 if q else 9)):
            r = spawn("fig3", n, reps)
            row(fid, f"forward + backward of the seed expression, n = 10^{len(str(n)) - 1}",
                "hand-written numpy forward + VJP, same process", r["floor"], r["subject"],
                torch_col("3", n, reps, r["floor"]), ratio=r)
    if want("4"):
        r = spawn("fig4", 10**7)
        rows.append(("4", "peak memory of 3 at n = 10^7 (traced, above the inputs)",
                     "the hand-written version's peak", r["floor"], r["subject"],
                     r["subject"] / r["floor"], TARGETS["4"],
                     f"{r['floor'] / 2**20:.0f} MiB vs {r['subject'] / 2**20:.0f} MiB"))
        print(f"  4: {r['floor'] / 2**20:.0f} MiB vs {r['subject'] / 2**20:.0f} MiB",
              file=sys.stderr)
    if want("5"):
        r = spawn("fig5", 3000, 3 if q else 9)
        row("5", "full Jacobian of `sin(a)*b + a**2` wrt a, b, n = 3000, dense",
            "two n×n zero matrices filled by hand", r["floor"], r["subject"],
            torch_col("5", 3000, 2 if q else 3, r["floor"]), ratio=r)
    if want("6"):
        r = spawn("fig6", 3000, 3 if q else 9)
        row("6", "full Jacobian of `W @ tanh(a)` wrt a, n = 3000",
            "closed form `W * (1 - tanh(a)**2)`", r["floor"], r["subject"],
            torch_col("6", 3000, 1, r["floor"]), ratio=r)
    if want("7"):
        colds, warms, nones, lazies = [], [], [], []
        for _ in range(2 if q else 3):
            r = spawn("fig7", 10**6, 3 if q else 5)
            colds.append(r["cold"] - r["floor"])
            warms.append(r["warm"] - r["floor"])
            nones.append(r["floor"])
            lazies.append(r["sympy_lazy"])
        f = median(nones)
        row("7", "symbolic check of the seed expression at n = 10^6 (first check in the "
                 "process; sympy imported and used once)", "its own forward + backward", f,
            median(colds), f"later checks in the same process: {median(warms) / f:.2f}x; "
                           f"sympy's first use (not counted): {fmt_t(median(lazies))}")
    if want("8"):
        count = 2000 if q else 10000
        data = ("\n".join(_requests(count, None)) + "\n").encode()
        for fid, check in (("8a", "none"), ("8b", "symbolic")):
            cmd = gc_cmd + ["-", "--check", check]
            floors, runs, empties = [], [], []
            for _ in range(2 if q else 5):      # floor and stream alternately
                floors.append(spawn("fig8_floor", count, 1)["floor"])
                runs.append(time_process(cmd, data) / count)
                empties.append(time_process(cmd, b""))
                if runs[-1] * count > 20:
                    break                       # a slow stream: one pair says enough
            f, per, empty = median(floors), median(runs), median(empties)
            ratio = median([r / fl for fl, r in zip(floors, runs)])
            marginal = per - empty / count
            row(fid, f"JSON Lines, {count:,} requests of the seed expression, `--check {check}`"
                     " (whole process, start-up included)",
                "hand-written loop in one process, per request", f, per,
                f"without start-up ({fmt_t(empty)}): {marginal / f:.2f}x", ratio=ratio)
    if want("9"):
        f, s, ratio = cold_pair([py, "-c", BIG_VIEW_BY_HAND],
                                gc_cmd + ["sum(x**2)", f"x=linspace(0,1,{BIG_VIEW_N})",
                                          "--check", "none"], 3 if q else 9)
        row("9", "human view of `sum(x**2)` at n = 10^7, `--check none` (whole process, "
                 "start-up included)",
            "`python -c` forward + VJP by hand in numpy, printed", f, s, ratio=ratio)
    if want("10"):
        f, s, ratio = cold_pair([py, "-c", BIG_JSON_BY_HAND],
                                gc_cmd + ["sum(x**2)", f"x=linspace(0,1,{BIG_VIEW_N})",
                                          "--check", "none", "--json"], 3 if q else 9)
        row("10", "`--json` of `sum(x**2)` at n = 10^7 (2 x 10^7 numbers), `--check none` "
                  "(whole process, start-up included)",
            "`python -c` forward + VJP by hand in numpy, the same object written by orjson",
            f, s, ratio=ratio)

    second_order(want, q, row, tpy if has_torch else None, has_jax)
    total = time.perf_counter() - started
    info = machine()
    print("# gradcalc benchmark results\n")
    print(f"Produced by `python benchmarks/run.py` in {total:.0f} s. Each figure is a ratio "
          "against a floor measured in the same run (medians of interleaved repetitions in "
          "fresh worker processes); lower is better.\n")
    print("| # | figure | floor | floor time | gradcalc | ratio | target | met | other "
          "engines / notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fid, figure, ftext, f, s, ratio, target, others in rows:
        if fid == "4":
            ft, st = f"{f / 2**20:.0f} MiB", f"{s / 2**20:.0f} MiB"
        else:
            ft, st = fmt_t(f), fmt_t(s)
        met = "yes" if ratio <= target else "**no**"
        print(f"| {fid} | {figure} | {ftext} | {ft} | {st} | {ratio:.2f}× | ≤ {target}× | "
              f"{met} | {others} |")
    if args.profile:
        missed = [fid for fid, *_rest, ratio, target, _o in rows if ratio > target]
        for fid in missed:
            try:
                text = spawn("profile", fid)["text"]
            except Exception as exc:
                text = f"profile of {fid} failed: {exc}"
            print(f"\n```\n{text}\n```")
    print("\nMachine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".")
    print(f"gradcalc command: `{gc_shown}` (bytecode compiled, as a wheel install has it).")
    if tpy:
        print(f"Other engines from `{tpy}`: " + ", ".join(
            f"{k} {v or 'not installed'}" for k, v in tfound.items()) + ".")
    else:
        print(f"Other engines: skipped ({tnote}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
