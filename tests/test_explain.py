"""The teaching helpers agree with the real clustering code."""

import math

import pytest
import torch

from wfn_core import DEFAULT_FRACTIONS, cluster, fixable_parameters, load_pretrained_digits
from wfn_core.clustering import cluster_schedule, delta_schedule
from wfn_core.course.explain import first_pass
from wfn_core.fixable import flat_values, set_flat_values


def _weights():
    return flat_values(fixable_parameters(load_pretrained_digits()))


def test_first_pass_is_what_cluster_does_when_one_pass_suffices():
    w = _weights()
    needed = math.floor(w.numel() * 0.1)
    step = first_pass(w, needed, 0.25)
    assert step["taken"] == needed  # one pass is enough here
    result = cluster(w, 0.1, 0.25)
    assert set(result.fixed.nonzero().squeeze(1).tolist()) == set(step["taken_index"].tolist())
    assert result.centres.tolist() == [step["winner"]]
    assert torch.all(step["running_mean"][: step["taken"]] <= 0.25)


def test_cluster_schedule_chains_the_calls():
    w = _weights()[:5000]
    results = cluster_schedule(w, 0.02)
    assert len(results) == len(DEFAULT_FRACTIONS)
    values, fixed = w, None
    for r, p, d in zip(results, DEFAULT_FRACTIONS, delta_schedule(0.02, len(DEFAULT_FRACTIONS))):
        expected = cluster(values, p, d, fixed=fixed)
        assert torch.equal(r.values, expected.values) and torch.equal(r.fixed, expected.fixed)
        values, fixed = r.values, r.fixed
    assert results[-1].fixed.all()


def test_set_flat_values_round_trips():
    model = load_pretrained_digits()
    params = fixable_parameters(model)
    w = flat_values(params)
    set_flat_values(params, w * 2)
    assert torch.equal(flat_values(params), w * 2)
    with pytest.raises(ValueError, match="entries"):
        set_flat_values(params, w[:-1])
