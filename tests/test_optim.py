"""`gradcalc fit`'s numerical core against recorded PyTorch and scipy (no torch or scipy here).

tests/reference/record_optim.py recorded, with torch 2.13 and scipy: SGD/Adam/AdamW
trajectories over every option combination in float64 and float32 (torch_optim.json),
curve_fit's results (curve_fit_lm.json) and the German seed page's training
(torch_german_fit.json). Here the optimizers replay those trajectories twice: with torch's
own gradients (the update rule alone) and with gradients computed by hand in numpy over
batches cut by gradcalc.fit.batches (the whole loop). LM is held to curve_fit's numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcalc.errors import GradcalcError
from gradcalc.fit.batches import plan_batches
from gradcalc.fit.lm import Layout, LMOptions, levenberg_marquardt, r_factor
from gradcalc.fit.optimizers import make_optimizer

REFERENCE = Path(__file__).resolve().parent / "reference"
OPTIM = json.loads((REFERENCE / "torch_optim.json").read_text())
LM = json.loads((REFERENCE / "curve_fit_lm.json").read_text())
GERMAN = json.loads((REFERENCE / "torch_german_fit.json").read_text())

# float64: every step within ~1e-12 relative; float32: ~1e-5 (parameters are of order 1,
# so the absolute part covers those that pass near zero)
TOL = {"float64": {"rtol": 1e-12, "atol": 1e-13}, "float32": {"rtol": 1e-5, "atol": 1e-6}}
RUN_IDS = [f"{r['problem']}-{r['dtype']}-{r['optimizer']}-{json.dumps(r['hyper'])}"
           for r in OPTIM["runs"]]


def decoded(value):
    return np.array(value, dtype=object).astype(np.float64)


def start_of(run: dict) -> dict[str, np.ndarray]:
    start = OPTIM["problems"][run["problem"]]["start"]
    return {k: np.array(v, dtype=run["dtype"]) for k, v in start.items()}


def optimizer_of(run: dict):
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in run["hyper"].items()}
    return make_optimizer(run["optimizer"], **hyper)


def mse_grads(problem: str, data: dict, params: dict) -> tuple[float, dict]:
    """The batch loss and its gradient, by hand, in the data's dtype."""
    if problem == "german":
        x, y, w, b = data["x"], data["y"], params["w"], params["b"]
        diff = 2 * x * w[0] + x**2 * w[1] + b - y
        g = diff * x.dtype.type(2 / diff.size)
        grads = {"w": np.stack([np.sum(g * 2 * x), np.sum(g * x**2)]), "b": np.sum(g)}
    else:
        diff = data["X"] @ params["W"] + params["c"] - data["Y"]
        g = diff * diff.dtype.type(2 / diff.size)
        grads = {"W": data["X"].T @ g, "c": g.sum(axis=0)}
    return float(np.mean(diff * diff)), grads


def assert_params(got: dict, expected: dict, dtype: str, where: str) -> None:
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], np.array(value), **TOL[dtype],
                                   err_msg=f"{name} at {where}")


@pytest.mark.parametrize("run", [r for r in OPTIM["runs"] if r["problem"] == "german"],
                         ids=[i for i, r in zip(RUN_IDS, OPTIM["runs"])
                              if r["problem"] == "german"])
def test_update_rule_replays_torch_with_torchs_gradients(run):
    params, optimizer = start_of(run), optimizer_of(run)
    for number, step in enumerate(run["steps"], 1):
        grads = {k: np.array(v, dtype=run["dtype"]) for k, v in step["grads"].items()}
        optimizer.step(params, grads)
        assert all(p.dtype == np.dtype(run["dtype"]) for p in params.values())
        assert_params(params, step["params"], run["dtype"], f"step {number}")


@pytest.mark.parametrize("run", OPTIM["runs"], ids=RUN_IDS)
def test_training_loop_replays_torch_over_short_last_batch_and_epochs(run):
    data = {k: np.array(v, dtype=run["dtype"])
            for k, v in OPTIM["problems"][run["problem"]]["data"].items()}
    plan = plan_batches(data, OPTIM["batch_size"])
    assert plan.batches_per_epoch == 11 and plan.batched == tuple(data)
    params, optimizer = start_of(run), optimizer_of(run)
    steps = iter(run["steps"])
    for epoch in range(1, OPTIM["epochs"] + 1):
        for batch in plan.epoch(epoch):
            step = next(steps)
            loss, grads = mse_grads(run["problem"], plan.take(data, batch), params)
            np.testing.assert_allclose(loss, step["loss"], **TOL[run["dtype"]])
            optimizer.step(params, grads)
            if "params" in step:
                assert_params(params, step["params"], run["dtype"], f"epoch {epoch}")
    assert next(steps, None) is None


