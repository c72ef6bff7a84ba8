"""Baselines: uniform and APoT grids, sorted 1-D k-means, grid-keeping fine-tunes, the comparison table."""

import copy
import sys

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from wfn_core.compare import baselines as B
from wfn_core.fixable import fixable_parameters
from wfn_core.metrics import summary
from wfn_core.training import evaluate


class Tiny(nn.Module):
    """Conv (with bias) + BatchNorm + Linear: weights, biases and BN parameters in a few hundred values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny()
    with torch.no_grad():  # heavier tails than the default init, and non-trivial BN parameters
        for p in model.parameters():
            p.copy_(torch.randn_like(p) ** 3 * 0.1 + (1.0 if p is model.bn.weight else 0.0))
    return model


def batches(n_batches: int = 4, batch: int = 16, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 1, 4, 4, generator=gen), torch.randint(0, 3, (batch,), generator=gen))
            for _ in range(n_batches)]


def values(model: nn.Module, include_bn: bool = False) -> list[tuple[str, torch.Tensor]]:
    return [(n, p.detach().clone()) for n, p in fixable_parameters(model, include_bn=include_bn)]


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_uniform_grid(w: torch.Tensor, scales: torch.Tensor, bits: int) -> None:
    """Every entry is s·q with the row's scale and an integer |q| ≤ qmax; ≤ 2^b − 1 values per row."""
    qmax = 2 ** (bits - 1) - 1
    rows, s = w.reshape(scales.numel(), -1), scales.reshape(-1, 1)
    q = torch.round(rows / s)
    assert torch.equal(rows, s * q), "a value is not s·q"
    assert q.abs().max() <= qmax
    for row in rows:
        assert row.unique().numel() <= 2**bits - 1


def ft(loader, epochs: int = 1, **kwargs):
    return {"train_loader": loader, "epochs": epochs, "lr": 0.05, **kwargs}


# ------------------------------------------------------------------------------------------- uniform
@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("include_bn", [False, True])
def test_uniform_per_tensor_values_lie_on_the_grid(bits, include_bn):
    model = tiny()
    q = B.uniform_quantize(model, bits, include_bn=include_bn)
    originals = dict(values(model, include_bn))
    for name, w in values(q, include_bn):
        scales = B.uniform_scales(originals[name], bits, "tensor")
        assert scales.shape == (1,)
        assert torch.equal(scales, originals[name].abs().max().reshape(1) / (2 ** (bits - 1) - 1))
        assert_uniform_grid(w, scales, bits)
        assert w.unique().numel() <= 2**bits - 1


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("mse_clip", [False, True])
def test_uniform_per_channel_has_one_scale_per_output_channel_and_biases_per_tensor(bits, mse_clip):
    model = tiny()
    q = B.uniform_quantize(model, bits, "channel", mse_clip=mse_clip)
    originals = dict(values(model))
    for name, w in values(q):
        scales = B.uniform_scales(originals[name], bits, "channel", mse_clip=mse_clip)
        assert scales.shape == ((w.shape[0],) if w.dim() > 1 else (1,)), name
        assert_uniform_grid(w, scales, bits)
    conv = dict(values(q))["conv.weight"]
    # the channels really have different scales: a channel's values are not all on another's grid
    assert len({float(s) for s in B.uniform_scales(originals["conv.weight"], bits, "channel")}) == conv.shape[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.floats(-100, 100, width=32, allow_subnormal=False), min_size=1, max_size=40),
    bits=st.integers(2, 16),
    channel=st.booleans(),
    mse_clip=st.booleans(),
)
def test_uniform_projection_is_on_the_grid_and_idempotent(data, bits, channel, mse_clip):
    w = torch.tensor(data, dtype=torch.float32)
    amax = float(w.abs().max())
    assume(amax == 0 or amax > 1e-20)
    if channel and w.numel() % 2 == 0:
        w = w.reshape(2, -1)
    scales = B.uniform_scales(w, bits, "channel" if channel else "tensor", mse_clip=mse_clip)
    out = B.uniform_project(w, scales, bits)
    assert torch.isfinite(out).all()
    if amax > 0:
        safe = torch.where(scales > 0, scales, torch.ones_like(scales))
        assert_uniform_grid(out, safe, bits)
    assert torch.equal(B.uniform_project(out, scales, bits), out)
    # nearest grid point: the error is at most half a step (inside the clip range)
    s = scales.reshape(-1, *([1] * (w.dim() - 1)))
    inside = w.abs() <= s * (2 ** (bits - 1) - 1)
    assert torch.all(((out - w).abs() <= s / 2 * (1 + 1e-6))[inside])


