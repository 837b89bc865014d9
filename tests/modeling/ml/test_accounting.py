"""The DP maths of ``ml.accounting`` against independent implementations (no Django).

* The analytic Gaussian (σ of (ε, δ), ε of (σ, δ)): ``accounting`` finds the roots with Google's
  ``dp_accounting``; the bisections below are the product's own code from before (kept verbatim as
  the cross-check). Both must agree within ``REL_TOL`` on a grid, and ``accounting``'s figures must
  sit on the safe side of the curve (a σ never too small, an ε never too small).
* DP-SGD composition: the figure the product charges (Opacus' RDP accountant) is checked against
  ``dp_accounting``'s PLD accountant (tight) and its RDP accountant (the same bound, another code).
"""

from __future__ import annotations

import doctest
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from apps.modeling.ml import accounting

REL_TOL = 1e-9  # dp_accounting's roots vs the former bisections, relative
EPSILONS = (0.01, 0.1, 0.4, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 3.7, 10.0, 50.0, 200.0)
DELTAS = (1e-2, 1 / 610, 1e-4, 1e-5, 1e-6, 1e-8, 1e-10)


# --- the former implementation (apps/modeling/ml/popularity.py and services.py before dp_accounting) ---


def _reference_delta(sigma: float, eps: float, sens: float = 1.0) -> float:
    a = sens / (2 * sigma)
    b = eps * sigma / sens
    return float(norm.cdf(a - b) - math.exp(eps) * norm.cdf(-a - b))


def _reference_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    lo, hi = 1e-6, 1.0
    while _reference_delta(hi, epsilon, sensitivity) > delta:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _reference_delta(mid, epsilon, sensitivity) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def _reference_epsilon(sigma: float, delta: float) -> float:
    lo, hi = 0.0, 1.0
    while _reference_delta(sigma, hi) > delta:
        hi *= 2.0
    if _reference_delta(sigma, lo) <= delta:
        return 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _reference_delta(sigma, mid) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi


# --- the analytic Gaussian ---------------------------------------------------------------------------


def test_the_privacy_curve_is_the_former_one() -> None:
    for sigma, eps in itertools.product(SIGMAS, EPSILONS):
        assert accounting.gaussian_delta(sigma, eps) == pytest.approx(
            _reference_delta(sigma, eps), rel=1e-12, abs=1e-300
        )
    assert accounting.gaussian_delta(2.0, 1.0, sensitivity=2.0) == pytest.approx(
        _reference_delta(2.0, 1.0, 2.0)
    )


@pytest.mark.parametrize("delta", DELTAS)
def test_sigma_agrees_with_the_former_bisection_and_never_gives_less_privacy(delta: float) -> None:
    for eps in EPSILONS:
        sigma = accounting.gaussian_sigma(eps, delta)
        assert sigma == pytest.approx(_reference_sigma(eps, delta), rel=REL_TOL)
        assert accounting.gaussian_delta(sigma, eps) <= delta
    assert accounting.gaussian_sigma(1.0, delta, sensitivity=3.0) == pytest.approx(
        _reference_sigma(1.0, delta, 3.0), rel=REL_TOL
    )


@pytest.mark.parametrize("delta", DELTAS)
def test_epsilon_agrees_with_the_former_bisection_and_never_understates_the_cost(delta: float) -> None:
    for sigma in SIGMAS:
        eps = accounting.gaussian_epsilon(sigma, delta)
        reference = _reference_epsilon(sigma, delta)
        assert eps == pytest.approx(reference, rel=REL_TOL, abs=1e-12)
        assert accounting.gaussian_delta(sigma, eps) <= delta


def test_a_release_calibrated_for_epsilon_costs_at_most_epsilon() -> None:
    # what training checks before it releases: the composed ε of the planned σ never exceeds the charge
    for eps, delta in itertools.product((0.5, 2.0, 8.0), (1 / 40, 1 / 610, 1e-6)):
        plan = accounting.factor_release_plan(0.6, eps, delta)
        mu = math.sqrt(1 / plan["sigma_pop"] ** 2 + 1 / plan["sigma_gram"] ** 2)
        assert accounting.gaussian_epsilon(1 / mu, delta) <= eps + 1e-9
        assert plan["sigma_total"] == pytest.approx(_reference_sigma(eps, delta), rel=REL_TOL)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.05, 500.0), st.floats(1e-10, 0.05))
def test_epsilon_and_sigma_are_inverse_and_conservative(sigma: float, delta: float) -> None:
    eps = accounting.gaussian_epsilon(sigma, delta)
    assert accounting.gaussian_delta(sigma, eps) <= delta
    if eps > 1e-6:
        assert accounting.gaussian_sigma(eps, delta) == pytest.approx(sigma, rel=1e-7)


def test_it_refuses_what_is_not_a_privacy_parameter() -> None:
    for bad in ((0.0, 1e-5), (1.0, 0.0), (1.0, 1.0)):
        with pytest.raises(ValueError):
            accounting.gaussian_sigma(*bad)
    with pytest.raises(ValueError):
        accounting.gaussian_epsilon(0.0, 1e-5)


# --- DP-SGD composition: Opacus (charged) vs dp_accounting ---------------------------------------


def _dp_event(history: accounting.History) -> object:
    import dp_accounting

    return dp_accounting.ComposedDpEvent(
        [
            dp_accounting.GaussianDpEvent(s)
            if q == 1.0
            else dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(s)), n
            )
            for s, q, n in history
        ]
    )


# "tower" runs (TOWER_DEFAULTS: a fifth of ε to popularity, batch 2048, 10 epochs) at the DP-SGD noise
# calibrate_sgd_noise gives them at δ = 1e-5: (ε, users, DP-SGD noise multiplier)
TOWER_RUNS = [(1.0, 20_000, 4.40625), (4.0, 100_000, 0.91796875)]


@pytest.mark.parametrize(("epsilon", "n_users", "sigma"), TOWER_RUNS)
def test_the_charged_opacus_figure_is_never_below_google_accountants(
    epsilon: float, n_users: int, sigma: float
) -> None:
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
    from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

    delta = 1e-5
    _, q, steps = accounting.dp_schedule(n_users, 2048, 10)
    history = [(accounting.gaussian_sigma(0.2 * epsilon, delta), 1.0, 1), (sigma, q, steps)]
    charged = accounting.history_epsilon(history, delta)
    assert epsilon - 0.05 < charged <= epsilon
    pld = PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(_dp_event(history))
    tight = pld.get_epsilon(delta)  # pessimistic PLD: an upper bound, and close to the true ε
    assert 0.8 * charged < tight <= charged  # the RDP bound is loose by ~10%, not by another mechanism
    rdp = RdpAccountant()
    rdp.compose(_dp_event(history))
    assert rdp.get_epsilon(delta) == pytest.approx(
        charged, rel=5e-3
    )  # the same RDP bound, another implementation


def test_the_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(accounting)
    assert tried >= 8 and failures == 0
