"""What the cross-checks cost, each figure a ratio against a floor measured in the same run.

    python benchmarks/symbolic.py [--quick] [--reps N]
    python benchmarks/symbolic.py --curves [--quick]

Figures (every measurement in fresh worker processes, `--worker NAME`, repeated, medians;
floors and subjects interleaved). A measurement, not a test: nothing here asserts a time.

  S1  an elementwise program over 10^6 elements (3*a + 2*b*b + log(c)), symbolic check in a
      fresh process (sympy imported cold), against its own evaluation (--check none) plus
      `import sympy` in a fresh process. Issue 4 asks for a ratio of about 1.
  S2  the same, warm (sympy already imported, a second call): check against evaluation.
  S3  the seed one-liner through the CLI in a fresh process: the default (symbolic) against
      --check none. Its overhead is sympy's import plus milliseconds.
  S4  the seed one-liner in-process, warm: the symbolic check's own milliseconds.
  S5  a sample that mixes elements (chinese_logistic_layer.grad, the per-element path), warm.
  S6  the numeric check on S1's program (perturbs whole leaves), warm.

--curves (issue 15 item 3): the symbolic check's own time as the program grows, each curve
in a fresh process, with its exponent fitted by least squares on log-log (target <= 1.1):
  terms   a wide sum of k distinct terms over one leaf, log(x + 1) + log(x + 2) + ...
          (k = 10 .. 10^4; sin(x)*1 + sin(x)*2 + ... would collect into one term)
  leaves  k leaves, x0*x0 + x1*x1 + ... (k = 1 .. 1,000)
  chain   k ops in a chain, y = y*1.01 and y = sin(y) in turn (k = 10 .. 1,000)
Each point is the check alone (symbolic.run_here on the computed result, the derivation
cache cleared, budget 600 s so that its cost is seen), the median of a few runs; the notes
say whether it fits the default budget (10 s of CPU) and what the check reported.
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
SEED = ["3*a + 2*b*b + log(c)", "a=1,2,3", "b=3,4,5", "c=6,7,8", "-g", "0.1,1.0,0.0001"]
EXPR = "3*a + 2*b*b + log(c)"


# ------------------------------------------------------------------ worker side
def _inputs(n):
    import numpy as np
    rng = np.random.default_rng(0)
    return dict(a=rng.uniform(-2, 2, n), b=rng.uniform(-2, 2, n), c=rng.uniform(0.5, 3, n),
                grad=rng.uniform(-1, 1, n))


def _compute(check, **kw):
    import gradcalc
    from gradcalc.errors import Limits
    r = gradcalc.compute(EXPR, check=check, limits=Limits(max_memory=16 * 1024**3), **kw)
    if check != "none":
        c = r.checks[check if check != "all" else "symbolic"]
        assert c["passed"] is True, c
    return r


def worker_import_sympy():
    t = time.perf_counter()
    import sympy  # noqa: F401
    return time.perf_counter() - t


def worker_cold(n):
    """One process: the evaluation alone, then the symbolic check with sympy cold."""
    kw = _inputs(n)
    _compute("none", **kw)                       # gradcalc's own modules and pages, warm
    t = time.perf_counter()
    _compute("none", **kw)
    t_none = time.perf_counter() - t
    assert "sympy" not in sys.modules
    t = time.perf_counter()
    _compute("symbolic", **kw)
    return {"none": t_none, "symbolic": time.perf_counter() - t}


def worker_warm(n, reps, check):
    kw = _inputs(n)
    _compute(check, **kw)
    _compute("none", **kw)
    tn, tc = [], []
    for _ in range(reps):
        t = time.perf_counter()
        _compute("none", **kw)
        tn.append(time.perf_counter() - t)
        t = time.perf_counter()
        _compute(check, **kw)
        tc.append(time.perf_counter() - t)
    return {"none": statistics.median(tn), check: statistics.median(tc)}


def worker_seed_inprocess(reps):
    import gradcalc
    kw = dict(a=[1, 2, 3], b=[3, 4, 5], c=[6, 7, 8], grad=[0.1, 1.0, 0.0001])
    gradcalc.compute(EXPR, **kw)
    tn, ts = [], []
    for _ in range(reps):
        t = time.perf_counter()
        gradcalc.compute(EXPR, check="none", **kw)
        tn.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = gradcalc.compute(EXPR, **kw)
        ts.append(time.perf_counter() - t)
        assert r.checks["symbolic"]["derivatives"] == {"a": "3", "b": "4*b", "c": "1/c"}
    return {"none": statistics.median(tn), "symbolic": statistics.median(ts)}


def worker_sample(reps):
    import gradcalc
    text = (ROOT / "samples" / "chinese_logistic_layer.grad").read_text()
    gradcalc.compute(text)
    tn, ts = [], []
    for _ in range(reps):
        t = time.perf_counter()
        gradcalc.compute(text, check="none")
        tn.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = gradcalc.compute(text)
        ts.append(time.perf_counter() - t)
        assert r.checks["symbolic"]["passed"] is True
    return {"none": statistics.median(tn), "symbolic": statistics.median(ts)}


CURVES = {
    "terms": ([10, 100, 1000, 10_000],            # distinct terms: none collects into another
              lambda k: (" + ".join(f"log(x + {i + 1})" for i in range(k)), {"x": 0.3})),
    "leaves": ([1, 10, 100, 1000],
               lambda k: (" + ".join(f"x{i}*x{i}" for i in range(k)),
                          {f"x{i}": 0.25 + i / 1000 for i in range(k)})),
    "chain": ([10, 100, 1000],
              lambda k: ("\n".join(["y = x"] + [("y = sin(y)" if i % 2 else "y = y*1.01")
                                                for i in range(k)]), {"x": 0.3})),
}


def worker_curve(kind, reps):
    """The symbolic check's own seconds at each size of one curve (this process)."""
    import gradcalc
    from gradcalc.checks import Context, symbolic
    sizes, program = CURVES[kind]
    gradcalc.compute("sin(x)*x + x", x=0.5)          # sympy imported and used once
    points = []
    for k in sizes:
        text, values = program(k)
        r = gradcalc.compute(text, check="none", **values)
        ts = []
        for _ in range(reps if k < 1000 else 1):
            r.graph.memo.clear()                     # the derivation, not its cache
            context = Context(graph=r.graph, values=r.values, output_id=r.output_id,
                              cotangent=r.cotangent, wrt=tuple(r.wrt), grads=dict(r.grads),
                              jacobian=None, dtype=r.dtype)
            t = time.perf_counter()
            c0 = time.process_time()
            rep = symbolic.run_here(context, symbolic.Budget(600))
            ts.append((time.perf_counter() - t, time.process_time() - c0))
        wall, cpu = statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)
        points.append({"k": k, "seconds": wall, "cpu": cpu, "passed": rep.get("passed"),
                       "skipped": rep.get("skipped"),
                       "checked": rep.get("elements_checked")})
    return points


