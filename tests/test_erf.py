"""erf is vectorised numpy (Cody's rational approximations), not a per-element Python call:
it must agree with the C library's erf (math.erf) to a couple of ulps everywhere, keep the
sign of zero, saturate at +-inf, propagate NaN, and keep float32 as float32."""
import math

import numpy as np

from gradcalc.ops.elementwise import erf


def test_erf_matches_libm_across_all_three_intervals():
    # both sides of the interval breaks 0.46875 and 4, the tail where erf rounds to 1
    x = np.concatenate([np.linspace(-30, 30, 60001), np.linspace(-5, 5, 20001),
                        [0.46875, -0.46875, 4.0, -4.0, 1e-300, -1e-20, 5.9, 26.5]])
    ref = np.array([math.erf(v) for v in x])
    got = erf(x)
    assert np.all(np.abs(got - ref) <= 4 * np.spacing(np.abs(ref)) + 1e-300)


def test_erf_special_values():
    got = erf(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]))
    assert got[0] == 0 and not np.signbit(got[0]) and np.signbit(got[1])
    assert got[2] == 1.0 and got[3] == -1.0 and np.isnan(got[4])
    assert erf(np.asarray(0.5)).shape == () and float(erf(np.asarray(0.5))) == math.erf(0.5)


def test_erf_keeps_float32():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    got = erf(x)
    assert got.dtype == np.float32
    assert np.allclose(got, [math.erf(float(v)) for v in x], rtol=1e-6, atol=1e-7)