def test_all_zero_tensor_stays_zero():
    w = torch.zeros(3, 4)
    for g in B.GRANULARITIES:
        assert torch.equal(B.uniform_project(w, B.uniform_scales(w, 4, g), 4), w)
    assert torch.equal(B.apot_project(w, B.apot_scale(w, 4), 4), w)


def _squared_error(a: nn.Module, b: nn.Module) -> list[float]:
    return [float((x.double() - y.double()).square().sum()) for (_, x), (_, y) in zip(values(a), values(b))]


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_mse_clip_error_is_never_above_max_scaling(bits, granularity):
    model = tiny()
    plain = _squared_error(model, B.uniform_quantize(model, bits, granularity))
    searched = _squared_error(model, B.uniform_quantize(model, bits, granularity, mse_clip=True))
    assert all(s <= p for s, p in zip(searched, plain))
    assert sum(searched) < sum(plain)  # heavy tails: clipping pays
    apot_plain = _squared_error(model, B.apot_quantize(model, bits if bits > 2 else 3))
    apot_searched = _squared_error(model, B.apot_quantize(model, bits if bits > 2 else 3, mse_clip=True))
    assert all(s <= p for s, p in zip(apot_searched, apot_plain))


# ------------------------------------------------------------------------------------------- APoT
def test_apot_level_sets_are_exactly_the_documented_ones():
    assert B.apot_levels(2).tolist() == [0.0, 1.0]
    assert B.apot_levels(3).tolist() == [0.0, 0.25, 0.5, 1.0]
    assert B.apot_levels(4).tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0]
    five = B.apot_levels(5)
    sums = sorted({a + b for a in (0, 1, 2**-2, 2**-4) for b in (0, 2**-1, 2**-3, 2**-5)})
    assert five.tolist() == [s / 1.5 for s in sums] and five.numel() == 16
    for bits in B.APOT_BITS:
        levels = B.apot_levels(bits)
        assert levels.numel() == 2 ** (bits - 1) and levels.max() == 1 and levels.min() == 0
        assert torch.all(levels[1:] > levels[:-1])


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("mse_clip", [False, True])
def test_apot_values_are_signed_scaled_levels_nearest(bits, mse_clip):
    model = tiny()
    q = B.apot_quantize(model, bits, mse_clip=mse_clip)
    originals = dict(values(model))
    for name, w in values(q):
        alpha = B.apot_scale(originals[name], bits, mse_clip=mse_clip)
        grid = alpha * B.apot_levels(bits).float()
        signed = torch.cat([-grid, grid])
        assert torch.isin(w, signed).all(), name
        assert w.unique().numel() <= 2**bits - 1
        # nearest point of the grid (up to rounding at exact midpoints)
        best = (originals[name].reshape(-1, 1) - signed).abs().min(1).values
        assert torch.allclose((originals[name].reshape(-1) - w.reshape(-1)).abs(), best, atol=1e-7)
        if not mse_clip:
            assert torch.equal(alpha.reshape(()), originals[name].abs().max())


