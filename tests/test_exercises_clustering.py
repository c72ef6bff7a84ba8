"""The notebook-02 exercise checks pass a correct answer and fail typical wrong ones with a precise message."""

import math

import torch

from wfn_core.centres import ZERO_THRESHOLD
from wfn_core.course.exercises.clustering import check_relative_distance, check_running_mean_prefix


def _distance(w, c):
    w = w.double()
    if c == 0:
        return (w.abs() >= ZERO_THRESHOLD).double()
    return (w - c).abs() / w.abs()


def _prefix(costs, a):
    total, paid = 0.0, 0
    for i, x in enumerate(costs.tolist()):
        total, paid = total + x, paid + (x != 0)
        if total / max(paid, 1) > a:
            return i
    return len(costs)


def _not_yet(*_):
    raise NotImplementedError()


def test_relative_distance_passes_a_correct_answer():
    feedback = check_relative_distance(_distance)
    assert feedback.passed and str(feedback).startswith("✓ relative_distance: matches the library")


def test_relative_distance_fails_dividing_by_the_centre():
    feedback = check_relative_distance(lambda w, c: (w - c).abs() / abs(c) if c else _distance(w, c))
    assert not feedback.passed
    assert "relative_distance(w, c=0.0625) at index" in feedback.message and "expected" in feedback.message
    assert "|w|" in feedback.hint


def test_relative_distance_fails_a_signed_cost():
    feedback = check_relative_distance(lambda w, c: (w - c) / w.abs() if c else _distance(w, c))
    assert not feedback.passed and "c=0.0625" in feedback.message and "is -" in feedback.message


def test_relative_distance_fails_without_the_zero_centre_rule():
    feedback = check_relative_distance(lambda w, c: (w - c).abs() / w.abs())
    assert not feedback.passed
    # the first mismatch: a zero weight gives 0/0 = nan instead of cost 0 below γ0
    assert "relative_distance(w, c=0)" in feedback.message and "(input 0)" in feedback.message


def test_relative_distance_not_implemented():
    feedback = check_relative_distance(_not_yet)
    assert not feedback.passed and feedback.message.startswith("not implemented yet") and feedback.hint


def test_running_mean_prefix_passes_a_correct_answer():
    feedback = check_running_mean_prefix(_prefix)
    assert feedback.passed and str(feedback).startswith("✓ running_mean_prefix: matches the library")


def test_running_mean_prefix_fails_when_zeros_count_in_the_mean():
    def diluted(costs, a):
        mean = torch.cumsum(costs, 0) / torch.arange(1, costs.numel() + 1)
        over = (mean > a).nonzero()
        return int(over[0, 0]) if over.numel() else costs.numel()

    feedback = check_running_mean_prefix(diluted)
    assert not feedback.passed
    assert feedback.message == "running_mean_prefix([0.0, 0.0, 0.0, 0.3, 0.3], a=0.25) is 5, expected 3"


def test_running_mean_prefix_fails_bounding_each_cost():
    feedback = check_running_mean_prefix(lambda costs, a: int((costs <= a).sum()))
    assert not feedback.passed
    assert feedback.message == "running_mean_prefix([0.1, 0.3, 0.5], a=0.25) is 1, expected 2"


def test_running_mean_prefix_fails_returning_an_index():
    feedback = check_running_mean_prefix(lambda costs, a: max(_prefix(costs, a) - 1, 0))
    assert not feedback.passed and "expected" in feedback.message and "not an index" in feedback.hint


def test_running_mean_prefix_fails_a_strict_bound():
    def strict(costs, a):
        return next((i for i in range(len(costs)) if _prefix(costs[: i + 1], math.nextafter(a, 0)) <= i),
                    len(costs))

    feedback = check_running_mean_prefix(strict)
    assert not feedback.passed and feedback.message == "running_mean_prefix([0.5], a=0.5) is 0, expected 1"


def test_running_mean_prefix_not_implemented():
    feedback = check_running_mean_prefix(_not_yet)
    assert not feedback.passed and feedback.message.startswith("not implemented yet") and feedback.hint
