"""The clustering call: the fast engine against ``cluster_reference``, invariants, hand examples."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wfn_core._fast_clustering as engine
from wfn_core import fixable_parameters, load_pretrained_digits
from wfn_core._validation import InvalidParameterError
from wfn_core.centres import ZERO_THRESHOLD, candidate_centres
from wfn_core.clustering import (
    DEFAULT_FRACTIONS,
    ClusterResult,
    cluster,
    cluster_reference,
    cluster_schedule,
    delta_schedule,
    relative_distance,
)
from wfn_core.fixable import flat_values

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies
SPECIAL = [0.0, -0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD, ZERO_THRESHOLD / 2, -ZERO_THRESHOLD / 2, 0.5, -0.5, 0.25,
           0.4375, -0.75, 1.0, 0.1875, 0.375, 0.001, -0.003, 0.3, 0.51, -0.22]
element = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(min_value=-1.0, max_value=1.0, width=32, allow_nan=False),
    st.floats(min_value=-0.03125, max_value=0.03125, width=32, allow_nan=False),
    st.floats(min_value=0.25, max_value=0.3125, width=32),  # one sign, crowded
)


@st.composite
def weight_vectors(draw, max_size=80):
    """Hand-picked values, ties and repeats, or a seeded heavy-tailed draw, as float32."""
    if draw(st.booleans()):
        values = draw(st.lists(element, min_size=1, max_size=max_size))
        if draw(st.booleans()) and len(values) > 1:  # repeat some values exactly
            values = values + draw(st.lists(st.sampled_from(values), max_size=max_size // 2))
        return torch.tensor(values, dtype=torch.float32)
    n = draw(st.integers(min_value=1, max_value=2 * max_size))
    gen = torch.Generator().manual_seed(draw(st.integers(min_value=0, max_value=2**31)))
    scale = draw(st.sampled_from([0.003, 0.02, 0.1, 1.0]))
    w = torch.randn(n, generator=gen) / torch.randn(n, generator=gen).abs().clamp_min(0.3) * scale
    if draw(st.booleans()):
        w = torch.round(w * 256) / 256  # many exact repeats and zeros
    if draw(st.booleans()):
        w = w.abs()  # all one sign
    return w.float()


fractions = st.one_of(st.sampled_from([1.0, 0.3, 0.6, 0.999, 0.5]), st.floats(min_value=0.01, max_value=1.0))
deltas = st.one_of(st.sampled_from([0.0075, 0.015, 0.075, 0.15, 0.4, 0.9]), st.floats(min_value=1e-3, max_value=0.99))


def bits(t: torch.Tensor) -> torch.Tensor:
    """Bit patterns, so that -0.0 and 0.0 differ."""
    return t.contiguous().view({torch.float64: torch.int64, torch.float32: torch.int32}.get(t.dtype, torch.int16))


def assert_same(fast: ClusterResult, ref: ClusterResult) -> None:
    assert torch.equal(bits(fast.values), bits(ref.values))
    assert torch.equal(fast.fixed, ref.fixed)
    assert torch.equal(bits(fast.centres), bits(ref.centres))
    assert fast.taken_by_order == ref.taken_by_order
    assert fast.moved == ref.moved
    assert fast.released == ref.released


def run_both(w, p, d, **kw):
    fast = cluster(w, p, d, **kw)
    assert_same(fast, cluster_reference(w, p, d, **kw))
    return fast


# ------------------------------------------------------------------ fast == cluster_reference
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight_vectors(), fractions, deltas)
def test_fast_matches_reference(w, p, d):
    run_both(w, p, d)


@SETTINGS
@given(weight_vectors(max_size=40), st.lists(fractions, min_size=2, max_size=4), deltas, st.booleans())
def test_fast_matches_reference_over_a_schedule(w, fracs, d, recluster):
    fixed = None
    for p, dt in zip(sorted(fracs), delta_schedule(d / 4, len(fracs))):
        result = run_both(w, p, dt, fixed=fixed, recluster_fixed=recluster)
        w, fixed = result.values, result.fixed


@SETTINGS
@given(weight_vectors(), fractions, deltas, st.booleans())
def test_fast_path_matches_reference_when_forced(w, p, d, recluster):
    """Tiny limits push small inputs through the prefix-sum bracket search."""
    first = cluster(w, 0.4, d)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in [("_EXACT_LIMIT", 0), ("_BRACKET_LIMIT", 2), ("_SAMPLES", 2), ("_MIN_WINDOW", 0)]:
            mp.setattr(engine, name, value)
        run_both(w, p, d)
        run_both(first.values, p, d / 2, fixed=first.fixed, recluster_fixed=recluster)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight_vectors(), fractions, deltas)
def test_general_path_matches_reference_when_forced(w, p, d):
    """float64 weights with every checked cost sequence declared non-monotone: the exact ordering path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "_is_monotone", lambda cost: False)
        run_both(w.double(), p, d)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes_match_reference(dtype):
    gen = torch.Generator().manual_seed(3)
    w = (torch.randn(300, generator=gen) * 0.05).to(dtype)
    first = run_both(w, 0.6, 0.05)
    assert first.values.dtype == dtype and first.centres.dtype == dtype
    run_both(first.values, 1.0, 0.02, fixed=first.fixed)


