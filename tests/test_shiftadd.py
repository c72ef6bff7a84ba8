"""Multiply-free inference: shift-add layers match the float layers within the fixed-point rounding bound.

The bound (derived in ``wfn_core/compare/shiftadd.py``'s docstring) for output ``o`` with ``F`` fractional bits:
the input rounding moves each ``x_j`` by at most ``2^(−F−1)``, hence the output by at most
``2^(−F−1)·‖w_o‖₁``; the integer accumulation of ``±(x_q << shift)`` is exact; the bias (converted at the
accumulator scale, finer than ``2^−F``) and the single output rounding add at most ``2^(−F−1)`` each. So
``|shift-add − exact| ≤ 2^(−F−1)·(‖w_o‖₁ + 2)``. The reference is the float layer evaluated in float64
on the same inputs (its own rounding, ~1e-16 relative, is covered by a 1e-12 slack).
"""

import warnings

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from wfn_core.centres import apot_terms, candidate_centres
from wfn_core.compare.shiftadd import (
    ShiftAddLayer,
    convert_to_shift_add,
    count_operations,
    decompose,
    rounding_bound,
)
from wfn_core.config import preset
from wfn_core.data import digits
from wfn_core.models import load_pretrained_digits
from wfn_core.pipeline import run_wfn

SLACK = 1e-12


@pytest.fixture(scope="module")
def wfn_model():
    """The digits preset's WFN model after one clustering at 100% (every weight on an APoT centre)."""
    result = run_wfn(load_pretrained_digits(), *digits(), preset("digits", fractions=(1.0,)), device="cpu")
    return result.model.eval()


@pytest.fixture(scope="module")
def layer_inputs(wfn_model):
    """The real input of every Linear/Conv2d of the WFN model on a batch of test digits."""
    _, test = digits()
    x, _ = next(iter(test))
    inputs, handles = {}, []
    for name, m in wfn_model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            handles.append(m.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0])))
    with torch.no_grad():
        wfn_model(x[:32])
    for h in handles:
        h.remove()
    return x[:32], inputs


def _apot_weights(shape, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = candidate_centres(1.0, 0.03, 2).to(torch.float32)  # up to 3 terms each
    return centres[torch.randint(0, centres.numel(), shape, generator=gen)]


def _check_within_bound(layer: nn.Module, x: torch.Tensor, frac_bits: int) -> float:
    got = ShiftAddLayer(layer, frac_bits=frac_bits)(x.to(torch.float64))
    ref = layer.to(torch.float64)(x.to(torch.float64)).detach()
    layer.to(torch.float32)
    bound = rounding_bound(layer, frac_bits)
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):  # one bound per output channel, broadcast over (N,) and positions
        bound = bound.view(-1, *[1] * (layer.weight.dim() - 2))
    err = (got - ref).abs()
    assert got.shape == ref.shape and got.dtype == torch.float64
    assert bool((err <= bound + SLACK).all()), f"max error {err.max().item()} > bound {bound.max().item()}"
    return err.max().item()


# ------------------------------------------------------------------------------ accuracy
@pytest.mark.parametrize("frac_bits", [8, 16, 24])
def test_digits_wfn_layers_match_float_within_the_bound(wfn_model, layer_inputs, frac_bits):
    _, inputs = layer_inputs
    for name, layer in wfn_model.named_modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            err = _check_within_bound(layer, inputs[name], frac_bits)
            assert err < 2.0 ** (-frac_bits + 7), name  # and the error really shrinks with frac_bits


