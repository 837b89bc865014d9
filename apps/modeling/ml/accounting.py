"""Privacy accounting of every release Sotto makes: Gaussian mechanisms and DP-SGD steps.

The one home of the DP maths (nothing else in the code base computes an ε or calibrates a σ).
Every mechanism here is a (sub)sampled Gaussian with L2 sensitivity 1 under add/remove-one-user
adjacency, so each guarantee below is user-level (ε, δ)-DP.

Plain Gaussian releases (DP popularity, the item-item Gram of the "factors" design) use the
analytic Gaussian mechanism (Balle & Wang 2018, Theorem 8): a Gaussian of noise σ is (ε, δ)-DP iff
``δ >= gaussian_delta(σ, ε)``. :func:`gaussian_sigma` (σ for a target (ε, δ)) and
:func:`gaussian_epsilon` (ε of a σ at δ) find the root of that curve with Google's
``dp_accounting`` (``get_sigma_gaussian`` / ``get_epsilon_gaussian``, the same theorem, computed
in log space with Brent's method to 1e-12). A root finder may land on either side of the root, so
each result is then moved up, in steps of about 1e-12 relative, until :func:`gaussian_delta`
confirms it: a σ never gives less privacy than asked and an ε never understates what a σ
costs. The charged figures therefore stay conservative: the ε a tenant is charged is the ε it asked
for, σ is calibrated to it, and the ε recorded as spent is checked against the charge. They differ
from the bisection the product used before ``dp_accounting`` by less than 1e-9 relative, in either
direction, both sides being on the safe side of the curve (measured: at most 6e-12 for σ and
1.1e-10 for ε; ``tests/modeling/ml/test_accounting.py`` keeps that bisection as an independent
cross-check on a grid of σ, ε and δ).

Several Gaussians compose exactly as Gaussian DP (Dong, Roth & Su 2019): a sensitivity-1
Gaussian of noise σ is (1/σ)-GDP and k of them are μ-GDP with μ² = Σ 1/σ_k², whose (ε, δ) curve
is that of one Gaussian of noise 1/μ (:func:`split_gaussian_sigmas`, :func:`factor_release_plan`).

DP-SGD is ``steps`` compositions of the Poisson-subsampled Gaussian with rate ``q``; a release is
then a *history* ``[(noise_multiplier, sample_rate, steps), ...]`` as Opacus accountants keep it (a
plain Gaussian is rate 1, one step), and its ε at δ is the Opacus accountant's composition over
the whole history (RDP: Mironov 2017 and Mironov, Talwar & Zhang 2019; PRV: Gopi, Lee & Wutschitz
2021 as a tighter cross-check). Opacus stays the accountant of the runs it trains (the noise it
adds is the one it accounts); the test also checks its RDP figure against ``dp_accounting``'s PLD
accountant for the same history. :func:`calibrate_sgd_noise` finds the smallest DP-SGD noise
multiplier for which the whole history (fixed releases first, then DP-SGD) stays within a target
(ε, δ), so the charged ε bounds what is released whatever the split.

Heavy imports (scipy, dp_accounting, opacus) happen inside the functions: the web process imports
this module (through ``ml.designs``) to write a run's plan into the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = [
    "GDP_ACCOUNTANT",
    "History",
    "calibrate_sgd_noise",
    "dp_schedule",
    "factor_release_plan",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_sigma",
    "history_epsilon",
    "other_accountant",
    "split_gaussian_sigmas",
]

History = list[tuple[float, float, int]]  # (noise multiplier, sample rate, steps), as Opacus keeps it

GDP_ACCOUNTANT = "GDP (analytic Gaussian, exact composition)"

# dp_accounting's root finders stop within this (absolute) of the root; results are then settled on
# the safe side of the curve in steps of this size relative to the value
ROOT_TOLERANCE = 1e-12


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The smallest δ for which a Gaussian of noise ``sigma`` is (ε, δ)-DP (Balle & Wang 2018, Thm 8).

    >>> round(gaussian_delta(1.0, 1.0), 4)
    0.1269
    """
    from scipy.special import ndtr

    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(epsilon) * ndtr(-a - b))


def _settle_up(value: float, ok: Callable[[float], bool]) -> float:
    """``value``, or the first value above it (steps of ``ROOT_TOLERANCE`` relative, doubling) that ``ok`` accepts."""
    step = ROOT_TOLERANCE * max(1.0, abs(value))
    for _ in range(64):
        if ok(value):
            return value
        value += step
        step *= 2.0
    raise ArithmeticError(f"no value near {value!r} satisfies the privacy curve")


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest noise σ that makes the Gaussian mechanism of this L2 ``sensitivity`` (ε, δ)-DP.

    ``dp_accounting.get_sigma_gaussian``, settled upwards until :func:`gaussian_delta` <= δ.

    >>> s = gaussian_sigma(1.0, 1e-5)
    >>> 3.7 < s < 3.8, gaussian_delta(s, 1.0) <= 1e-5
    (True, True)
    """
    if not epsilon > 0 or not 0 < delta < 1:
        raise ValueError("need epsilon > 0 and 0 < delta < 1")
    from dp_accounting import get_sigma_gaussian

    sigma = sensitivity * float(get_sigma_gaussian(epsilon, delta, tol=ROOT_TOLERANCE))
    return _settle_up(sigma, lambda s: gaussian_delta(s, epsilon, sensitivity) <= delta)


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Smallest ε for which a sensitivity-1 Gaussian of noise ``sigma`` is (ε, δ)-DP (0.0 when it is
    (0, δ)-DP already). ``dp_accounting.get_epsilon_gaussian``, settled upwards until
    :func:`gaussian_delta` <= δ, so the result never understates the cost.

    >>> round(gaussian_epsilon(gaussian_sigma(2.0, 1e-6), 1e-6), 9)
    2.0
    """
    if not sigma > 0 or not 0 < delta < 1:
        raise ValueError("need sigma > 0 and 0 < delta < 1")
    from dp_accounting import get_epsilon_gaussian

    eps = float(get_epsilon_gaussian(sigma, delta, tol=ROOT_TOLERANCE))
    if eps == 0.0:
        return 0.0
    return _settle_up(eps, lambda e: gaussian_delta(sigma, e) <= delta)