@pytest.mark.parametrize("seed", range(3))
def test_medium_vector_full_schedule_matches_reference(seed):
    """Large enough (3000) for the fast path's bracket search at the default limits."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.004, 0.02, 0.08])[torch.randint(0, 3, (3000,), generator=gen)]
    w = (torch.randn(3000, generator=gen) * scale).float()
    fixed = None
    for p, d in zip(DEFAULT_FRACTIONS, delta_schedule(0.0075 if seed % 2 else 0.015, 10)):
        result = run_both(w, p, d, fixed=fixed, recluster_fixed=seed != 2)
        w, fixed = result.values, result.fixed


def _assert_schedules_equal(w: torch.Tensor, delta: float, recluster: bool) -> None:
    """Every call of the default schedule (δ_t from delta_schedule), fast against the reference."""
    fast = cluster_schedule(w, delta, recluster_fixed=recluster)
    ref = cluster_schedule(w, delta, recluster_fixed=recluster, reference=True)
    assert len(fast) == len(ref) == len(DEFAULT_FRACTIONS)
    for f, r in zip(fast, ref):  # equal inputs at t, by induction: each call is compared on the same input
        assert_same(f, r)
    assert bool(fast[-1].fixed.all())


@pytest.mark.parametrize("recluster", [True, False])
def test_reference_equals_cluster_over_the_schedule_on_random_weights(recluster):
    gen = torch.Generator().manual_seed(11)
    scale = torch.tensor([0.002, 0.02, 0.1])[torch.randint(0, 3, (2000,), generator=gen)]
    w = (torch.randn(2000, generator=gen) / torch.randn(2000, generator=gen).abs().clamp_min(0.3) * scale).float()
    _assert_schedules_equal(w, 0.0075, recluster)


@pytest.mark.parametrize("recluster", [True, False])
def test_reference_equals_cluster_over_the_schedule_on_trained_weights(recluster):
    """The shipped digits model's fixable weights (trained, not drawn)."""
    w = flat_values(fixable_parameters(load_pretrained_digits())).detach()
    _assert_schedules_equal(w, 0.01, recluster)


def test_empty_pass_shortcut_is_exercised_and_exact(monkeypatch):
    """The shortcut that decides "this pass takes nothing" from the two nearest weights must be used
    (it is what keeps the many empty passes of the last iterations cheap) and must agree with the
    reference, including when it declines and the walk decides."""
    real, answers = engine._cheapest_costs_above, []

    def counting(*args):
        answers.append(real(*args))
        return answers[-1]

    monkeypatch.setattr(engine, "_cheapest_costs_above", counting)
    gen = torch.Generator().manual_seed(7)
    scale = torch.tensor([0.004, 0.02, 0.08])[torch.randint(0, 3, (4000,), generator=gen)]
    w = (torch.randn(4000, generator=gen) * scale).float()
    fixed = None
    for p, d in zip(DEFAULT_FRACTIONS, delta_schedule(0.0075, 10)):
        result = run_both(w, p, d, fixed=fixed)
        w, fixed = result.values, result.fixed
    assert answers.count(True) >= 5 and answers.count(False) >= 5, (answers.count(True), answers.count(False))