def test_whole_digits_network_runs_on_shift_add_layers(wfn_model, layer_inputs):
    x, _ = layer_inputs
    converted = convert_to_shift_add(wfn_model, frac_bits=16)
    assert sum(isinstance(m, ShiftAddLayer) for m in converted.modules()) == 5
    with torch.no_grad():
        a, b = wfn_model(x), converted(x)
    assert (a - b).abs().max() < 1e-2
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.95


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stride": 2, "padding": 1},
        {"stride": (2, 1), "padding": (0, 2), "dilation": 2},
        {"padding": "same", "groups": 2, "bias": False},
        {"padding": "valid"},
        {"kernel_size": 1, "stride": 3},
    ],
)
def test_conv2d_strides_paddings_dilations_groups(kwargs):
    kwargs = {"kernel_size": 3, **kwargs}
    conv = nn.Conv2d(4, 6, **kwargs)
    with torch.no_grad():
        conv.weight.copy_(_apot_weights(conv.weight.shape))
        if conv.bias is not None:
            conv.bias.uniform_(-1, 1)  # the bias need not be APoT: it is added in fixed point
    x = torch.randn(3, 4, 9, 11, generator=torch.Generator().manual_seed(1)) * 4
    _check_within_bound(conv, x, 16)


def test_linear_with_leading_dimensions_and_float32_output():
    lin = nn.Linear(7, 5)
    with torch.no_grad():
        lin.weight.copy_(_apot_weights(lin.weight.shape, seed=3))
    x = torch.randn(2, 3, 7)
    got = ShiftAddLayer(lin)(x)
    assert got.shape == (2, 3, 5) and got.dtype == torch.float32
    assert torch.allclose(got, lin(x), atol=1e-3)


# ------------------------------------------------------------------------------ decomposition
def test_decomposition_is_exact_and_minimal():
    w = _apot_weights((40, 30), seed=4)
    w[0, :3] = torch.tensor([0.0, -0.4375, 3.0])  # 0.4375 = 0.5 − 0.0625, 3 = 4 − 1
    plan = decompose(w)
    rebuilt = torch.zeros(40 * 30, dtype=torch.float64)
    term = torch.ldexp(torch.ones(plan.n_terms, dtype=torch.float64), (plan.shift + plan.exponent_floor).double())
    rebuilt.index_add_(0, plan.out_index * 30 + plan.in_index, torch.where(plan.negative, -term, term))
    assert torch.equal(rebuilt.view(40, 30), w.double())
    assert plan.n_terms == int(apot_terms(w).sum())  # NAF: the fewest signed power-of-two terms
    assert int(plan.shift.min()) >= 0


def test_non_apot_weights_are_refused_with_layer_and_value():
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)  # default init: ~8 terms per weight
    with pytest.raises(ValueError, match=r"fc1: weight \[0, 0\] = .* has \d+ signed power-of-two terms"):
        ShiftAddLayer(lin, name="fc1")
    with pytest.raises(ValueError, match="not short additive powers of two"):
        count_operations(nn.Sequential(lin))
    lin.weight.data.fill_(0.75)
    lin.weight.data[2, 5] = 0.1  # 0.1 has many terms
    with pytest.raises(ValueError, match=r"\[2, 5\] = 0.1"):
        ShiftAddLayer(lin)(torch.randn(2, 16))
    lin.weight.data[2, 5] = float("inf")
    with pytest.raises(ValueError, match="not finite"):
        ShiftAddLayer(lin)(torch.randn(2, 16))
    lin.weight.data[2, 5] = 0.4375  # 2 terms; refused only when max_terms=1
    with pytest.raises(ValueError, match="at most 1 allowed"):
        ShiftAddLayer(lin, max_terms=1)(torch.randn(2, 16))


def test_bad_arguments_are_refused():
    lin = nn.Linear(2, 1)
    lin.weight.data.fill_(0.5)
    with pytest.raises(ValueError, match=r"frac_bits=-1 is not allowed: it must be an integer in \[0, 52\]"):
        ShiftAddLayer(lin, frac_bits=-1)(torch.ones(1, 2))
    with pytest.raises(ValueError, match="finite"):
        ShiftAddLayer(lin)(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match=r"layer=.* is not allowed: it must be an nn.Linear, nn.Conv1d or nn.Conv2d"):
        ShiftAddLayer(nn.ReLU())
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")
    conv.weight.data.fill_(0.25)
    with pytest.raises(ValueError, match="padding_mode"):
        ShiftAddLayer(conv)(torch.ones(1, 1, 4, 4))


