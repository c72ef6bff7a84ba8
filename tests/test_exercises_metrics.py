"""The notebook-04 exercise checks pass a correct answer and fail typical mistakes with a precise message."""

import pytest
import torch

from wfn_core.course.exercises.metrics import check_entropy_bits, check_entropy_bits_nonzero


def _entropy(w, log=torch.log2):
    _, counts = torch.unique(w.reshape(-1), return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(p * log(p)).sum())


def _entropy_nonzero(w):
    nz = w.reshape(-1)[w.reshape(-1) != 0]
    return _entropy(nz) if nz.numel() else 0.0


def _not_implemented(w):
    raise NotImplementedError()


def test_entropy_correct_passes():
    fb = check_entropy_bits(_entropy)
    assert fb.passed and str(fb).startswith("✓ entropy_bits: matches the library on 6 tensors")


def test_entropy_in_nats_fails_and_says_so():
    fb = check_entropy_bits(lambda w: _entropy(w, log=torch.log))
    assert not fb.passed
    assert "entropy_bits(4 values, 250 entries each) is 1.38629, expected 2 bits" in fb.message
    assert "nats" in fb.message and "base-2" in fb.hint


def test_entropy_over_histogram_bins_fails_on_distinct_values():
    def per_bin(w):  # 20 equal-width bins instead of one count per distinct value
        counts = torch.histc(w.reshape(-1).double(), bins=20)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * torch.log2(p)).sum())

    fb = check_entropy_bits(per_bin)
    assert not fb.passed and "1,000 distinct random weights" in fb.message and "expected 9.96578 bits" in fb.message


def test_entropy_of_counts_instead_of_shares_fails():
    def counts_not_shares(w):
        _, counts = torch.unique(w.reshape(-1), return_counts=True)
        c = counts.double()
        return float(-(c * torch.log2(c)).sum())

    fb = check_entropy_bits(counts_not_shares)
    assert not fb.passed and "entropy_bits(4 values, 250 entries each) is" in fb.message


def test_entropy_returning_a_vector_fails_with_the_shape():
    fb = check_entropy_bits(lambda w: torch.ones(3))
    assert not fb.passed and "should be one number (bits), got a tensor of shape (3,)" in fb.message


def test_entropy_not_implemented():
    fb = check_entropy_bits(_not_implemented)
    assert not fb.passed and fb.message.startswith("not implemented yet") and fb.hint


def test_entropy_nonzero_correct_passes():
    fb = check_entropy_bits_nonzero(_entropy_nonzero)
    assert fb.passed and "zeros only" in str(fb)


def test_entropy_nonzero_keeping_the_zeros_fails():
    fb = check_entropy_bits_nonzero(_entropy)
    assert not fb.passed
    assert "entropy_bits_nonzero(3,000 zeros and 4 non-zero values, 250 entries each) is 1.31128, expected 2 bits" \
        in fb.message


def test_entropy_nonzero_dividing_by_all_entries_fails():
    def shares_of_all(w):  # drops the zeros' term but keeps N (all entries) in the denominator
        flat = w.reshape(-1)
        values, counts = torch.unique(flat, return_counts=True)
        p = counts[values != 0].double() / flat.numel()
        return float(-(p * torch.log2(p)).sum())

    fb = check_entropy_bits_nonzero(shares_of_all)
    assert not fb.passed
    assert "3,000 zeros and 4 non-zero values, 250 entries each) is 1, expected 2 bits" in fb.message
    assert "N_nz" in fb.hint


def test_entropy_nonzero_crashing_on_all_zeros_is_reported():
    def crash(w):  # no guard for "no non-zero entry"
        nz = w[w != 0]
        return _entropy(nz) / (nz.numel() // nz.numel())

    fb = check_entropy_bits_nonzero(crash)
    assert not fb.passed and "ZeroDivisionError" in fb.message


def test_entropy_nonzero_not_implemented():
    fb = check_entropy_bits_nonzero(_not_implemented)
    assert not fb.passed and fb.message.startswith("not implemented yet")


# The notebook-04 helpers behind the heatmap, the sharing claim and the two-panel histogram.
def test_layer_value_shares_and_top_value_share_per_layer():
    from wfn_core.course.plots import layer_value_shares, top_value_share_per_layer

    a, b = torch.tensor([0.5, 0.5, 0.25, -0.0]), torch.tensor([0.0, 0.125])
    values, shares = layer_value_shares([a, b])
    assert values.tolist() == [0.0, 0.125, 0.25, 0.5]  # -0.0 and 0.0 are one column
    assert shares.tolist() == [[0.25, 0.0, 0.25, 0.5], [0.5, 0.5, 0.0, 0.0]]
    # the network's 2 most common values are 0.0 and 0.5 (2 entries each)
    assert top_value_share_per_layer(["a", "b"], [a, b], k=2) == {"a": (4, 0.75), "b": (2, 0.5)}


def test_sharing_claim_reads_only_large_tensors_and_can_fail():
    from wfn_core.course.checks import LARGE_TENSOR, histogram_claims

    shared = {"big": (LARGE_TENSOR, 0.85), "small": (10, 0.1)}  # a small tensor's low share does not count
    assert all(c.holds for c in histogram_claims(0.99, 0.88, shared))
    per_tensor = {"big": (LARGE_TENSOR, 0.135), "other": (5 * LARGE_TENSOR, 0.9)}
    first = histogram_claims(0.99, 0.88, per_tensor)[0]
    assert not first.holds and first.measured == "lowest 13.5% in big"
    with pytest.raises(ValueError, match="no tensor of at least"):
        histogram_claims(0.99, 0.88, {"small": (10, 0.9)})


def test_weight_histogram_never_puts_two_counts_on_one_axis():
    import matplotlib.pyplot as plt

    from wfn_core.course.plots import new_figure, weight_histogram

    fp32, wfn = 0.1 * torch.randn(500, generator=torch.Generator().manual_seed(0)), torch.tensor([0.25, -0.5, 0.25])
    fig = weight_histogram(fp32, wfn)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert len(labels) == 2 and "count per bin of width" in labels[0] and "count per distinct value" in labels[1]
    fig2, (ax,) = new_figure()
    weight_histogram(fp32, wfn, ax=ax)  # one Axes given: WFN's counts get their own (twin) y axis
    assert len(fig2.axes) == 2 and "count per distinct value" in fig2.axes[1].get_ylabel()
    with pytest.raises(ValueError, match="1 axes for 2 histograms"):
        weight_histogram(fp32, wfn, ax=[ax])
    plt.close("all")
