"""A plain reference of the candidate centres (section 2 of the algorithm doc), for tests/test_centres.py.

Written straight from the text, sharing no code with ``wfn_core``: the additive-powers-of-two
approximation of one value, and the candidate set ``C_k`` built from the geometric ladder.
"""

from __future__ import annotations

import math


def reference_apot(g: float, order: int, delta: float, zero_threshold: float) -> float:
    """Order-``order`` additive-powers-of-two approximation of one value (section 2, step 3)."""
    if g == 0:
        return 0.0
    d = min(delta, 0.9999)
    e_min = round(math.log2(zero_threshold)) - order - 1

    def nearest_power(x: float) -> float:  # signed power of two nearest to x in the log domain
        return math.copysign(2.0 ** max(e_min, round(math.log2(abs(x)))), x)

    approx = nearest_power(g)
    for _ in range(order):
        r = g - approx
        if abs(r) >= d * abs(g):
            approx += nearest_power(r)
        else:
            break
    return approx


def reference_candidates(max_abs: float, delta: float, order: int, zero_threshold: float) -> list[float]:
    """C_k: 0 and ± the approximations of every ladder rung g_i < max_abs, sorted, deduplicated."""
    d = min(delta, 0.9999)
    ratio = (1 + d) / (1 - d)
    rungs = []
    g = zero_threshold
    while g < max_abs:
        rungs.append(g)
        g = g * ratio
    values = {0.0}
    for g in rungs:
        a = reference_apot(g, order, delta, zero_threshold)
        values.update({a, -a})
    return sorted(values)