def test_unbatched_conv_input():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(_apot_weights(conv.weight.shape, seed=6))
    x = torch.randn(2, 5, 5, dtype=torch.float64)
    got = ShiftAddLayer(conv)(x)
    assert got.shape == (3, 5, 5)
    assert torch.allclose(got, conv.double()(x), atol=1e-3)


def test_overflow_is_refused():
    lin = nn.Linear(2, 1, bias=False)
    lin.weight.data.fill_(2.0**20)
    with pytest.raises(OverflowError):
        ShiftAddLayer(lin, frac_bits=30)(torch.full((1, 2), 1e6))


# ------------------------------------------------------------------------------ no multiplications
_FORBIDDEN = ("mul", "matmul", "mm", "bmm", "addmm", "conv", "linear", "einsum", "prod", "ldexp", "div", "pow", "dot")


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append((getattr(func, "__name__", str(func)), args))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind", ["linear", "conv", "conv1d"])
def test_integer_core_uses_only_shifts_and_additions(kind):
    from wfn_core.compare.shiftadd import _patches, to_fixed

    if kind == "linear":
        layer = nn.Linear(12, 5)
        x_q = to_fixed(torch.randn(4, 12), 16)
    elif kind == "conv":
        layer = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        x_q = to_fixed(torch.randn(2, 3, 7, 7), 16)
    else:
        layer = nn.Conv1d(3, 5, 3, stride=2, padding=1)
        x_q = to_fixed(torch.randn(2, 3, 11), 16)
    with torch.no_grad():
        layer.weight.copy_(_apot_weights(layer.weight.shape, seed=5))
    sa = ShiftAddLayer(layer)  # weight decomposition happens once, here
    with _Recorder() as rec:
        rows = x_q if kind == "linear" else _patches(layer, x_q)[0]
        y_q = sa._linear_fixed(rows)
    names = {name for name, _ in rec.calls}
    assert not {n for n in names if any(f in n.lower() for f in _FORBIDDEN)}, names
    assert {"bitwise_left_shift_", "scatter_add_"} <= names
    for _, args in rec.calls:  # every tensor the core touches is an integer (or index/bool) tensor
        for a in args:
            if isinstance(a, torch.Tensor):
                assert not a.is_floating_point()
    assert y_q.dtype == torch.int64


# ------------------------------------------------------------------------------ operation counts
def test_operation_counts_by_hand():
    lin = nn.Linear(3, 2)
    lin.weight.data = torch.tensor([[0.5, 0.0, -0.75], [1.0, 0.375, 0.0]])  # terms: 1, 0, 2 | 1, 2, 0
    conv = nn.Conv2d(1, 1, 2, bias=False)
    conv.weight.data = torch.tensor([[[[1.0, 0.0], [0.25, -3.0]]]])  # terms: 1, 0, 1, 2 (−3 = −4 + 1)

    ops = count_operations(nn.Sequential(lin))
    assert ops["layers"]["0"] == {
        "type": "Linear", "weights": 6, "nonzero_weights": 4, "terms": 6, "positions": 1,
        "multiplications": 6, "nonzero_multiplications": 4, "shift_adds": 6,
    }
    model = nn.Sequential(conv, nn.Flatten())
    with pytest.raises(ValueError, match="input_shape"):
        count_operations(model)
    ops = count_operations(model, input_shape=(1, 3, 3))  # a 2x2 output: 4 positions
    row = ops["layers"]["0"]
    keys = ("positions", "terms", "multiplications", "nonzero_multiplications", "shift_adds")
    assert tuple(row[k] for k in keys) == (4, 4, 16, 12, 16)
    assert (ops["multiplications"], ops["shift_adds"]) == (16, 16)
    assert ops["batchnorm_multiplications"] == 0
    head = nn.Linear(4, 3)
    head.weight.data = torch.full((3, 4), 0.5)  # one term each: decompose accepts it
    with_bn = nn.Sequential(conv, nn.BatchNorm2d(1), nn.Flatten(), head, nn.BatchNorm1d(3))
    assert count_operations(with_bn, input_shape=(1, 3, 3))["batchnorm_multiplications"] == 4 + 3  # stays float