def exponent(points, key="seconds"):
    """The least-squares slope of log(time) against log(size)."""
    import numpy as np
    x = np.log([p["k"] for p in points])
    y = np.log([p[key] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def curves(args):
    print("| curve | k | check s (wall) | check s (CPU) | report |")
    print("| --- | ---: | ---: | ---: | --- |")
    fits = []
    for kind in CURVES:
        points = run_worker("curve", args, ["--kind", kind])
        for p in points:
            said = "passed" if p["passed"] else f"passed={p['passed']} {p['skipped'] or ''}"
            within = "" if p["cpu"] <= 10 else " (beyond the default 10 s budget)"
            print(f"| {kind} | {p['k']:,} | {p['seconds']:.3f} | {p['cpu']:.3f} | "
                  f"{said}, {p['checked']} elements{within} |")
        fits.append((kind, exponent(points), exponent(points[-2:]), exponent(points, "cpu"),
                     exponent(points[-2:], "cpu")))
    print()
    for kind, whole, last, cpu, cpu_last in fits:      # CPU: steadier on a loaded machine
        print(f"{kind}: exponent {whole:.2f} over the curve, {last:.2f} over its last "
              f"decade (CPU time: {cpu:.2f} and {cpu_last:.2f})")


WORKERS = {
    "curve": lambda a: worker_curve(a.kind, a.reps),
    "import_sympy": lambda a: worker_import_sympy(),
    "cold": lambda a: worker_cold(a.n),
    "warm_symbolic": lambda a: worker_warm(a.n, a.reps, "symbolic"),
    "warm_numeric": lambda a: worker_warm(a.n, a.reps, "numeric"),
    "seed_inprocess": lambda a: worker_seed_inprocess(a.reps * 5),
    "sample": lambda a: worker_sample(a.reps),
}


# ------------------------------------------------------------------ driver side
def run_worker(name, args, extra=()):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--n", str(args.n), "--reps", str(args.reps), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_seconds(extra):
    cmd = [sys.executable, "-m", "gradcalc", *SEED, "--json", *extra]
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT,
                   env=dict(os.environ, NO_COLOR="1"))
    return time.perf_counter() - t


def median_of(f, reps):
    return statistics.median(f() for _ in range(reps))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker")
    p.add_argument("--n", type=int, default=10**6)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--curves", action="store_true", help="the check's cost curves")
    p.add_argument("--kind", choices=sorted(CURVES))
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    if args.quick:
        args.reps = 2
    if args.curves:
        curves(args)
        return
    procs = max(3, args.reps)
    imp, cold_none, cold_sym = [], [], []
    for _ in range(procs):                          # interleaved fresh processes
        imp.append(run_worker("import_sympy", args))
        c = run_worker("cold", args)
        cold_none.append(c["none"])
        cold_sym.append(c["symbolic"])
    t_imp, t_none, t_sym = (statistics.median(x) for x in (imp, cold_none, cold_sym))
    warm = run_worker("warm_symbolic", args)
    num = run_worker("warm_numeric", args)
    cli_none, cli_sym = [], []
    for _ in range(procs):
        cli_none.append(cli_seconds(["--check", "none"]))
        cli_sym.append(cli_seconds([]))
    c_none, c_sym = statistics.median(cli_none), statistics.median(cli_sym)
    seed = run_worker("seed_inprocess", args)
    sample = run_worker("sample", args)

    rows = [
        ("S1", f"{args.n:,}-element elementwise program, symbolic check, sympy cold",
         "evaluation (--check none) + `import sympy`", t_sym, t_none + t_imp),
        ("S2", "the same, warm (sympy imported)", "evaluation (--check none)",
         warm["symbolic"], warm["none"]),
        ("S3", "seed one-liner, CLI process, default check (symbolic)", "the same, --check none",
         c_sym, c_none),
        ("S4", "seed one-liner in-process, warm, symbolic", "the same, --check none",
         seed["symbolic"], seed["none"]),
        ("S5", "chinese_logistic_layer.grad (per-element path), warm", "the same, --check none",
         sample["symbolic"], sample["none"]),
        ("S6", f"{args.n:,}-element program, numeric check, warm", "evaluation (--check none)",
         num["numeric"], num["none"]),
    ]
    print(f"gradcalc symbolic-check benchmark: python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cpus, median of {procs} processes / "
          f"{args.reps} repetitions")
    print(f"`import sympy` in a fresh process: {t_imp * 1e3:.0f} ms\n")
    print("| fig | subject | floor | subject s | floor s | ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for fig, subject, floor, ts, tf in rows:
        print(f"| {fig} | {subject} | {floor} | {ts:.4f} | {tf:.4f} | {ts / tf:.2f} |")
    print(f"\nS1 extra over the floor: {(t_sym - t_none - t_imp) * 1e3:+.0f} ms; "
          f"S3 overhead: {(c_sym - c_none) * 1e3:+.0f} ms per CLI run; "
          f"S4 overhead: {(seed['symbolic'] - seed['none']) * 1e3:+.1f} ms per call.")


if __name__ == "__main__":
    main()