def test_edge_cases_match_reference():
    cases = [
        torch.tensor([0.3]),  # a single weight
        torch.tensor([0.0]),
        torch.tensor([-0.0, 0.0, -0.0]),
        torch.zeros(7),
        torch.full((9,), 0.25),
        torch.tensor([ZERO_THRESHOLD, -ZERO_THRESHOLD, ZERO_THRESHOLD / 2, 0.0]),  # at and below the zero threshold
        torch.tensor([1e-30, -1e-38, 3e-45, 0.2]),  # tiny and subnormal magnitudes
        torch.tensor([1e6, -3e5, 0.1, 123.0]),  # large magnitudes
        torch.tensor([0.5] * 70 + [0.51] * 5 + [-0.5]),
    ]
    for w in cases:
        for p in (0.3, 0.5, 1.0):
            for d in (0.0075, 0.1, 0.6):
                run_both(w, p, d)


# ------------------------------------------------------------------ invariants (fast only, larger inputs)
def _allowed_values(w: torch.Tensor, unassigned: torch.Tensor, delta: float, max_order: int) -> set[float]:
    bound = float(w.double()[unassigned].abs().max()) if bool(unassigned.any()) else 0.0
    allowed: set[float] = set()
    for k in range(max_order + 1):
        allowed |= set(candidate_centres(bound, delta, k).to(w.dtype).double().tolist())
    return allowed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight_vectors(max_size=1500), fractions, deltas, st.booleans(), st.floats(min_value=0.0, max_value=1.0))
def test_invariants(w, p, d, recluster, previous):
    prev = cluster(w, previous, d) if previous > 0 else None
    x = prev.values if prev is not None else w
    fixed_in = prev.fixed if prev is not None else None
    result = cluster(x, p, d, fixed=fixed_in, recluster_fixed=recluster)
    n = x.numel()
    quota = math.floor(n * p)
    locked = fixed_in if (fixed_in is not None and not recluster) else torch.zeros(n, dtype=torch.bool)
    # exactly floor(N·p) fixed (or the locked ones, if more)
    assert int(result.fixed.sum()) == max(quota, int(locked.sum()))
    newly = result.fixed & ~locked
    assert sum(result.taken_by_order) == int(newly.sum())
    # every newly fixed value is a candidate of this call, and a picked centre
    allowed = _allowed_values(x, ~locked, d, max(len(result.taken_by_order) - 1, 0))
    assert set(result.values[newly].double().tolist()) <= allowed
    assert set(result.centres.double().tolist()) <= allowed
    assert set(result.values[newly].tolist()) <= set(result.centres.tolist())
    assert torch.all(result.centres[1:] > result.centres[:-1])
    # weights not fixed keep their exact bits; locked ones too
    assert torch.equal(bits(result.values[~result.fixed]), bits(x[~result.fixed]))
    assert torch.equal(bits(result.values[locked]), bits(x[locked]))
    # moved / released
    if fixed_in is not None and recluster:
        assert result.released == int((fixed_in & ~result.fixed).sum())
        assert result.moved == int((fixed_in & (result.values != x)).sum())
    else:
        assert result.moved == result.released == 0
    # the same input gives the same output
    again = cluster(x, p, d, fixed=fixed_in, recluster_fixed=recluster)
    assert torch.equal(bits(again.values), bits(result.values)) and torch.equal(again.fixed, result.fixed)
    assert torch.equal(again.centres, result.centres) and again.taken_by_order == result.taken_by_order


def test_no_recluster_schedule_never_changes_fixed_values():
    gen = torch.Generator().manual_seed(7)
    w = (torch.randn(20000, generator=gen) * 0.03).float()
    fixed = None
    history = []
    for p, d in zip(DEFAULT_FRACTIONS, delta_schedule(0.0075, 10)):
        result = cluster(w, p, d, fixed=fixed, recluster_fixed=False)
        for old_mask, old_values in history:
            assert torch.all(result.fixed[old_mask])
            assert torch.equal(result.values[old_mask], old_values[old_mask])
        assert int(result.fixed.sum()) == math.floor(w.numel() * p)
        history.append((result.fixed.clone(), result.values.clone()))
        w, fixed = result.values, result.fixed
    assert bool(fixed.all())


def test_input_is_not_modified_and_shape_is_kept():
    w = torch.randn(6, 7) * 0.1
    w[0, 0] = -0.0
    copy = w.clone()
    result = cluster(w, 0.5, 0.05)
    assert torch.equal(bits(w), bits(copy))
    assert result.values.shape == w.shape and result.fixed.shape == w.shape and result.fixed.dtype == torch.bool
    flat = cluster_reference(w.reshape(-1), 0.5, 0.05)  # flat index = row-major order
    assert torch.equal(result.values.reshape(-1), flat.values)


def test_quota_zero_runs_no_pass():
    result = cluster(torch.tensor([0.1, 0.2]), 0.4, 0.05)  # floor(2 * 0.4) = 0
    assert result.taken_by_order == () and result.centres.numel() == 0 and not result.fixed.any()


# ------------------------------------------------------------------ hand-computed examples
def test_hand_example_two_passes():
    # C_0 holds 0, ±2^-7 .. ±0.5. Votes: 0.5, 0.5, 0.49 -> 0.5; 0.26 -> 0.25; -0.001 -> 0. So c* = 0.5.
    # Costs to 0.5: 0, 0 (free), 0.01/0.49 = 0.0204, 0.24/0.26 = 0.923, 0.501/0.001 = 501.
    # Running mean of the non-zero costs: 0.0204 <= 0.05, then (0.0204 + 0.923)/2 > 0.05: 3 taken.
    # Pass 2 (B = 0.26): 0.26 -> 0.25 and -0.001 -> 0 tie 1-1, the smaller candidate 0 wins;
    # -0.001 is below γ0 so it is free. 4 = floor(5 * 0.8) fixed.
    w = torch.tensor([0.5, 0.5, 0.49, 0.26, -0.001])
    result = run_both(w, 0.8, 0.05)
    assert result.values.tolist() == [0.5, 0.5, 0.5, pytest.approx(0.26), 0.0]
    assert result.fixed.tolist() == [True, True, True, False, True]
    assert result.centres.tolist() == [0.0, 0.5]
    assert result.taken_by_order == (4,)


def test_exact_zero_costs_are_free_in_the_running_mean():
    # Ten weights sit on 0.5 (cost 0) and 0.55 costs 0.05/0.55 = 0.0909 > a = 0.05. Were the zeros
    # counted, the mean would be 0.0909/11 = 0.008 and all 11 would go in the first pass. They are
    # free, so the first pass takes 10. 0.55 then votes 0.5 again at every order (the rungs near it
    # approximate to 0.5 or 0.46875), so orders 1..20 take nothing; at k = 21 a doubles to 0.1 >= 0.0909.
    w = torch.tensor([0.5] * 10 + [0.55])
    result = run_both(w, 1.0, 0.05)
    assert result.taken_by_order == (10,) + (0,) * 20 + (1,)
    assert result.values.tolist() == [0.5] * 11


def test_threshold_doubles_once_the_order_passes_20():
    # B = γ0 leaves C_k = {0}; both weights have |w| = γ0 (not below it), so they cost 1 each.
    # Orders 0..20 take nothing; then a doubles per empty pass: 0.2, 0.4, 0.8, 1.6 -> taken at k = 24.
    w = torch.tensor([ZERO_THRESHOLD, -ZERO_THRESHOLD])
    result = run_both(w, 1.0, 0.1)
    assert result.taken_by_order == (0,) * 24 + (2,)
    assert result.values.tolist() == [0.0, 0.0]


def test_ties_in_cost_go_to_the_smaller_magnitude():
    # δ = 0.4: C_0 = {0, ±2^-7, ±2^-6, ±2^-5, ±0.125, ±0.25}. 0.1875 is the 0.125/0.25 midpoint and
    # votes 0.125 (ties to the smaller), so c* = 0.25 with 3 votes. 0.375 and 0.1875 both cost
    # exactly 1/3; the quota 3 leaves room for one: the smaller |w| (0.1875) goes first.
    w = torch.tensor([0.25, 0.25, 0.375, 0.1875])
    result = run_both(w, 0.75, 0.4)
    assert result.fixed.tolist() == [True, True, False, True]
    costs = relative_distance(torch.tensor([0.375, 0.1875]), 0.25)
    assert costs[0].item() == costs[1].item()


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0.25, 0.3, 0.3, 0.3], [True, True, False, False]),  # right of the centre
        ([-0.25, -0.22, -0.22, -0.22], [True, True, False, False]),  # left of a negative centre
    ],
)
def test_equal_values_go_by_flat_index(values, expected):
    result = run_both(torch.tensor(values), 0.5, 0.4)
    assert result.fixed.tolist() == expected


def test_the_mean_not_each_cost_is_bounded():
    # 70 weights at 0.51 cost 0.0196 each; -0.5 costs (0.5 + 0.5)/0.5 = 2 to the centre 0.5, yet the
    # mean after it is (70 * 0.0196 + 2)/71 = 0.0475 <= 0.05: it flips sign in the same pass.
    w = torch.tensor([0.5] + [0.51] * 70 + [-0.5])
    result = run_both(w, 1.0, 0.05)
    assert result.taken_by_order == (72,)
    assert set(result.values.tolist()) == {0.5}


def test_weights_below_zero_threshold_are_free_for_the_zero_centre():
    w = torch.tensor([0.001, -0.002, 0.003, -0.004, 0.0, 0.3])
    result = run_both(w, 5 / 6, 0.01)
    assert result.values[:5].tolist() == [0.0] * 5 and result.centres.tolist() == [0.0]


# ------------------------------------------------------------------ small helpers
def test_delta_schedule():
    assert delta_schedule(0.01, 10) == [0.01 * m for m in (10, 9, 8, 7, 6, 5, 4, 3, 2, 1)]
    assert delta_schedule(0.02, 1) == [0.02]
    assert delta_schedule(0.01, 3) == [0.03, 0.02, 0.01]
    with pytest.raises(ValueError, match=r"n_iterations=0 is not allowed: it must be an integer >= 1"):
        delta_schedule(0.01, 0)
    with pytest.raises(ValueError, match=r"delta=-0.01 is not allowed: it must be a number > 0"):
        delta_schedule(-0.01, 10)


def test_default_fractions():
    assert DEFAULT_FRACTIONS == (0.30, 0.60, 0.80, 0.90, 0.95, 0.975, 0.99, 0.9975, 0.999, 1.0)


def test_relative_distance():
    w = torch.tensor([0.5, -0.5, 0.0, 0.001, 0.25])
    assert relative_distance(w, 0.25).tolist() == [0.5, 1.5, math.inf, pytest.approx(249.0), 0.0]  # 0.75/0.5 = 1.5
    assert relative_distance(w, 0.0).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]  # 0 below γ0, else 1
    assert relative_distance(w, 0.0, zero_threshold=1.0).tolist() == [0.0] * 5
    assert relative_distance(w, 0.25).dtype == torch.float64
    with pytest.raises(ValueError, match=r"centre=nan is not allowed: it must be a finite number"):
        relative_distance(w, math.nan)


# ------------------------------------------------------------------ bad input
_IN_0_1 = r"it must be a number in \(0, 1\]"
_DELTA = r"it must be a number in \(0, 1\) \(it is δ_t = δ·max\(1, T−t\): keep δ·T below 1\)"
_TENSOR = r"it must be a non-empty floating-point torch.Tensor"
_POWER = r"it must be a positive power of two such as 2\*\*-7"
_FINITE = r"weights \(a tensor holding NaN or inf\) is not allowed: it must hold finite values"
_FIXED = r"it must be a bool tensor of shape \(4,\) \(that of weights\)"