def test_digits_operation_counts(wfn_model):
    ops = count_operations(wfn_model, input_shape=(1, 8, 8))
    assert list(ops["layers"]) == ["features.0", "features.3", "features.7", "classifier.1", "classifier.3"]
    # a float DigitsCNN does 9 216 + 294 912 + 294 912 + 24 576 + 960 multiplications per sample
    assert ops["multiplications"] == 624_576
    # its three BatchNorm layers stay float: 16·8·8 + 32·8·8 + 64·4·4 scalings per sample
    assert ops["batchnorm_multiplications"] == 1024 + 2048 + 1024
    assert ops["layers"]["features.7"]["positions"] == 16
    for name, row in ops["layers"].items():
        weight = wfn_model.get_submodule(name).weight
        assert row["terms"] == int(apot_terms(weight).sum())
        assert row["shift_adds"] == row["terms"] * row["positions"]
    assert ops["shift_adds"] == sum(r["shift_adds"] for r in ops["layers"].values())


# ------------------------------------------------------------------------------ Conv1d (the MNIST-1D track)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"stride": 2, "padding": 1},
        {"stride": 3, "padding": 2, "dilation": 2},
        {"padding": "same", "groups": 2, "bias": False},
        {"padding": "same", "kernel_size": 4, "dilation": 3},  # odd total padding: the extra unit goes right
        {"padding": "valid", "groups": 4},
        {"kernel_size": 1, "stride": 3},
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's own, about its copy
def test_conv1d_strides_paddings_dilations_groups(kwargs):
    kwargs = {"kernel_size": 3, **kwargs}
    conv = nn.Conv1d(4, 8, **kwargs)
    with torch.no_grad():
        conv.weight.copy_(_apot_weights(conv.weight.shape, seed=7))
        if conv.bias is not None:
            conv.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 23, generator=torch.Generator().manual_seed(2)) * 4
    _check_within_bound(conv, x, 16)


def test_unbatched_conv1d_input():
    conv = nn.Conv1d(2, 3, 3, padding=1, dilation=1)
    with torch.no_grad():
        conv.weight.copy_(_apot_weights(conv.weight.shape, seed=8))
    x = torch.randn(2, 9, dtype=torch.float64)
    got = ShiftAddLayer(conv)(x)
    assert got.shape == (3, 9)
    _check_within_bound(conv, x, 16)
    batched = ShiftAddLayer(conv)(x.unsqueeze(0))
    assert batched.shape == (1, 3, 9) and torch.equal(batched[0], got)


def test_conv1d_bad_layers_and_inputs_are_refused():
    conv = nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular")
    conv.weight.data.fill_(0.25)
    with pytest.raises(ValueError, match=r"layer.padding_mode='circular' is not allowed: it must be 'zeros'"):
        ShiftAddLayer(conv)
    conv = nn.Conv1d(2, 3, 3)
    conv.weight.data.fill_(0.25)
    layer = ShiftAddLayer(conv, name="conv1")
    for shape in [(4, 3, 9), (2, 2, 9, 9), (9,)]:  # wrong channels, an image, no channel axis: nn.Conv1d refuses all
        with pytest.raises(RuntimeError):
            conv(torch.ones(shape))
        with pytest.raises(ValueError, match=r"conv1: input of shape .* does not fit the layer; expected \(2, L\)"):
            layer(torch.ones(shape))
    with pytest.raises(ValueError, match=r"expected \(…, 3\)"):
        ShiftAddLayer(nn.Linear(3, 1).requires_grad_(False).apply(lambda m: m.weight.fill_(0.5)))(torch.ones(2, 4))