def test_defaults_are_torchs():
    for name, expected in OPTIM["defaults"].items():
        assert make_optimizer(name).hyper() == expected


@pytest.mark.parametrize("case", OPTIM["validation"],
                         ids=[f"{c['optimizer']}-{json.dumps(c['hyper'])}"
                              for c in OPTIM["validation"]])
def test_refuses_exactly_what_torch_refuses(case):
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in case["hyper"].items()}
    if not case["refused"]:
        make_optimizer(case["optimizer"], **hyper)
        return
    with pytest.raises(GradcalcError) as err:
        make_optimizer(case["optimizer"], **hyper)
    assert err.value.kind == "usage"
    named = {"lr": "--lr", "eps": "--eps", "betas": "--betas", "momentum": "--momentum",
             "weight_decay": "--weight-decay", "nesterov": "--nesterov"}
    assert any(named[k] in err.value.message for k in hyper), err.value.message


def test_options_of_another_optimizer_and_unknown_names_are_usage_errors():
    with pytest.raises(GradcalcError, match="--momentum does not apply to --optimizer adam"):
        make_optimizer("adam", momentum=0.9)
    with pytest.raises(GradcalcError, match="--betas does not apply to --optimizer sgd"):
        make_optimizer("sgd", betas=(0.9, 0.99))
    with pytest.raises(GradcalcError, match="--optimizer must be one of sgd, adam, adamw, lm"):
        make_optimizer("rmsprop")


def test_a_gradient_of_another_shape_is_a_shape_error_and_scalars_update_in_place():
    params = {"w": np.zeros(2), "b": np.array(1.0)}
    with pytest.raises(GradcalcError, match="gradient of w has shape \\(3,\\)") as err:
        make_optimizer("sgd", lr=0.5).step(params, {"w": np.ones(3), "b": 1.0})
    assert err.value.kind == "shape"
    sgd = make_optimizer("sgd", lr=0.5, momentum=0.5, weight_decay=1.0)
    b = params["b"]
    for _ in range(2):
        sgd.step({"b": b}, {"b": 1.0})
    # by hand: g1 = 1 + 1 = 2, buf 2, b = 0; g2 = 1 + 0 = 1, buf = 0.5*2 + 1 = 2, b = -1
    assert params["b"] is b and float(b) == -1.0


def test_reports_every_hyper_parameter_by_torchs_name():
    assert make_optimizer("adamw", lr=0.1, amsgrad=True).hyper() == {
        "lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": True}
    assert make_optimizer("sgd", momentum=0.9, nesterov=True).hyper() == {
        "lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": True}


# --- the German seed page's training ---------------------------------------------------------

