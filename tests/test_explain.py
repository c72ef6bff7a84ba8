"""The teaching helpers agree with the real clustering code."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from wfn_core import DEFAULT_FRACTIONS, cluster, fixable_parameters, load_pretrained_digits
from wfn_core.clustering import cluster_schedule, delta_schedule
from wfn_core.course.checks import centres_schedule_claims
from wfn_core.course.explain import centres_per_iteration, first_pass, running_mean, running_mean_prefix
from wfn_core.course.plots import plot_centres_per_iteration
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


def test_running_mean_prefix_frees_zero_costs_and_stops_at_the_first_mean_above_a():
    costs = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.5], dtype=torch.float64)
    assert running_mean(costs).tolist() == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    assert running_mean_prefix(costs, 0.2) == 4 and running_mean_prefix(costs, 0.05) == 2
    assert running_mean_prefix(torch.zeros(0), 0.1) == 0


def test_centres_per_iteration_counts_the_values_of_the_fixed_weights():
    w = _weights()[:3000]
    fractions = (0.5, 0.9, 1.0)
    counts = centres_per_iteration(w, [0.01, 0.04], fractions=fractions, reference=True)
    assert list(counts) == [0.01, 0.04]
    for delta, per_t in counts.items():
        results = cluster_schedule(w, delta, fractions)
        assert per_t == [torch.unique(r.values[r.fixed]).numel() for r in results]
        # after the last call every weight is fixed, so the centres are all the values there are
        assert per_t[-1] == torch.unique(results[-1].values).numel()
    assert counts[0.01][-1] > counts[0.04][-1]


def test_centres_per_iteration_rejects_no_deltas_and_bad_ones():
    w = _weights()[:100]
    with pytest.raises(ValueError, match="deltas"):
        centres_per_iteration(w, [])
    with pytest.raises(ValueError, match="delta"):
        centres_per_iteration(w, [0.0])


def test_plot_centres_per_iteration_draws_one_labelled_line_per_delta():
    fig = plot_centres_per_iteration({0.04: [1, 2, 3], 0.01: [2, 5, 9]})
    ax = fig.axes[0]
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [[2, 5, 9], [1, 2, 3]]  # δ ascending
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["δ = 0.01 (ends with 9)", "δ = 0.04 (ends with 3)"]
    assert ax.get_yscale() == "log" and "centres" in ax.get_ylabel()
    assert fig.get_size_inches()[0] >= 6
    plt.close(fig)
    with pytest.raises(ValueError, match="counts"):
        plot_centres_per_iteration({})


def _unique_per_iteration(w, delta):
    return [torch.unique(r.values).numel() for r in cluster_schedule(w, delta)]


def test_centres_schedule_claims_hold_on_the_shipped_weights_and_fail_without_a_falling_delta_t():
    w = _weights()
    deltas = [0.005, 0.01, 0.02, 0.04]
    counts = centres_per_iteration(w, deltas)
    unique = {d: _unique_per_iteration(w, d) for d in (0.005, 0.04)}
    assert all(c.holds for c in centres_schedule_claims(counts, unique))
    # the same calls with δ_t = δ at every iteration: centres arrive early, the late-share claims must fail
    flat = {}
    for d in (0.005, 0.04):
        values, fixed, per_t = w, None, []
        for p in DEFAULT_FRACTIONS:
            r = cluster(values, p, d, fixed=fixed)
            values, fixed = r.values, r.fixed
            per_t.append(torch.unique(r.values[r.fixed]).numel())
        flat[d] = per_t
    failed = [c.statement for c in centres_schedule_claims(flat, unique) if not c.holds]
    assert any("last three iterations" in s for s in failed) and any("last iteration adds" in s for s in failed)


def test_codebooks_without_retraining_compares_one_codebook_with_one_per_tensor():
    """On the shipped digits CNN: the rows name each method, the fp32 weights stay as they were, each clustered
    model holds exactly its row's values, and the per-tensor schemes spread their values over the tensors."""
    from torch.utils.data import DataLoader, TensorDataset

    from wfn_core import preset
    from wfn_core.course.checks import codebook_claims
    from wfn_core.course.explain import codebooks_without_retraining
    from wfn_core.data import digits_arrays
    from wfn_core.metrics import summary

    model = load_pretrained_digits()
    before = flat_values(fixable_parameters(model)).clone()
    x, y = digits_arrays()[4:6]
    loader = DataLoader(TensorDataset(x, y), batch_size=360)
    deltas = (0.0025, 0.005, 0.01, 0.015, 0.02, 0.025)
    rows, clustered = codebooks_without_retraining(model, loader, preset("digits"), deltas=deltas)
    assert [r["method"] for r in rows] == [f"one codebook (WFN clustering, δ = {d:g})" for d in deltas] + [
        "uniform 4-bit per tensor", "APoT 4-bit per tensor", "k-means per tensor, k = 16"]
    assert torch.equal(flat_values(fixable_parameters(model)), before)
    assert summary(clustered[0.01])["unique"] == rows[2]["unique"]
    assert all(0 <= r["top1"] <= 1 for r in rows)
    assert rows[6]["unique_nonzero"] > 15  # one grid per tensor: more values than any one 4-bit grid holds
    # the claim set evaluates on these rows and names what it measured
    assert len(codebook_claims(rows, rows[0]["top1"])) == 6
