"""The notebook-01 exercise checks pass a correct answer and fail typical mistakes with a precise message."""

import math

import torch

from wfn_core.course.exercises.apot import check_apot_order1, check_ladder, check_round_to_power_of_two


def _round_log(w, e_min=-8):
    mag = w.abs()
    e = torch.round(torch.log2(torch.where(mag > 0, mag, torch.ones_like(mag)))).clamp_min(e_min)
    return torch.where(mag > 0, torch.sign(w) * 2.0**e, torch.zeros_like(w))


def _round_linear(w, e_min=-8):  # nearest of the two neighbouring powers by absolute distance
    mag = w.abs()
    lo = 2.0 ** torch.floor(torch.log2(torch.where(mag > 0, mag, torch.ones_like(mag)))).clamp_min(e_min)
    up = torch.where(mag - lo <= 2 * lo - mag, lo, 2 * lo)
    return torch.where(mag > 0, torch.sign(w) * up, torch.zeros_like(w))


def _ladder(b, delta, g0):
    n = max(0, math.ceil(math.log(b / g0) / math.log((1 + delta) / (1 - delta))))
    return g0 * ((1 + delta) / (1 - delta)) ** torch.arange(n, dtype=torch.float64)


def _not_implemented(*args):
    raise NotImplementedError()


def test_round_correct_passes():
    fb = check_round_to_power_of_two(_round_log)
    assert fb.passed and str(fb).startswith("✓ round_to_power_of_two: matches the library")


def test_round_in_the_linear_domain_fails_at_a_named_input():
    fb = check_round_to_power_of_two(_round_linear)
    assert not fb.passed
    # 0.37 is nearer 0.25 than 0.5 in absolute terms, but above the log-domain midpoint 2^-1.5 = 0.354
    assert "(input 0.37) is 0.25, expected 0.5" in fb.message and "2^(e+1/2)" in fb.hint


def test_round_without_the_sign_fails():
    fb = check_round_to_power_of_two(lambda w, e_min=-8: _round_log(w, e_min).abs())
    assert not fb.passed and "(input -0.25) is 0.25, expected -0.25" in fb.message


def test_round_without_the_floor_fails_below_it():
    fb = check_round_to_power_of_two(lambda w, e_min=-8: _round_log(w, -1000))
    assert not fb.passed and "(input 0.0026) is 0.00195312, expected 0.00390625" in fb.message


def test_round_not_implemented_and_crash_give_feedback():
    fb = check_round_to_power_of_two(_not_implemented)
    assert not fb.passed and fb.message.startswith("not implemented yet") and fb.hint
    crash = check_round_to_power_of_two(lambda w, e_min=-8: w.numpy().tolist())
    assert not crash.passed and "should be a tensor or a number, got list" in crash.message


def _order1(w, delta, e_min=-9, always=False, unsigned=False):
    g = w.abs()
    a = _round_log(g, e_min)
    r = g - a
    step = _round_log(r.abs() if unsigned else r, e_min)
    refine = torch.ones_like(g, dtype=torch.bool) if always else r.abs() >= delta * g
    return torch.sign(w) * torch.where(refine, a + step, a)


def test_order1_correct_passes():
    fb = check_apot_order1(_order1)
    assert fb.passed and "matches the library's order-1 values" in fb.message


def test_order1_that_always_refines_fails_where_delta_says_stop():
    fb = check_apot_order1(lambda w, d, e_min: _order1(w, d, e_min, always=True))
    assert not fb.passed and "apot_order1(w, delta=0.2, e_min=-9)" in fb.message and "δ·|w|" in fb.hint


def test_order1_that_only_adds_fails_on_a_value_reached_from_above():
    fb = check_apot_order1(lambda w, d, e_min: _order1(w, d, e_min, unsigned=True))
    assert not fb.passed and "(input 0.4375) is 0.5625, expected 0.4375" in fb.message


def test_order1_not_implemented():
    fb = check_apot_order1(_not_implemented)
    assert not fb.passed and fb.message.startswith("not implemented yet")


def test_ladder_correct_passes():
    fb = check_ladder(_ladder)
    assert fb.passed and "matches the library's ladder in 5 cases" in fb.message


def test_ladder_with_ratio_one_plus_delta_fails_on_the_count():
    fb = check_ladder(lambda b, d, g0: g0 * (1 + d) ** torch.arange(
        max(0, math.ceil(math.log(b / g0) / math.log(1 + d))), dtype=torch.float64))
    assert not fb.passed and "has 128 rungs, expected 64" in fb.message and "(1+δ)/(1−δ)" in fb.hint


def test_ladder_keeping_a_rung_equal_to_b_fails():
    fb = check_ladder(lambda b, d, g0: torch.cat([_ladder(b, d, g0), torch.tensor([g0])]) if b == g0
                      else _ladder(b, d, g0))
    assert not fb.passed and "ladder(B=0.0078125, delta=0.03, g0=0.0078125) has 1 rungs, expected 0" in fb.message


def test_ladder_not_implemented():
    fb = check_ladder(_not_implemented)
    assert not fb.passed and fb.message.startswith("not implemented yet")