# ------------------------------------------------------------------------------------------- k-means
def dense_kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: N x k distances, argmin (ties to the lower centroid), means by bincount; empty keeps."""
    c = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)
    for _ in range(iters):
        labels = (x[:, None] - c[None, :]).abs().argmin(1)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.bincount(labels, weights=x, minlength=k)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    return c, (x[:, None] - c[None, :]).abs().argmin(1)


def test_kmeans_two_obvious_clusters():
    x = torch.tensor([10.2, 0.0, 10.0, 0.1, 0.2, 10.1], dtype=torch.float64)
    c, labels = B.kmeans_1d(x, 2)
    assert torch.allclose(c, torch.tensor([0.1, 10.1], dtype=torch.float64))
    assert labels.tolist() == [1, 0, 1, 0, 0, 1]


def test_kmeans_linear_initialisation_and_one_step_by_hand():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0])
    c0, labels0 = B.kmeans_1d(x, 3, max_iter=0)
    assert c0.tolist() == [0.0, 5.0, 10.0]  # evenly spaced from min to max
    assert labels0.tolist() == [0, 0, 0, 1, 2]  # midpoints 2.5 and 7.5
    c1, _ = B.kmeans_1d(x, 3, max_iter=1, until_stable=False)
    assert c1.tolist() == [1.0, 3.0, 10.0]
    # a value exactly on a midpoint goes to the lower centroid; an empty cluster keeps its centroid
    c, labels = B.kmeans_1d(torch.tensor([0.0, 1.0, 2.0]), 2, max_iter=0)
    assert labels.tolist() == [0, 0, 1]
    c, labels = B.kmeans_1d(torch.tensor([0.0, 0.0, 9.0, 10.0]), 4, max_iter=5, until_stable=False)
    assert c.tolist() == pytest.approx([0.0, 10 / 3, 20 / 3, 9.5]) and labels.tolist() == [0, 0, 3, 3]


@pytest.mark.parametrize("seed", range(6))
def test_sorted_lloyd_equals_the_dense_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(5, 400, (1,), generator=gen))
    x = torch.randn(n, generator=gen, dtype=torch.float64) ** 3  # skewed, heavy-tailed
    for k in (1, 2, 5, 16, n + 3):
        for iters in (1, 3, 25):
            c, labels = B.kmeans_1d(x, k, max_iter=iters, until_stable=False)
            c_ref, labels_ref = dense_kmeans(x, k, iters)
            assert torch.allclose(c, c_ref, rtol=1e-12, atol=1e-12), (k, iters)
            assert torch.equal(labels, labels_ref), (k, iters)
    for k in (2, 5, 16):  # stopping early at a fixed point changes nothing
        c_stable, _ = B.kmeans_1d(x, k, max_iter=200)
        assert torch.allclose(c_stable, dense_kmeans(x, k, 200)[0], rtol=1e-12, atol=1e-12)


def test_kmeans_on_float32_keeps_the_shape_and_handles_constants():
    w = torch.randn(3, 5, 2)
    c, labels = B.kmeans_1d(w, 4)
    assert labels.shape == w.shape and c.dtype == torch.float64 and c.numel() == 4
    c, labels = B.kmeans_1d(torch.full((7,), 0.5), 3)
    assert torch.all(c[labels] == 0.5)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_kmeans_share_counts_per_layer_and_per_network(k):
    model = tiny()
    layer = B.kmeans_share(model, k, "layer")
    for _, w in values(layer):
        assert w.unique().numel() <= k
    assert summary(layer)["unique"] > k  # different centroids per layer
    network = B.kmeans_share(model, k, "network", include_bn=True)
    assert summary(network, include_bn=True)["unique"] <= k
    # the values are the centroids of the reference clustering of the whole network
    flat = torch.cat([w.reshape(-1) for _, w in values(model, True)]).double()
    c, labels = dense_kmeans(flat, k, 100)
    got = torch.cat([w.reshape(-1) for _, w in values(network, True)])
    assert torch.allclose(got.double(), c[labels], atol=1e-6)


# ------------------------------------------------------------------------------------------- Conv1d models
def tiny_1d(seed: int = 0) -> nn.Sequential:
    """Conv1d (weights out x in x k) + BatchNorm1d + Linear, with heavy-tailed values as :func:`tiny`."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv1d(2, 5, 3, padding=1), nn.BatchNorm1d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6, 3)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) ** 3 * 0.1 + (1.0 if p is model[1].weight else 0.0))
    return model


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("mse_clip", [False, True])
def test_conv1d_uniform_per_channel_rows_are_output_channels(bits, mse_clip):
    model = tiny_1d()
    q = B.uniform_quantize(model, bits, "channel", mse_clip=mse_clip)
    w, orig = q[0].weight.detach(), model[0].weight.detach()
    scales = B.uniform_scales(orig, bits, "channel", mse_clip=mse_clip)
    assert w.shape == orig.shape == (5, 2, 3) and scales.shape == (5,)
    qmax = 2 ** (bits - 1) - 1
    for o in range(5):  # channel o: its own scale, its own (in x k) values, nothing of another channel
        if not mse_clip:
            assert scales[o] == orig[o].abs().max() / qmax
        expected = scales[o] * torch.clamp(torch.round(orig[o] / scales[o]), -qmax, qmax) + 0.0
        assert torch.equal(w[o], expected), o
        assert w[o].unique().numel() <= 2**bits - 1
    assert len({float(s) for s in scales}) == 5