def split_gaussian_sigmas(epsilon: float, delta: float, shares: Sequence[float]) -> list[float]:
    """Noise σ of each sensitivity-1 Gaussian release so that all together are (ε, δ)-DP.

    ``shares`` (summing to 1) split μ² = 1/σ_total²: ``σ_k = σ_total / sqrt(share_k)``, σ_total the
    :func:`gaussian_sigma` of (ε, δ).

    >>> s = split_gaussian_sigmas(1.0, 1e-3, [0.5, 0.5])
    >>> t = gaussian_sigma(1.0, 1e-3)
    >>> round(sum(1 / x ** 2 for x in s) * t ** 2, 9)
    1.0
    """
    if not shares or any(s <= 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-9:
        raise ValueError("shares must be positive and sum to 1")
    total = gaussian_sigma(epsilon, delta, 1.0)
    return [total / math.sqrt(s) for s in shares]


def factor_release_plan(factor_share: float, epsilon: float, delta: float) -> dict[str, float]:
    """Noise of the two Gaussian releases of the "factors" design for a total (ε, δ).

    Both have L2 sensitivity 1, so release k is (1/σ_k)-GDP and together they are μ-GDP with
    μ² = 1/σ_pop² + 1/σ_gram² (exact, also adaptive); σ_total = 1/μ is the analytic-Gaussian σ
    for (ε, δ), split as 1/σ_k² = share_k/σ_total² (:func:`split_gaussian_sigmas`), the Gram
    getting ``factor_share``.
    """
    share = float(factor_share)
    sigma_pop, sigma_gram = split_gaussian_sigmas(epsilon, delta, [1.0 - share, share])
    sigma_total = gaussian_sigma(epsilon, delta, 1.0)
    return {
        "sigma_pop": sigma_pop,
        "sigma_gram": sigma_gram,
        "sigma_total": sigma_total,
        "mu_total": 1.0 / sigma_total,
        "mu_pop": 1.0 / sigma_pop,
        "mu_gram": 1.0 / sigma_gram,
        "mu2_share_pop": 1.0 - share,
        "mu2_share_gram": share,
    }


def dp_schedule(n_users: int, expected_batch: int, epochs: int) -> tuple[int, float, int]:
    """(batch, Poisson sample rate, steps) of a DP-SGD run: the rate Opacus' DPDataLoader uses for a
    loader of ``batch`` (1/⌈N/batch⌉) and its ⌈N/batch⌉ steps per epoch; the batch is at most half
    the users.

    >>> dp_schedule(100_000, 2048, 10)
    (2048, 0.02040816326530612, 490)
    """
    batch = max(1, min(int(expected_batch), n_users // 2 or 1))
    rate = 1.0 / math.ceil(n_users / batch)
    return batch, rate, epochs * int(1 / rate)  # int(1/q): the sampler's own steps per epoch


def other_accountant(accountant: str) -> str:
    """The Opacus accountant a release is cross-checked with: PRV for RDP and RDP otherwise."""
    return "prv" if accountant == "rdp" else "rdp"


def history_epsilon(
    history: Sequence[tuple[float, float, int]], delta: float, accountant: str = "rdp"
) -> float:
    """ε at ``delta`` of every mechanism in ``history`` composed (Opacus ``rdp`` or ``prv``).

    >>> round(history_epsilon([(1.0, 1.0, 1)], 1e-5), 2)  # one Gaussian, sigma = 1 (RDP bound)
    4.73
    """
    from opacus.accountants import PRVAccountant, RDPAccountant

    if not history:
        return 0.0
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(acc.get_epsilon(delta))


def calibrate_sgd_noise(
    *,
    epsilon: float,
    delta: float,
    fixed: Sequence[tuple[float, float, int]],
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
    tolerance: float = 0.005,
) -> float:
    """Smallest DP-SGD noise multiplier σ with ``history_epsilon(fixed + [(σ, q, steps)]) <= epsilon``.

    Bisection on σ; the returned σ always satisfies the bound (it is the upper end of the bracket).
    Raises ``ValueError`` when the fixed releases alone already spend ``epsilon``.

    >>> s = calibrate_sgd_noise(epsilon=4.0, delta=1e-5, fixed=[(3.0, 1.0, 1)], sample_rate=0.01, steps=500)
    >>> history_epsilon([(3.0, 1.0, 1), (s, 0.01, 500)], 1e-5) <= 4.0
    True
    """
    if not (epsilon > 0 and math.isfinite(epsilon)) or not (0 < delta < 1):
        raise ValueError("need 0 < epsilon < inf and 0 < delta < 1")
    if steps < 1 or not (0 < sample_rate <= 1):
        raise ValueError("DP-SGD needs steps >= 1 and 0 < sample_rate <= 1")
    base = list(fixed)
    if base and history_epsilon(base, delta, accountant) >= epsilon:
        raise ValueError(f"the fixed releases alone spend more than ε={epsilon:g}")

    def eps(sigma: float) -> float:
        return history_epsilon([*base, (sigma, sample_rate, steps)], delta, accountant)

    lo, hi = 0.0, 1.0
    while eps(hi) > epsilon:
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise ValueError("no noise multiplier reaches the target ε")
    while hi - lo > tolerance * hi:
        mid = (lo + hi) / 2
        if eps(mid) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi
