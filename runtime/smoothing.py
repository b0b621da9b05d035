"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012) for landmark jitter: strong smoothing
when points are still, little lag when they move fast."""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(dt: float, cutoff: float) -> float:
    """alpha of an exponential filter with the given cutoff (Hz) at sampling period dt (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Element-wise One Euro filter over arrays of any fixed shape (e.g. [68, 2] points).

    min_cutoff (Hz): smoothing at rest (lower = smoother); beta: how fast the cutoff rises with
    speed (higher = less lag); d_cutoff (Hz): smoothing of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self):
        self._x = self._dx = self._t = None

    def __call__(self, x, t: float) -> np.ndarray:
        """The filtered x at time t (s). The state is never poisoned: a non-finite x or t is
        passed through untouched, and a time that goes backwards (a looped video, a reset clock)
        restarts the filter from this sample."""
        x = np.asarray(x, np.float64)
        t = float(t)
        if not (math.isfinite(t) and np.isfinite(x).all()):
            return x.copy()
        if self._x is None or self._x.shape != x.shape or t < self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt == 0:  # repeated timestamp: nothing new to filter
            return self._x.copy()
        a_d = smoothing_factor(dt, self.d_cutoff)
        dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(dx)
        a = 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))
        self._x = a * x + (1 - a) * self._x
        self._dx, self._t = dx, float(t)
        return self._x.copy()
