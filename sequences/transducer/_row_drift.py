"""The efficiency map's power dependence (s, c): its error with a drift between the rows
(one row per pump power, in acquisition order).

The map runs its powers upwards, one row after another, so a slow drift of the converted
light (the pump's delivery into the fridge, the optical line against the pump, the
photorefractive build-up, a meter range changing between rows) is a smooth function of the
pump power too. Far below C = 1 the bend that c measures is a few per cent over the whole map,
and a drift of that size over the same rows looks exactly like it: the joint fit's point
errors (meter noise, excess scatter, the within-row correlation) say nothing about it and give
c an error several times too small. Here each row's height is taken against the joint fit's
line shape, and the covariance of the joint fit's (s, c) is recomputed from the heights'
scatter, read two ways: as a random walk from row to row, and as each row's own error (the
laser sets each power within its stability). Each one's variance comes from the heights
(restricted maximum likelihood, so that the two fitted parameters do not eat it); eight rows
cannot tell the two apart, and mistaking a walk for row errors understates c's error, so the
larger covariance is stated. With neither the joint fit's stands. Derivation:
docs/transducer.md#drift-between-the-rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

MIN_ROWS = 5
"""Rows needed to tell a row-to-row variance from the two fitted parameters (3 degrees of
freedom)."""


LIKELIHOOD_RATIO = 1.64
"""Twice the log-likelihood gain a row variance needs over none: the 10 % level of a
variance tested at its boundary (half chi^2 with one degree of freedom, half zero). With no
threshold about half of the maps with no drift find one by chance and, read as a walk, give c
an error up to several times too large (chi^2 of 40 seeded pulls 13.9); at the 5 % level a
real walk too often goes unseen (chi^2 79, above its 99.8 % bound); at 10 %: 20.7 and 51
(tests/test_efficiency_row_drift.py)."""


@dataclass(frozen=True)
class RowDrift:
    """The covariance of (s, c) from the rows' heights, and what it was read as."""

    covariance: np.ndarray
    """Over (s, c), 1/W^2."""
    step_rms: float
    """Read as a walk: its relative step per row (0: not the larger reading)."""
    row_rms: float
    """Read as the rows' own errors: their relative rms (0: not the larger reading)."""


def row_heights(pump_power: np.ndarray, eta: np.ndarray, sigma: np.ndarray,
                shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pump power, relative height, its standard error) per row, rows in acquisition order
    (the first appearance of each power). `shape` is the joint model at each point: a row's
    relative height is its least-squares scale against it (1: on the model)."""
    p = np.asarray(pump_power, float)
    _, first, inverse = np.unique(p, return_index=True, return_inverse=True)
    w = (shape / sigma) ** 2
    num = np.bincount(inverse, weights=w * np.asarray(eta, float) / shape)
    den = np.bincount(inverse, weights=w)
    order = np.argsort(first)
    return p[first][order], (num / den)[order], (1 / np.sqrt(den))[order]


def row_drift_covariance(powers: np.ndarray, height: np.ndarray, height_err: np.ndarray,
                         low_power_slope: float, cooperativity_slope: float,
                         covariance: np.ndarray) -> RowDrift | None:
    """The covariance of (s, c) from the rows: the weighted least-squares estimate on the
    rows' relative heights (weights 1/err^2, the joint fit's own weighting) under
    V = diag(err^2) + v M, M the walk's (min(k, l) + 1) or the rows' own identity, v by
    restricted maximum likelihood for each; the sandwich (X'WX)^-1 X'W V W X (X'WX)^-1 of
    the reading with c's larger variance. None (the joint fit's `covariance` stands) with
    fewer than `MIN_ROWS` rows, or when neither reading gives c a larger variance than it."""
    k = powers.size
    if k < MIN_ROWS or not (low_power_slope > 0):
        return None
    s, c = low_power_slope, cooperativity_slope
    # heights relative to the model: d(rel)/ds = 1/s, d(rel)/dc = -2 P / (1 + c P)
    x = np.column_stack([np.full(k, 1 / s), -2 * powers / (1 + c * powers)])
    resid = height - 1.0
    idx = np.arange(k)
    readings = {"walk": np.minimum.outer(idx, idx) + 1.0, "rows": np.eye(k)}
    best: RowDrift | None = None
    var_c = float(covariance[1, 1])
    weight = 1 / height_err**2
    bread = np.linalg.inv(x.T @ (weight[:, None] * x))
    for name, shape in readings.items():
        v = _reml_variance(x, resid, height_err, shape)
        if v <= 0:
            continue
        full = np.diag(height_err**2) + v * shape
        meat = x.T @ (weight[:, None] * full * weight[None, :]) @ x
        sandwich = bread @ meat @ bread
        if sandwich[1, 1] > var_c:
            var_c = float(sandwich[1, 1])
            rms = math.sqrt(v)
            best = RowDrift(sandwich, rms if name == "walk" else 0.0,
                            rms if name == "rows" else 0.0)
    return best


def _reml_variance(x: np.ndarray, resid: np.ndarray, err: np.ndarray,
                   shape: np.ndarray) -> float:
    """The variance v of V = diag(err^2) + v `shape` that maximises the restricted
    likelihood of the residuals `resid` of a fit linear in `x` near its solution; 0 unless
    it is significantly more likely than none (`LIKELIHOOD_RATIO`)."""
    def neg_loglik(v: float) -> float:
        cov = np.diag(err**2) + v * shape
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return math.inf
        xw = np.linalg.solve(chol, x)
        rw = np.linalg.solve(chol, resid)
        info = xw.T @ xw
        sign, logdet = np.linalg.slogdet(info)
        if sign <= 0:
            return math.inf
        # generalised least squares residuals after the two parameters
        beta = np.linalg.solve(info, xw.T @ rw)
        r = rw - xw @ beta
        return float(np.sum(np.log(np.diag(chol))) + 0.5 * logdet + 0.5 * r @ r)

    floor = float(np.min(err)) ** 2 / 1e4

    def search(log_v: float) -> float:
        return neg_loglik(math.exp(log_v))

    found = minimize_scalar(search, bounds=(math.log(floor), 0.0), method="bounded")
    v = math.exp(float(found.x))
    return v if 2 * (neg_loglik(0.0) - neg_loglik(v)) > LIKELIHOOD_RATIO else 0.0