@pytest.mark.parametrize("bits", [3, 4])
def test_conv1d_model_quantisers_keep_the_unique_count_within_bounds(bits):
    model, k = tiny_1d(), 2**bits - 1
    quantised = {
        "uniform tensor": B.uniform_quantize(model, bits, include_bn=True),
        "uniform channel": B.uniform_quantize(model, bits, "channel", mse_clip=True, include_bn=True),
        "apot": B.apot_quantize(model, bits, include_bn=True),
        "kmeans layer": B.kmeans_share(model, k, "layer", include_bn=True),
    }
    for method, q in quantised.items():
        got = values(q, include_bn=True)
        assert [n for n, _ in got] == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
        for name, w in got:  # at most 2^b − 1 values per tensor, or per output channel (a row of dim 0)
            for row in B._rows(w, per_channel=method == "uniform channel"):
                assert row.unique().numel() <= k, (method, name)
    network = B.kmeans_share(model, k, "network", include_bn=True)
    assert summary(network, include_bn=True)["unique"] <= k
    assert q[0].weight.shape == network[0].weight.shape == (5, 2, 3)
    x = torch.randn(4, 2, 6)
    assert all(torch.isfinite(m.eval()(x)).all() for m in (*quantised.values(), network))


# ------------------------------------------------------------------------------------------- fine-tuning
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_uniform_finetune_keeps_the_grid_of_the_initial_scales(granularity):
    model, loader = tiny(), batches()
    before = state(model)
    plain = B.uniform_quantize(model, 3, granularity)
    tuned = B.uniform_quantize(model, 3, granularity, finetune=ft(loader, 2))
    originals = dict(values(model))
    changed = False
    for (name, w), (_, w0) in zip(values(tuned), values(plain)):
        assert_uniform_grid(w, B.uniform_scales(originals[name], 3, granularity), 3)
        changed |= not torch.equal(w, w0)
    assert changed, "fine-tuning moved no value"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_apot_finetune_keeps_the_grid():
    model, loader = tiny(), batches()
    tuned = B.apot_quantize(model, 4, finetune=ft(loader, 2, optimizer="sgd"))
    originals = dict(values(model))
    for name, w in values(tuned):
        grid = B.apot_scale(originals[name], 4) * B.apot_levels(4).float()
        assert torch.isin(w, torch.cat([-grid, grid])).all() and w.unique().numel() <= 15
    assert not all(torch.equal(a, b) for (_, a), (_, b) in zip(values(tuned), values(B.apot_quantize(model, 4))))


def test_ste_step_is_taken_on_the_float_shadow():
    """One SGD step: the result is project(w_float − lr·grad at the quantised weights)."""
    model, loader, lr = tiny(), batches(1), 0.5
    plain = B.uniform_quantize(model, 4)
    plain.train()
    x, y = loader[0]
    nn.functional.cross_entropy(plain(x), y).backward()
    tuned = B.uniform_quantize(model, 4, finetune=ft(loader, 1, lr=lr, optimizer="sgd", momentum=0.0))
    originals = dict(values(model))
    for (name, w), (_, p) in zip(values(tuned), fixable_parameters(plain)):
        scales = B.uniform_scales(originals[name], 4)
        expected = B.uniform_project(originals[name] - lr * p.grad, scales, 4)
        assert torch.equal(w, expected), name


