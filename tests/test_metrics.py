"""Weight-space metrics (section 6) and the fixable parameter set (section 0), on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from wfn_core.fixable import fixable_parameters, flat_values
from wfn_core.metrics import entropy_bits, order_histogram, power_of_two_share, summary, unique_count

EXAMPLE = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 2.0, -0.5, 0.75])
# Histogram: 0 x2, 1 x3, 2 x1, -0.5 x1, 0.75 x1 (N = 8).
# entropy_bits = -(2/8 log2 2/8 + 3/8 log2 3/8 + 3 * 1/8 log2 1/8)
#              = 0.5 + 0.375 * 1.4150375 + 0.375 * 3 = 2.1556391
# Non-zero entries (6): 1 x3, 2, -0.5, 0.75: -(1/2 log2 1/2 + 3 * 1/6 log2 1/6) = 0.5 + 0.5 log2 6 = 1.7924813
H_ALL = 0.5 + 0.375 * math.log2(8 / 3) + 0.375 * 3
H_NONZERO = 0.5 + 0.5 * math.log2(6)


def test_unique_count_hand_example():
    assert unique_count(EXAMPLE) == 5
    assert unique_count(EXAMPLE, include_zero=False) == 4


def test_entropy_hand_example():
    assert entropy_bits(EXAMPLE) == pytest.approx(2.1556391, abs=1e-6)
    assert entropy_bits(EXAMPLE) == pytest.approx(H_ALL, rel=1e-12)
    assert entropy_bits(EXAMPLE, include_zero=False) == pytest.approx(1.7924813, abs=1e-6)
    assert entropy_bits(EXAMPLE, include_zero=False) == pytest.approx(H_NONZERO, rel=1e-12)


def test_order_histogram_hand_example():
    # 0 -> 0 terms (x2); 1, 1, 1, 2, -0.5 -> 1 term; 0.75 = 1 - 0.25 -> 2 terms.
    assert order_histogram(EXAMPLE) == {0: 2, 1: 5, 2: 1}
    # 0.4375 = 0.5 - 0.0625 (2 terms), 0.6875 = 0.5 + 0.25 - 0.0625 (3 terms)
    assert order_histogram(torch.tensor([0.4375, 0.6875, 0.6875, -3.0])) == {2: 2, 3: 2}


def test_power_of_two_share_counts_zeros_in_the_denominator():
    # 5 of the 8 entries are a single signed power of two (zeros are not, but they count in N).
    assert power_of_two_share(EXAMPLE) == 5 / 8
    assert power_of_two_share(torch.zeros(4)) == 0.0


def test_summary_of_a_tensor_and_of_tensors():
    expected = {
        "n_params": 8,
        "unique": 5,
        "unique_nonzero": 4,
        "entropy_bits": pytest.approx(H_ALL),
        "entropy_bits_nonzero": pytest.approx(H_NONZERO),
        "power_of_two_share": 5 / 8,
    }
    assert summary(EXAMPLE) == expected
    assert summary([EXAMPLE[:3], EXAMPLE[3:].reshape(5, 1)]) == expected
    assert summary(EXAMPLE.double()) == expected


def test_negative_zero_is_zero():
    x = torch.tensor([0.0, -0.0, 0.5])
    assert unique_count(x) == 2 and unique_count(x, include_zero=False) == 1
    assert entropy_bits(x) == pytest.approx(-(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)))


def test_degenerate_inputs():
    assert entropy_bits(torch.full((10,), 0.25)) == 0.0
    assert entropy_bits(torch.zeros(5), include_zero=False) == 0.0
    assert unique_count(torch.zeros(5), include_zero=False) == 0
    s = summary(torch.zeros(3))
    assert s["unique"] == 1 and s["unique_nonzero"] == 0 and s["entropy_bits_nonzero"] == 0.0


def test_metrics_reject_non_finite_naming_the_entry():
    with pytest.raises(ValueError, match=r"^values holds nan at index 1: it must hold finite values only"):
        entropy_bits(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="values holds inf at index 0"):
        summary(torch.tensor([math.inf]))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"^parameter 0.weight holds nan at index \(1, 2\): it must hold finite"):
        summary(model)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, -0.5, 0.75, 0.4375, 1e-3, 2.0, -3.0]), min_size=1, max_size=60))
def test_metrics_agree_with_a_plain_count(values):
    x = torch.tensor(values, dtype=torch.float32)
    counts: dict[float, int] = {}
    for v in values:
        counts[v + 0.0] = counts.get(v + 0.0, 0) + 1
    n = len(values)
    h = -sum(c / n * math.log2(c / n) for c in counts.values())
    nz = {v: c for v, c in counts.items() if v != 0}
    n_nz = sum(nz.values())
    h_nz = -sum(c / n_nz * math.log2(c / n_nz) for c in nz.values()) if n_nz else 0.0
    s = summary(x)
    assert s["unique"] == len(counts) and s["unique_nonzero"] == len(nz)
    assert s["entropy_bits"] == pytest.approx(h, abs=1e-12)
    assert s["entropy_bits_nonzero"] == pytest.approx(h_nz, abs=1e-12)


# ------------------------------------------------------------------ models
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.downsample = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(3, 2)  # not fixable
        self.block = Block()
        self.fc = nn.Linear(2, 1)


def _set_values(net: Net) -> None:
    with torch.no_grad():
        net.block.conv.weight.copy_(torch.tensor([0.5, 0.5]).view(2, 1, 1, 1))
        net.block.bn.weight.copy_(torch.tensor([1.0, 1.0]))
        net.block.bn.bias.copy_(torch.tensor([0.0, 0.25]))
        net.block.downsample[0].weight.copy_(torch.tensor([3.0, 3.0]).view(2, 1, 1, 1))
        net.block.downsample[1].weight.copy_(torch.tensor([7.0, 7.0]))
        net.block.downsample[1].bias.copy_(torch.tensor([0.0, 0.0]))
        net.fc.weight.copy_(torch.tensor([[0.5, -0.75]]))
        net.fc.bias.copy_(torch.tensor([0.0]))


def test_fixable_parameters_order_and_names():
    net = Net()
    names = [n for n, _ in fixable_parameters(net)]
    assert names == ["block.conv.weight", "block.downsample.0.weight", "fc.weight", "fc.bias"]
    names_bn = [n for n, _ in fixable_parameters(net, include_bn=True)]
    assert names_bn == ["block.conv.weight", "block.bn.weight", "block.bn.bias", "block.downsample.0.weight",
                        "block.downsample.1.weight", "block.downsample.1.bias", "fc.weight", "fc.bias"]
    assert all(isinstance(p, nn.Parameter) for _, p in fixable_parameters(net, include_bn=True))


def test_fixable_parameters_kinds():
    model = nn.Sequential(nn.Conv1d(1, 1, 1), nn.Conv3d(1, 1, 1), nn.BatchNorm1d(1), nn.LayerNorm(1))
    assert [n for n, _ in fixable_parameters(model)] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert len(fixable_parameters(model, include_bn=True)) == 6  # BN affine only, never running stats
    lin = nn.Linear(2, 2)
    assert [n for n, _ in fixable_parameters(lin)] == ["weight", "bias"]
    with pytest.raises(ValueError, match="no fixable parameters"):
        fixable_parameters(nn.Sequential(nn.Embedding(2, 2), nn.BatchNorm1d(2)))


def test_shared_parameters_are_listed_once():
    a = nn.Linear(2, 2, bias=False)
    b = nn.Linear(2, 2, bias=False)
    b.weight = a.weight
    assert [n for n, _ in fixable_parameters(nn.Sequential(a, b))] == ["0.weight"]


def test_flat_values():
    net = Net()
    _set_values(net)
    flat = flat_values(fixable_parameters(net))
    assert flat.dtype == torch.float32 and flat.dim() == 1 and not flat.requires_grad
    assert flat.tolist() == [0.5, 0.5, 3.0, 3.0, 0.5, -0.75, 0.0]
    assert flat_values([torch.ones(2, 2, dtype=torch.float64)]).tolist() == [1.0] * 4


def test_summary_of_a_model_and_the_paper_compatible_variant():
    net = Net()
    _set_values(net)
    # Default: conv, downsample conv, fc -> [0.5, 0.5, 3, 3, 0.5, -0.75, 0]
    s = summary(net)
    assert s["n_params"] == 7 and s["unique"] == 4 and s["unique_nonzero"] == 3
    # 0.5 x3, 3 x2, -0.75, 0: 3/7 of the entries (0.5 x3) are one power of two; 3 = 4 - 1 and
    # 0.75 = 1 - 0.25 take two terms.
    assert s["power_of_two_share"] == pytest.approx(3 / 7)
    # include_bn adds bn (1, 1, 0, 0.25) and downsample.1 (7, 7, 0, 0).
    assert summary(net, include_bn=True)["n_params"] == 15
    # Paper-compatible: BN in, everything under "downsample" out:
    # conv 0.5 x2, bn 1, 1, 0, 0.25, fc 0.5, -0.75, 0 -> 9 entries, non-zero values {0.5, 1, 0.25, -0.75}.
    p = summary(net, paper_compatible=True)
    assert p["n_params"] == 9 and p["unique"] == 5 and p["unique_nonzero"] == 4
    # Non-zero histogram: 0.5 x3, 1 x2, 0.25, -0.75 (7 entries).
    h = -(3 / 7 * math.log2(3 / 7) + 2 / 7 * math.log2(2 / 7) + 2 * (1 / 7 * math.log2(1 / 7)))
    assert p["entropy_bits_nonzero"] == pytest.approx(h)
    with pytest.raises(ValueError, match="paper_compatible=True needs an nn.Module"):
        summary(EXAMPLE, paper_compatible=True)