def test_conv1d_operation_counts_by_hand():
    conv = nn.Conv1d(1, 1, 3, bias=False)
    conv.weight.data = torch.tensor([[[0.5, 0.0, -3.0]]])  # terms: 1, 0, 2 (−3 = −4 + 1)
    head = nn.Linear(4, 3)
    head.weight.data = torch.full((3, 4), 0.5)  # one term each
    model = nn.Sequential(conv, nn.BatchNorm1d(1), nn.Flatten(), head)
    with pytest.raises(ValueError, match="input_shape"):
        count_operations(model)
    ops = count_operations(model, input_shape=(1, 6))  # length 6, kernel 3: 4 positions
    row = ops["layers"]["0"]
    assert row["type"] == "Conv1d"
    keys = ("weights", "nonzero_weights", "terms", "positions", "multiplications", "nonzero_multiplications",
            "shift_adds")
    assert tuple(row[k] for k in keys) == (3, 2, 3, 4, 12, 8, 12)
    assert (ops["multiplications"], ops["shift_adds"]) == (12 + 12, 12 + 12)
    assert ops["batchnorm_multiplications"] == 4  # BatchNorm1d over 1 channel x 4 positions stays float


def _apot_conv1d_model() -> nn.Sequential:
    """A small 1-D CNN (MNIST-1D style) with short APoT weights, any biases and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(),
        nn.Conv1d(6, 8, 3, stride=2, padding="valid", groups=2, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    with torch.no_grad():
        for i, m in enumerate(model):
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                m.weight.copy_(_apot_weights(m.weight.shape, seed=10 + i))
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_conv1d_model_converts_and_matches_the_float_model():
    model = _apot_conv1d_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left float that shift-add could run: no warning
        converted = convert_to_shift_add(model, frac_bits=16)
    shift_add = [m for m in converted.modules() if isinstance(m, ShiftAddLayer)]
    assert [m.name for m in shift_add] == ["0", "3", "8"]
    wrapped = {id(m.layer) for m in shift_add}
    assert all(id(m) in wrapped for m in converted.modules() if isinstance(m, (nn.Conv1d, nn.Linear)))
    assert sum(isinstance(m, nn.BatchNorm1d) for m in converted.modules()) == 2  # BatchNorm stays float
    x = torch.randn(16, 2, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = model(x), converted(x)
    assert a.shape == b.shape == (16, 4)
    assert (a - b).abs().max() < 1e-3
    assert torch.equal(a.argmax(1), b.argmax(1))
    ops = count_operations(model, input_shape=(2, 40))
    assert [ops["layers"][n]["positions"] for n in ("0", "3", "8")] == [40, 19, 1]


def test_other_convolutions_are_left_float_with_a_warning():
    lin = nn.Linear(4, 4)
    lin.weight.data.fill_(0.5)
    model = nn.Sequential(lin, nn.Conv3d(1, 1, 1), nn.ConvTranspose1d(1, 1, 2))
    match = r"2 convolution\(s\) stay float: 1 \(Conv3d\), 2 \(ConvTranspose1d\)"
    with pytest.warns(UserWarning, match=match):
        converted = convert_to_shift_add(model)
    assert isinstance(converted[0], ShiftAddLayer)
    assert type(converted[1]) is nn.Conv3d and type(converted[2]) is nn.ConvTranspose1d
    with pytest.warns(UserWarning, match=match + "; count_operations leaves them out of the counts"):
        assert list(count_operations(model)["layers"]) == ["0"]
    with pytest.warns(UserWarning, match=r"\(the model\) \(Conv3d\)"):
        assert type(convert_to_shift_add(nn.Conv3d(1, 1, 1))) is nn.Conv3d