@pytest.mark.parametrize("scope", ["layer", "network"])
def test_kmeans_centroid_finetune_keeps_k_values_and_sums_gradients(scope):
    model, loader, lr, k = tiny(), batches(1), 0.1, 4
    plain = B.kmeans_share(model, k, scope)
    plain.train()
    x, y = loader[0]
    nn.functional.cross_entropy(plain(x), y).backward()
    tuned = B.kmeans_share(model, k, scope, finetune=ft(loader, 1, lr=lr, optimizer="sgd", momentum=0.0))
    pairs = list(zip(values(plain), values(tuned), fixable_parameters(plain)))
    if scope == "network":
        assert summary(tuned)["unique"] <= k
        old = torch.cat([a.reshape(-1) for (_, a), _, _ in pairs])
        new = torch.cat([b.reshape(-1) for _, (_, b), _ in pairs])
        grad = torch.cat([p.grad.reshape(-1) for _, _, (_, p) in pairs])
        groups = [(old, new, grad)]
    else:
        groups = [(a.reshape(-1), b.reshape(-1), p.grad.reshape(-1)) for (_, a), (_, b), (_, p) in pairs]
    for old, new, grad in groups:
        assert new.unique().numel() <= k
        for c in old.unique():  # every weight of a cluster moved by −lr·(sum of the cluster's gradients)
            members = old == c
            assert torch.allclose(new[members], c - lr * grad[members].sum(), atol=1e-6)
    # the model after fine-tuning is plain again: loads into the architecture, trains its weights
    fresh = Tiny()
    fresh.load_state_dict(tuned.state_dict())
    assert all(p.requires_grad for p in tuned.parameters())


def test_quantisers_leave_the_original_untouched():
    model, loader = tiny(), batches(2)
    before = state(model)
    outs = [
        B.uniform_quantize(model, 2, "channel", mse_clip=True, include_bn=True, finetune=ft(loader)),
        B.apot_quantize(model, 3, include_bn=True, finetune=ft(loader)),
        B.kmeans_share(model, 3, "network", include_bn=True, finetune=ft(loader)),
        B.kmeans_share(model, 3, "layer"),
    ]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(o is not model and o.conv.weight is not model.conv.weight for o in outs)


# ------------------------------------------------------------------------------------------- compare
def test_compare_rows_have_every_key_and_the_metrics_of_the_returned_model():
    model, loader = tiny(), batches(2)
    returned: dict[str, nn.Module] = {}

    def keep(name, fn):
        def run(m, finetune=None):
            out = fn(m, finetune=finetune) if finetune is not None else fn(m)
            returned[name] = out
            return out
        return run

    methods = B.default_methods(kmeans_k=5, uniform_bits=(2, 8), apot_bits=(3,))
    names = [n for n, _ in methods]
    assert names == ["fp32", "uniform 2-bit per tensor", "uniform 8-bit per tensor", "uniform 2-bit per channel",
                     "uniform 8-bit per channel", "APoT 3-bit", "k-means per layer k=5", "k-means per network k=5"]
    wrapped = [(n, keep(n, fn)) for n, fn in methods]
    wrapped[0] = ("fp32", lambda m: returned.setdefault("fp32", copy.deepcopy(m)))
    before = state(model)
    rows = B.compare(model, wrapped, loader, loader, finetune_epochs=1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert [r["method"] for r in rows] == names
    for row in rows:
        assert tuple(row) == B.TABLE_KEYS
        out = returned[row["method"]]
        s = summary(out)
        for key in ("n_params", "unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero",
                    "power_of_two_share"):
            assert row[key] == s[key], (row["method"], key)
        assert row["top1"] == evaluate(out, loader)["top1"]
        assert row["entropy_bound_bytes"] == s["n_params"] * s["entropy_bits"] / 8
        assert row["compressed_bytes"] is None or isinstance(row["compressed_bytes"], int)
        assert row["finetune_epochs"] == (0 if row["method"] == "fp32" else 1)
    assert rows[0]["unique"] == summary(model)["unique"]
    assert rows[-1]["unique"] <= 5
    table = B.format_table(rows)
    assert len(table.splitlines()) == len(rows) + 2 and "k-means per network k=5" in table


def test_default_methods_take_k_from_the_wfn_models_and_evaluate_them_as_they_are():
    a, b = tiny(1), tiny(2)
    wfn_a, wfn_b = B.kmeans_share(a, 6, "network"), B.kmeans_share(b, 9, "network")
    methods = dict(B.default_methods({"WFN a": wfn_a, "WFN b": wfn_b}, mse_clip=True))
    ka, kb = summary(wfn_a)["unique"], summary(wfn_b)["unique"]
    assert ka != kb and {n for n in methods if n.startswith("k-means")} == {
        f"k-means per {scope} k={k}" for scope in ("layer", "network") for k in (ka, kb)
    }
    assert "uniform 4-bit per channel (MSE clip)" in methods and "APoT 4-bit (MSE clip)" in methods
    rows = B.compare(tiny(), {"WFN a": methods["WFN a"]}, batches(1), batches(1), finetune_epochs=1)
    assert rows[0]["unique"] == summary(wfn_a)["unique"] and rows[0]["finetune_epochs"] == 0
    trained = dict(B.default_methods({"WFN a": wfn_a}, wfn_epochs=27))
    rows = B.compare(tiny(), {"WFN a": trained["WFN a"]}, batches(1), batches(1), finetune_epochs=1)
    assert rows[0]["finetune_epochs"] == 27  # the epochs WFN trained, not 0
    with pytest.raises(ValueError, match="wfn_epochs"):
        B.default_methods({"WFN a": wfn_a}, wfn_epochs=-1)


@pytest.mark.filterwarnings("ignore::wfn_core.pipeline.CollapseWarning")  # a toy model; only the epochs count here
def test_wfn_training_epochs_counts_the_epochs_run_wfn_trains(monkeypatch):
    import wfn_core.pipeline as P
    from wfn_core import preset, run_wfn

    calls = []
    real = P.train_epoch
    monkeypatch.setattr(P, "train_epoch", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    loader = [(x.flatten(1)[:, :4], y) for x, y in batches(1)]
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    for config in (preset("digits", fractions=(0.5, 0.8, 1.0), epochs_per_iteration=2, batch_size=16),
                   preset("digits", fractions=(0.5, 1.0), epochs_per_iteration=1, epochs_before=2, batch_size=16)):
        calls.clear()
        run_wfn(model, loader, loader, config, device="cpu")
        assert len(calls) == B.wfn_training_epochs(config)
    assert B.wfn_training_epochs(preset("digits")) == 27  # 9 trained iterations x 3 epochs


def test_format_table_rounds_accuracy_entropy_and_keeps_counts_exact():
    row = {"method": "m", "top1": 0.98765, "n_params": 10, "unique": 123456, "unique_nonzero": 7,
           "entropy_bits": 2.34567, "entropy_bits_nonzero": 1.005, "power_of_two_share": 0.5,
           "compressed_bytes": None, "entropy_bound_bytes": 2.9, "finetune_epochs": 3}
    line = B.format_table([row]).splitlines()[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["m", "98.8", "123456", "7", "2.35", "1.00", "50.0", "n/a", "3", "3"]
    assert B.format_table([row]).splitlines()[0].rstrip(" |").endswith("epochs trained")


def test_compressed_bytes_is_none_without_an_export_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "wfn_core.compare.export", None)
    assert B.compressed_bytes(tiny()) is None


def test_digits_8_bit_keeps_the_accuracy_and_kmeans_network_has_k_values():
    from wfn_core.data import digits
    from wfn_core.models import load_pretrained_digits

    model = load_pretrained_digits()
    _, test_loader = digits(batch_size=512)
    fp32 = evaluate(model, test_loader)["top1"]
    assert evaluate(B.uniform_quantize(model, 8, "channel"), test_loader)["top1"] >= fp32 - 0.01
    assert summary(B.kmeans_share(model, 20, "network"))["unique"] <= 20


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: B.uniform_quantize(m, 1), r"bits=1 is not allowed: it must be an integer in \[2, 16\]"),
        (lambda m: B.uniform_quantize(m, 17), r"bits=17 is not allowed: it must be an integer in \[2, 16\]"),
        (lambda m: B.uniform_quantize(m, 4.0), r"bits=4.0 .*integer"),
        (lambda m: B.uniform_quantize(m, True), r"bits=True"),
        (lambda m: B.uniform_quantize(m, 4, "row"), r"granularity='row' .*'tensor', 'channel'"),
        (lambda m: B.apot_quantize(m, 6), r"bits=6 .*2, 3, 4, 5"),
        (lambda m: B.apot_quantize(m, 1), r"bits=1 .*2, 3, 4, 5"),
        (lambda m: B.kmeans_share(m, 0), r"k=0 .*integer >= 1"),
        (lambda m: B.kmeans_share(m, 2.5), r"k=2.5 .*integer >= 1"),
        (lambda m: B.kmeans_share(m, 4, "global"), r"scope='global' .*'layer', 'network'"),
        (lambda m: B.uniform_quantize(m, 4, finetune={"epochs": 1}),
         r"finetune has no 'train_loader': it must give train_loader and epochs"),
        (lambda m: B.uniform_quantize(m, 4, finetune={"train_loader": [], "epochs": 1, "lrate": 1}), r"lrate"),
        (lambda m: B.apot_quantize(m, 4, finetune={"train_loader": [], "epochs": -1}), r"epochs=-1"),
        (lambda m: B.kmeans_share(m, 4, finetune={"train_loader": [], "epochs": 1, "optimizer": "lbfgs"}),
         r"optimizer='lbfgs' .*'adam', 'sgd'"),
        (lambda m: B.compare(m, [("a", copy.deepcopy), ("a", copy.deepcopy)], [], []), r"distinct"),
        (lambda m: B.default_methods(kmeans_k=0), r"k=0"),
    ],
)
def test_bad_input_is_refused_with_the_value_and_what_is_allowed(call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny())


def test_a_parametrised_model_is_refused():
    from wfn_core.freezing import WeightFixer

    model = tiny()
    WeightFixer(model)
    with pytest.raises(ValueError, match="parametrised"):
        B.uniform_quantize(model, 4)


def test_paper_claim_picks_the_most_accurate_per_layer_4_bit_row():
    from wfn_core.compare.baselines import paper_claim

    def row(method, top1, unique, entropy):
        return {"method": method, "top1": top1, "unique_nonzero": unique, "entropy_bits_nonzero": entropy}

    rows = [row("uniform 4-bit per tensor", 0.98, 90, 4.4), row("APoT 4-bit", 0.99, 80, 4.8),
            row("uniform 4-bit per channel", 0.995, 2700, 11.0), row("WFN δ=0.025", 0.99, 20, 2.4)]
    claim = paper_claim(rows, "WFN δ=0.025")
    assert claim["baseline"] == "APoT 4-bit"  # per channel is not per layer
    assert claim["unique_ratio"] == 4.0 and claim["entropy_ratio"] == pytest.approx(2.0)
    assert claim["wfn_at_least_as_accurate"]
    with pytest.raises(ValueError, match="wfn_method=.* is not allowed: it must be the name of a row: uniform"):
        paper_claim(rows, "WFN δ=0.5")


def test_comparison_figure_claims_say_what_the_titles_say():
    from wfn_core.course.checks import comparison_figure_claims

    def row(method, top1, nonzero, h):
        return {"method": method, "top1": top1, "unique": nonzero + 1, "unique_nonzero": nonzero,
                "entropy_bits_nonzero": h}

    rows = [row("fp32", 0.99, 48808, 15.6), row("uniform 2-bit per tensor", 0.97, 14, 2.72),
            row("uniform 3-bit per tensor", 0.99, 40, 3.30), row("APoT 4-bit", 0.99, 89, 4.89),
            row("k-means per network k=22", 0.99, 22, 3.80), row("uniform 2-bit per channel", 0.5, 3, 0.5),
            row("WFN δ=0.02", 0.98, 21, 2.63)]
    assert all(c.holds for c in comparison_figure_claims(rows, "WFN δ=0.02"))  # a method under 90 % is not drawn
    worse = rows[:-1] + [row("WFN δ=0.02", 0.98, 21, 3.0)]  # α = 0-like entropy: within 0.4 bit of 3-bit uniform
    assert [c.holds for c in comparison_figure_claims(worse, "WFN δ=0.02")] == [True, False]
    off = [dict(r, unique_nonzero=30) if r["method"].startswith("k-means") else r for r in rows]
    assert [c.holds for c in comparison_figure_claims(off, "WFN δ=0.02")] == [False, True]
