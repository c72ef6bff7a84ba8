"""The notebook-03 exercise checks pass a correct answer and fail typical mistakes with a precise message."""

import torch

from wfn_core.centres import ZERO_THRESHOLD
from wfn_core.course.exercises.regulariser import (
    check_nearest_distance,
    check_regulariser_lambda,
    check_regulariser_term,
)


def _distances(w, centres, small_rule=True):
    small = w.abs() <= ZERO_THRESHOLD
    d = (w[None, :] - centres[:, None]).abs() / torch.where(small, torch.ones_like(w), w.abs())
    if not small_rule:
        d = (w[None, :] - centres[:, None]).abs() / w.abs()
    return torch.where(small[None, :] & (centres[:, None] == 0), 0.0, d)


def _term(w, centres, tau, sign=-1.0, small_rule=True):
    d = _distances(w, centres, small_rule)
    s = torch.softmax(sign * d / tau, dim=0)
    return (s * d).sum(0)


def _lambda(alpha, ce, reg):
    return alpha * ce / reg if reg > 0 else 0.0


def _nearest(w, centres):
    d = (w[None, :] - centres[:, None]).abs() / w.abs()
    d = torch.where(centres[:, None] == 0, (w.abs() >= ZERO_THRESHOLD).to(w.dtype), d)
    return d.min(0).values


def _not_implemented(*args):
    raise NotImplementedError()


def test_term_correct_passes():
    fb = check_regulariser_term(_term)
    assert fb.passed and str(fb).startswith("✓ regulariser term: matches penalty_reference")


def test_term_softmax_instead_of_softmin_fails():
    fb = check_regulariser_term(lambda w, c, tau: _term(w, c, tau, sign=1.0))
    # at w = 0 the softmax puts its weight on the farthest centre (0.4375) instead of the zero centre
    assert not fb.passed and "the term (τ = 0.05, 5 centres) at index (0,) (input 0) is 0.436503" in fb.message
    assert "softMIN" in fb.hint


def test_term_without_the_small_weight_rule_fails_at_zero():
    fb = check_regulariser_term(lambda w, c, tau: _term(w, c, tau, small_rule=False))
    assert not fb.passed and "at index (0,) (input 0) is nan, expected 0" in fb.message


def test_term_returning_the_mean_fails_on_shape():
    fb = check_regulariser_term(lambda w, c, tau: _term(w, c, tau).mean())
    assert not fb.passed and "the term (τ = 0.05, 5 centres) has shape (), expected (14,)" in fb.message


def test_lambda_correct_passes():
    fb = check_regulariser_lambda(_lambda)
    assert fb.passed and "matches ClusterRegulariser.loss in 24 cases" in fb.message


def test_lambda_without_the_guard_or_inverted_fails():
    fb = check_regulariser_lambda(lambda a, ce, reg: a * ce / reg)
    assert not fb.passed and "your code raised ZeroDivisionError" in fb.message
    inverted = check_regulariser_lambda(lambda a, ce, reg: a * reg / ce if reg > 0 else 0.0)
    assert not inverted.passed and "λ for α = 0.4, CE = 0.05" in inverted.message


def test_nearest_correct_passes():
    fb = check_nearest_distance(_nearest)
    assert fb.passed and "with and without the zero centre" in fb.message


def test_nearest_dividing_by_the_centre_fails():
    def by_centre(w, c):
        d = (w[None, :] - c[:, None]).abs() / c[:, None].abs()
        return torch.where(c[:, None] == 0, (w.abs() >= ZERO_THRESHOLD).to(w.dtype), d).min(0).values

    fb = check_nearest_distance(by_centre)
    assert not fb.passed and "the nearest-centre distance (with the zero centre) at index" in fb.message


def test_nearest_ignoring_the_zero_rule_fails():
    def plain(w, c):
        return ((w[None, :] - c[:, None]).abs() / w.abs()).min(0).values

    fb = check_nearest_distance(plain)
    assert not fb.passed
    assert "the nearest-centre distance (with the zero centre) at index (0,) (input 0) is nan, expected 0" in fb.message


def test_not_implemented_and_crash_give_feedback():
    for check in (check_regulariser_term, check_regulariser_lambda, check_nearest_distance):
        fb = check(_not_implemented)
        assert not fb.passed and fb.message.startswith("not implemented yet") and fb.hint
    crash = check_nearest_distance(lambda w, c: w.tolist())
    assert not crash.passed and "should be a tensor or a number, got list" in crash.message