@pytest.mark.parametrize("call", [cluster, cluster_reference])
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fraction": 0.0}, r"fraction=0.0 is not allowed: " + _IN_0_1),
        ({"fraction": 1.5}, r"fraction=1.5 is not allowed: " + _IN_0_1),
        ({"fraction": -0.1}, r"fraction=-0.1 is not allowed: " + _IN_0_1),
        ({"fraction": math.nan}, r"fraction=nan is not allowed: " + _IN_0_1),
        ({"fraction": "half"}, r"fraction='half' is not allowed: " + _IN_0_1),
        ({"fraction": True}, r"fraction=True is not allowed: " + _IN_0_1),
        ({"delta": 0.0}, r"delta=0.0 is not allowed: " + _DELTA),
        ({"delta": 1.0}, r"delta=1.0 is not allowed: " + _DELTA),
        ({"delta": 1.5}, r"delta=1.5 is not allowed: " + _DELTA),
        ({"delta": math.nan}, r"delta=nan is not allowed: " + _DELTA),
        ({"zero_threshold": 0.01}, r"zero_threshold=0.01 is not allowed: " + _POWER),
        ({"zero_threshold": 0.0}, r"zero_threshold=0.0 is not allowed: " + _POWER),
        ({"zero_threshold": -(2.0**-7)}, r"zero_threshold=-0.0078125 is not allowed: " + _POWER),
        ({"weights": torch.tensor([0.1, math.nan])}, _FINITE),
        ({"weights": -torch.tensor([0.1, math.nan])}, _FINITE),
        ({"weights": torch.tensor([0.1, math.inf])}, _FINITE),
        ({"weights": torch.tensor([-math.inf, 0.1])}, _FINITE),
        ({"weights": torch.tensor([math.nan], dtype=torch.float64)}, _FINITE),
        ({"weights": torch.tensor([math.inf], dtype=torch.float16)}, _FINITE),
        ({"weights": torch.tensor([])}, r"weights \(a tensor with 0 elements\) is not allowed: " + _TENSOR),
        ({"weights": torch.tensor([1, 2])}, r"weights \(a tensor of dtype torch.int64\) is not allowed: " + _TENSOR),
        ({"weights": [0.1, 0.2]}, r"weights=\[0.1, 0.2\] is not allowed: " + _TENSOR),
        ({"fixed": torch.zeros(3, dtype=torch.bool)},
         r"fixed \(a torch.bool tensor of shape \(3,\)\) is not allowed: " + _FIXED),
        ({"fixed": torch.zeros(4)}, r"fixed \(a torch.float32 tensor of shape \(4,\)\) is not allowed: " + _FIXED),
        ({"fixed": [True] * 4}, r"fixed=\[True, True, True, True\] is not allowed: " + _FIXED),
        ({"recluster_fixed": 1}, r"recluster_fixed=1 is not allowed: it must be True or False"),
    ],
)
def test_bad_input_raises(call, kwargs, message):
    """Both versions check the same way; each message names the parameter, the value and what is allowed."""
    args = {"weights": torch.tensor([0.1, -0.2, 0.3, 0.0]), "fraction": 0.5, "delta": 0.05}
    args.update(kwargs)
    extra = {k: args.pop(k) for k in ("zero_threshold", "fixed", "recluster_fixed") if k in args}
    with pytest.raises(InvalidParameterError, match=message):
        call(args["weights"], args["fraction"], args["delta"], **extra)


def test_zero_centre_takes_the_smallest_magnitudes_first_across_signs():
    # Seven weights below γ0 vote for 0 and are all free; the quota 4 takes them by |w| then flat
    # index: 0.001 at indices 1, 2, 4 (either sign), then 0.002 at index 5 before index 6.
    w = torch.tensor([0.003, -0.001, 0.001, -0.003, 0.001, 0.002, -0.002, 0.3])
    result = run_both(w, 0.5, 0.05)
    assert result.fixed.tolist() == [False, True, True, False, True, True, False, False]
    assert result.centres.tolist() == [0.0]
