"""Privacy accounting of a release made of Gaussian mechanisms and DP-SGD steps (Opacus accountants).

Every mechanism here is a (sub)sampled Gaussian with L2 sensitivity 1 under add/remove-one-user
adjacency: a plain Gaussian release (DP popularity) is the sampled Gaussian with sample rate 1 and
one step; DP-SGD is ``steps`` compositions of the Poisson-subsampled Gaussian with rate ``q``. A
release is a *history* ``[(noise_multiplier, sample_rate, steps), ...]`` as Opacus accountants keep
it, and its ε at δ is the accountant's composition over the whole history (RDP: Mironov 2017 and
Mironov, Talwar & Zhang 2019, as implemented in ``opacus.accountants.RDPAccountant``; PRV: Gopi,
Lee & Wutschitz 2021 as a tighter cross-check).

:func:`calibrate_sgd_noise` finds the smallest DP-SGD noise multiplier for which the whole history
(fixed releases first, then DP-SGD) stays within a target (ε, δ), so the charged ε bounds what is
released whatever the split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["History", "calibrate_sgd_noise", "history_epsilon"]

History = list[tuple[float, float, int]]  # (noise multiplier, sample rate, steps), as Opacus keeps it


def history_epsilon(history: Sequence[tuple[float, float, int]], delta: float, accountant: str = "rdp") -> float:
    """ε at ``delta`` of every mechanism in ``history`` composed (Opacus ``rdp`` or ``prv``).

    >>> round(history_epsilon([(1.0, 1.0, 1)], 1e-5), 2)  # one Gaussian, sigma = 1 (RDP bound)
    5.3
    """
    from opacus.accountants import PRVAccountant, RDPAccountant

    if not history:
        return 0.0
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return float(acc.get_epsilon(delta))


def calibrate_sgd_noise(
    *, epsilon: float, delta: float, fixed: Sequence[tuple[float, float, int]], sample_rate: float, steps: int,
    accountant: str = "rdp", tolerance: float = 0.005,
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