def test_german_page_training_gives_torchs_weights_and_loss_history():
    x = np.array(GERMAN["x"], dtype=np.float32)
    y = np.array(GERMAN["y"], dtype=np.float32)
    data = {"x": x, "y": y}
    # the recorded data is the stated seed's: the recording's generator, replayed in numpy
    np.random.seed(GERMAN["numpy_seed"])
    np.testing.assert_array_equal(np.random.rand(200).astype(np.float32), x)
    plan = plan_batches(data, GERMAN["batch_size"])
    optimizer = make_optimizer("adam", lr=GERMAN["optimizer"]["lr"])
    assert {"name": "adam", **optimizer.hyper()} == GERMAN["optimizer"]
    params = {"w": np.zeros(2, dtype=np.float32), "b": np.float32(0)}
    losses = []
    for epoch, recorded in enumerate(GERMAN["history"], 1):
        for batch in plan.epoch(epoch):
            loss, grads = mse_grads("german", plan.take(data, batch), params)
            losses.append(loss)
            optimizer.step({"w": params["w"]}, {"w": grads["w"]})
        np.testing.assert_allclose(params["w"], recorded["w"], rtol=1e-5, atol=1e-6)
    assert len(losses) == 400
    np.testing.assert_allclose(losses, GERMAN["batch_losses"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(params["w"], GERMAN["w"], rtol=1e-5)
    np.testing.assert_allclose(params["w"], [1.2, -3.4], rtol=1e-5)


# --- batches -------------------------------------------------------------------------------

def test_batches_are_consecutive_with_a_short_last_one_and_other_leaves_whole():
    data = {"x": np.arange(23.0), "y": np.arange(46.0).reshape(23, 2), "k": np.ones(3),
            "s": np.float64(2)}
    plan = plan_batches(data, 5)
    assert (plan.rows, plan.batched, plan.batches_per_epoch) == (23, ("x", "y"), 5)
    batches = list(plan.epoch(1))
    assert [b.rows for b in batches] == [5, 5, 5, 5, 3]
    assert [b.number for b in batches] == [1, 2, 3, 4, 5]
    last = plan.take(data, batches[-1])
    np.testing.assert_array_equal(last["x"], [20.0, 21.0, 22.0])
    np.testing.assert_array_equal(last["y"], [[40, 41], [42, 43], [44, 45]])
    assert last["k"] is data["k"] and last["s"] is data["s"]
    assert np.shares_memory(plan.take(data, batches[0])["x"], data["x"])   # a view


def test_default_batch_is_everything_and_an_oversized_batch_is_one():
    data = {"x": np.arange(7.0)}
    for size in (None, 7, 100):
        (only,) = plan_batches(data, size).epoch(1)
        assert only.rows == 7
    (whole,) = plan_batches({"a": np.float64(1)}, 4).epoch(1)
    assert plan_batches({"a": np.float64(1)}).batched == () and whole.rows == 1


def test_the_most_common_first_length_is_batched():
    plan = plan_batches({"a": np.zeros(4), "b": np.zeros((6, 2)), "c": np.zeros(6)}, 2)
    assert (plan.rows, plan.batched) == (6, ("b", "c"))
    assert plan_batches({"a": np.zeros(4), "b": np.zeros(6)}).rows == 6   # tie: the longer


def test_shuffle_is_a_permutation_per_epoch_fixed_by_the_seed():
    data = {"x": np.arange(10.0)}
    plan = plan_batches(data, 4, shuffle=True, seed=7)
    orders = {e: np.concatenate([plan.take(data, b)["x"] for b in plan.epoch(e)])
              for e in (1, 2)}
    for order in orders.values():
        np.testing.assert_array_equal(np.sort(order), data["x"])
    assert not np.array_equal(orders[1], orders[2])
    again = plan_batches(data, 4, shuffle=True, seed=7)
    np.testing.assert_array_equal(
        np.concatenate([again.take(data, b)["x"] for b in again.epoch(2)]), orders[2])
    other = plan_batches(data, 4, shuffle=True, seed=8)
    assert not np.array_equal(
        np.concatenate([other.take(data, b)["x"] for b in other.epoch(1)]), orders[1])


@pytest.mark.parametrize("size,seed,option", [(0, 0, "--batch-size"), (-3, 0, "--batch-size"),
                                              (2, -1, "--seed")])
def test_bad_batch_options_are_usage_errors(size, seed, option):
    with pytest.raises(GradcalcError, match=option) as err:
        plan_batches({"x": np.zeros(3)}, size, shuffle=True, seed=seed)
    assert err.value.kind == "usage"


# --- Levenberg–Marquardt ---------------------------------------------------------------------

def exp_decay(t, p):
    e = np.exp(-p[1] * t)
    return p[0] * e + p[2], np.stack([e, -p[0] * t * e, np.ones_like(t)], axis=1)


def quadratic(t, p):
    return p[0] + p[1] * t + p[2] * t**2, np.stack([np.ones_like(t), t, t**2], axis=1)


def two_points(t, p):
    e = np.exp(-p[1] * t)
    return p[0] * e, np.stack([e, -p[0] * t * e], axis=1)


MODELS = {"decay": exp_decay, "quadratic": quadratic, "two_points": two_points}


def fit(problem: dict, **options):
    t, y, model = np.array(problem["t"]), np.array(problem["y"]), MODELS[problem["name"]]
    return levenberg_marquardt(lambda p: model(t, p)[0] - y, lambda p: model(t, p)[1],
                               np.array(problem["p0"]), LMOptions(**options))


@pytest.mark.parametrize("problem", LM["problems"], ids=[p["name"] for p in LM["problems"]])
def test_lm_agrees_with_curve_fit(problem):
    got, exact = fit(problem), problem["exact"]
    assert got.stopped == "tol"
    np.testing.assert_allclose(got.params, exact["popt"], rtol=1e-8)
    np.testing.assert_allclose(got.ssr, exact["ssr"], rtol=1e-8, atol=1e-20)
    np.testing.assert_allclose(got.covariance, decoded(exact["pcov"]), rtol=1e-8)
    np.testing.assert_allclose(got.stderr, decoded(exact["stderr"]), rtol=1e-8)
    np.testing.assert_allclose(got.correlation, decoded(exact["correlation"]), rtol=1e-8,
                               atol=1e-10)
    # curve_fit's defaults (finite differences, looser stops) land within their own slack
    default = problem["default"]
    np.testing.assert_allclose(got.params, default["popt"], rtol=1e-6)
    np.testing.assert_allclose(got.stderr, decoded(default["stderr"]), rtol=1e-4)


def test_lm_takes_every_result_written_into_the_same_array():
    """lm reads each residual vector and Jacobian before it calls for the next, so a caller
    may write them all into one array each (gradcalc's fit does: fresh 10^5-row arrays cost
    their page faults at every iteration); the fit is the one fresh arrays give, bit for
    bit. Column-major, as gradcalc's: the covariance factorises the last one in place."""
    for problem in LM["problems"]:
        t, y, model = np.array(problem["t"]), np.array(problem["y"]), MODELS[problem["name"]]
        res, jac = np.empty(t.size), np.empty((len(problem["p0"]), t.size)).T

        def into_res(p):
            res[...] = model(t, p)[0] - y
            return res

        def into_jac(p):
            jac[...] = model(t, p)[1]
            return jac
        got = levenberg_marquardt(into_res, into_jac, np.array(problem["p0"]))
        want = levenberg_marquardt(lambda p: model(t, p)[0] - y,
                                   lambda p: np.asfortranarray(model(t, p)[1]),
                                   np.array(problem["p0"]))
        assert (got.iterations, got.evaluations, got.reason) == (want.iterations,
                                                                 want.evaluations, want.reason)
        for field in ("params", "ssr", "covariance", "stderr", "correlation"):
            assert np.array_equal(getattr(got, field), getattr(want, field), equal_nan=True)


def test_lm_takes_the_same_fit_with_either_gram_product(monkeypatch):
    """J^T J by dot products of column pairs (a tall J of a few columns) or by syrk (jac.T @
    jac) round differently in the last bits only: the same matrix to 1e-13, the same fits
    to 1e-12, whichever way every Jacobian goes."""
    from gradcalc.fit import lm
    fits = []
    for dots in (True, False):
        monkeypatch.setattr(lm, "GRAM_DOTS_ROWS", 0 if dots else 1 << 62)
        for rows, cols in [(10, 4), (100_000, 3)]:
            jac = np.asfortranarray(np.random.default_rng(rows).standard_normal((rows, cols)))
            np.testing.assert_allclose(lm._gram(jac), jac.T @ jac, rtol=1e-13, atol=1e-12)
        fits.append([fit(problem) for problem in LM["problems"]])
    for by_dots, by_syrk in zip(*fits):
        assert by_dots.iterations == by_syrk.iterations
        np.testing.assert_allclose(by_dots.params, by_syrk.params, rtol=1e-12)
        np.testing.assert_allclose(by_dots.stderr, by_syrk.stderr, rtol=1e-12)


@pytest.mark.parametrize("rows,cols,order", [(100_000, 3, "F"), (50, 3, "C"), (7, 3, "F"),
                                             (1000, 40, "F"), (300, 120, "C")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_r_factor_is_numpys_qr_bit_for_bit(rows, cols, order, dtype):
    """The covariance's R, from LAPACK's dgeqrf in J's own memory (in a float64
    column-major copy of any other J), against numpy's qr (the same dgeqrf on its own
    copies), with 40 and 120 columns for its blocked algorithm."""
    rng = np.random.default_rng(rows + cols)
    jac = np.asarray(rng.standard_normal((rows, cols)) * np.exp(3 * rng.standard_normal(cols)),
                     dtype=dtype, order=order)
    want = np.linalg.qr(jac.astype(np.float64), mode="r")     # lm's Jacobian is float64
    got = r_factor(jac)
    assert got.dtype == np.float64 and got.shape == (cols, cols)
    assert got.tobytes() == want.tobytes()


def test_lm_with_as_many_points_as_parameters_has_infinite_errors():
    got = fit(next(p for p in LM["problems"] if p["name"] == "two_points"))
    np.testing.assert_allclose(got.params, [2.0, np.log(2.5)], rtol=1e-12)
    assert np.all(np.isinf(got.stderr)) and np.all(np.isnan(got.correlation))


def test_lm_solves_rosenbrock_from_the_classic_start():
    def residuals(p):
        return np.array([10 * (p[1] - p[0] ** 2), 1 - p[0]])

    def jacobian(p):
        return np.array([[-20 * p[0], 10.0], [-1.0, 0.0]])

    seen = []
    got = levenberg_marquardt(residuals, jacobian, np.array([-1.2, 1.0]),
                              on_iteration=seen.append)
    np.testing.assert_allclose(got.params, [1.0, 1.0], rtol=1e-12)
    assert got.stopped == "tol" and got.iterations == len(seen) > 5
    assert all(a.ssr > b.ssr for a, b in zip(seen, seen[1:]))
    assert [s.iteration for s in seen] == list(range(1, len(seen) + 1))


def test_lm_refuses_steps_into_nonfinite_residuals():
    # Gauss-Newton from 100 jumps to about -220, where log is NaN; LM must back off
    with np.errstate(invalid="ignore"):
        got = levenberg_marquardt(lambda p: np.log(p) - np.log(4.0),
                                  lambda p: (1 / p).reshape(1, 1), np.array([100.0]))
    np.testing.assert_allclose(got.params, [4.0], rtol=1e-12)
    assert got.evaluations > got.iterations + 1


def test_lm_stops_at_the_iteration_limit_and_on_a_nonfinite_start():
    problem = LM["problems"][0]
    got = fit(problem, iterations=2)
    assert (got.stopped, got.iterations) == ("epochs", 2)
    assert got.ssr < np.sum(np.square(np.array(problem["y"])))
    bad = levenberg_marquardt(lambda p: np.array([np.nan, 1.0]),
                              lambda p: np.ones((2, 1)), np.array([0.0]))
    assert bad.stopped == "nonfinite" and bad.iterations == 0


def test_lm_at_an_exact_fit_stops_with_zero_errors_and_undefined_correlation():
    got = levenberg_marquardt(lambda p: np.array([p[0] - 3, 2 * (p[0] - 3)]),
                              lambda p: np.array([[1.0], [2.0]]), np.array([3.0]))
    assert (got.ssr, got.iterations, got.reason) == (0.0, 0, "gradient is zero")
    # pcov = inv(J^T J) * 0 / (2 - 1): zero errors, and a correlation of 0/0
    assert got.stderr.tolist() == [0.0] and np.isnan(got.correlation).all()
    near = levenberg_marquardt(lambda p: np.array([p[0] - 3, 2 * (p[0] - 3)]),
                               lambda p: np.array([[1.0], [2.0]]), np.array([0.0]))
    np.testing.assert_allclose(near.params, [3.0], rtol=1e-14)


@pytest.mark.parametrize("options,option", [({"iterations": 0}, "--epochs"),
                                            ({"tol": -1.0}, "--tol")])
def test_lm_bad_options_are_usage_errors(options, option):
    with pytest.raises(GradcalcError, match=option):
        LMOptions(**options)


def test_layout_packs_in_params_order_and_restores_shapes():
    params = {"w": np.arange(6.0).reshape(2, 3), "b": np.float64(7), "c": np.array([8.0])}
    layout = Layout.of(params)
    np.testing.assert_array_equal(layout.pack(params), [0, 1, 2, 3, 4, 5, 7, 8])
    back = layout.unpack(layout.pack(params))
    assert list(back) == ["w", "b", "c"] and back["b"].shape == () and back["w"].shape == (2, 3)
    np.testing.assert_array_equal(back["w"], params["w"])
