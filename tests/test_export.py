"""Compressed export: bit-exact round trips, size against the entropy bound, refusal of bad files."""

import copy
import hashlib
import struct
import warnings

import pytest
import torch

from wfn_core.centres import candidate_centres
from wfn_core.cli import write_run_outputs
from wfn_core.clustering import cluster
from wfn_core.compare.export import (
    FORMAT_VERSION,
    MAGIC,
    CodebookWarning,
    CompressedFileError,
    export_cli,
    export_run,
    load_compressed,
    read_manifest,
    save_compressed,
)
from wfn_core.config import preset
from wfn_core.data import digits
from wfn_core.fixable import fixable_parameters
from wfn_core.freezing import WeightFixer
from wfn_core.metrics import entropy_bits
from wfn_core.models import DigitsCNN, cifar_resnet18, load_pretrained_digits
from wfn_core.pipeline import run_wfn


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, so that equality is bit equality (-0.0 != 0.0, NaN payloads)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def assert_bit_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and sa[name].shape == sb[name].shape, name
        assert torch.equal(_bits(sa[name]), _bits(sb[name])), name


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(_bits(v), _bits(before[k])), k


@pytest.fixture(scope="module")
def wfn_run(tmp_path_factory):
    """A short WFN run of the digits preset, written as a finished run directory."""
    run_dir = tmp_path_factory.mktemp("run")
    config = preset("digits", fractions=(0.5, 1.0), epochs_per_iteration=1)
    result = run_wfn(load_pretrained_digits(), *digits(), config, checkpoint_dir=run_dir, device="cpu")
    write_run_outputs(result, run_dir, seconds=0.0)
    return result, run_dir


@pytest.fixture(scope="module")
def saved(wfn_run, tmp_path_factory):
    result, _ = wfn_run
    path = tmp_path_factory.mktemp("export") / "digits.wfnz"
    report = save_compressed(result.model, path)
    return path, report, result


def _fixed_digits(include_bn: bool, seed: int = 0) -> DigitsCNN:
    """A DigitsCNN with every fixable value (BN γ/β too when include_bn) on WFN centres, random BN stats."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(123)
    fixer = WeightFixer(model, include_bn=include_bn)
    fixer.apply(cluster(fixer.flat_values(), 1.0, 0.05))
    return fixer.plain_model()


# ------------------------------------------------------------------------------ round trips
def test_digits_wfn_round_trip_is_bit_exact(saved):
    path, _, result = saved
    restored = load_compressed(path, DigitsCNN())
    assert_bit_equal(restored, result.model)
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(restored.eval()(x), result.model.eval()(x))


def test_include_bn_round_trip_through_a_fixer(tmp_path):
    plain = _fixed_digits(include_bn=True)
    names = {n for n, _ in fixable_parameters(plain, include_bn=True)}
    fixer = WeightFixer(copy.deepcopy(plain), include_bn=True)  # nothing applied: it holds the values as they are
    report = save_compressed(fixer.model, tmp_path / "bn.wfnz", fixer)
    assert report["include_bn"] is True
    coded = {t["name"] for t in read_manifest(tmp_path / "bn.wfnz")["tensors"] if t["coded"]}
    assert coded == names
    assert "features.1.weight" in coded and "features.1.running_mean" not in coded
    restored = load_compressed(tmp_path / "bn.wfnz", DigitsCNN())
    assert_bit_equal(restored, plain)
    assert int(restored.features[1].num_batches_tracked) == 123


def test_include_bn_flag_without_fixer_and_contradiction(tmp_path):
    plain = _fixed_digits(include_bn=True, seed=1)
    report = save_compressed(plain, tmp_path / "a.wfnz", include_bn=True)
    assert report["n_symbols"] == sum(p.numel() for _, p in fixable_parameters(plain, include_bn=True))
    assert_bit_equal(load_compressed(tmp_path / "a.wfnz", DigitsCNN()), plain)
    fixer = WeightFixer(DigitsCNN(), include_bn=False)
    with pytest.raises(ValueError, match=r"include_bn=True is not allowed: it must be None or False"):
        save_compressed(fixer.model, tmp_path / "b.wfnz", fixer, include_bn=True)
    with pytest.raises(ValueError, match="parametrised"):
        save_compressed(fixer.model, tmp_path / "b.wfnz")


def test_single_unique_value_and_signed_zeros(tmp_path):
    model = DigitsCNN()
    with torch.no_grad():
        for _, p in fixable_parameters(model):
            p.fill_(0.25)
    report = save_compressed(model, tmp_path / "one.wfnz")
    assert report["unique"] == 1 and report["stream_bytes"] == 0 and report["entropy_bits"] == 0.0
    assert report["ratio"] == 1.0
    assert_bit_equal(load_compressed(tmp_path / "one.wfnz", DigitsCNN()), model)

    with torch.no_grad():  # -0.0 and 0.0 are distinct symbols: the round trip keeps the sign bit
        for _, p in fixable_parameters(model):
            p.copy_(torch.where(torch.rand_like(p) < 0.5, torch.tensor(-0.0), torch.tensor(0.0)))
    report = save_compressed(model, tmp_path / "zeros.wfnz")
    assert report["unique"] == 2
    assert_bit_equal(load_compressed(tmp_path / "zeros.wfnz", DigitsCNN()), model)


def test_non_float32_fixable_tensors_round_trip(tmp_path):
    for dtype in (torch.float64, torch.float16):
        model = _fixed_digits(include_bn=False, seed=2).to(dtype)
        save_compressed(model, tmp_path / "m.wfnz")
        expected = "float64" if dtype == torch.float64 else "float32"
        assert read_manifest(tmp_path / "m.wfnz")["codebook_dtype"] == expected
        assert_bit_equal(load_compressed(tmp_path / "m.wfnz", DigitsCNN().to(dtype)), model)


def test_unfixed_model_with_too_many_values_is_refused(tmp_path, monkeypatch):
    from wfn_core.compare import export

    monkeypatch.setattr(export, "MAX_SYMBOLS", 1000)
    with pytest.raises(ValueError, match="not weight-fixed"):
        save_compressed(DigitsCNN(), tmp_path / "x.wfnz")
    assert not (tmp_path / "x.wfnz").exists()


def test_never_fixed_model_warns_and_is_still_written(tmp_path):
    model = DigitsCNN()  # fresh initialisation: every weight its own value, no shared codebook
    unique = torch.unique(torch.cat([p.detach().reshape(-1) for _, p in fixable_parameters(model)])).numel()
    match = (rf"hold {unique} distinct values .* bytes, \d+\.\d\dx the fp32 state_dict \(\d+ bytes\); it was written "
             r"all the same\. Run WFN first \(wfn_core\.run_wfn\) or another quantiser: the format pays off when the "
             r"weights share a small codebook")
    with pytest.warns(CodebookWarning, match=match):
        report = save_compressed(model, tmp_path / "plain.wfnz")
    assert issubclass(CodebookWarning, UserWarning)
    assert report["unique"] == unique and report["bytes"] >= report["fp32_state_dict_bytes"]
    assert report["bytes"] == (tmp_path / "plain.wfnz").stat().st_size
    assert_bit_equal(load_compressed(tmp_path / "plain.wfnz", DigitsCNN()), model)


@pytest.mark.parametrize("include_bn", [False, True])
def test_weight_fixed_model_does_not_warn(tmp_path, include_bn):
    plain = _fixed_digits(include_bn=include_bn, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CodebookWarning)
        report = save_compressed(plain, tmp_path / "fixed.wfnz", include_bn=include_bn)
    assert report["bytes"] < report["fp32_state_dict_bytes"]


def _conv1d_model() -> torch.nn.Sequential:
    """A small 1-D CNN (MNIST-1D style): 3-D conv weights (out, in, k) and BatchNorm1d."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv1d(1, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Conv1d(16, 32, 3, stride=2), nn.BatchNorm1d(32), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 10),
    )


@pytest.mark.parametrize("include_bn", [False, True])
def test_conv1d_batchnorm1d_model_round_trips_bit_exactly(tmp_path, include_bn):
    torch.manual_seed(0)
    model = _conv1d_model()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(7)
    fixer = WeightFixer(model, include_bn=include_bn)
    fixer.apply(cluster(fixer.flat_values(), 1.0, 0.05))
    plain = fixer.plain_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CodebookWarning)  # a weight-fixed Conv1d model is smaller than fp32
        report = save_compressed(plain, tmp_path / "c1.wfnz", include_bn=include_bn)
    fixable = dict(fixable_parameters(plain, include_bn=include_bn))
    assert report["n_symbols"] == sum(p.numel() for p in fixable.values())
    tensors = {t["name"]: t for t in read_manifest(tmp_path / "c1.wfnz")["tensors"]}
    assert tensors["0.weight"]["shape"] == [16, 1, 5] and tensors["3.weight"]["shape"] == [32, 16, 3]
    assert {n for n, t in tensors.items() if t["coded"]} == set(fixable)
    assert tensors["1.weight"]["coded"] is include_bn and not tensors["1.running_mean"]["coded"]
    restored = load_compressed(tmp_path / "c1.wfnz", _conv1d_model())  # a fresh model: other random values
    assert_bit_equal(restored, plain)
    x = torch.randn(4, 1, 40)
    assert torch.equal(restored.eval()(x), plain.eval()(x))


# ------------------------------------------------------------------------------ size report
def test_digits_size_report_reaches_the_bound(saved):
    path, report, result = saved
    n = sum(p.numel() for _, p in fixable_parameters(result.model))
    h = entropy_bits(result.flat_values())  # the metrics module's entropy (no -0.0 in a WFN model)
    assert report["bytes"] == path.stat().st_size
    assert report["n_symbols"] == n
    assert report["entropy_bits"] == pytest.approx(h, abs=1e-12)
    assert report["table_bytes"] == 8 * report["unique"]  # float32 codebook + uint32 frequencies
    assert report["bound_bytes"] == pytest.approx(n * h / 8 + report["table_bytes"])
    assert report["fixable_bytes"] == report["stream_bytes"] + report["table_bytes"]
    assert report["bytes"] == report["fixable_bytes"] + report["raw_bytes"] + report["header_bytes"]
    assert 1.0 <= report["ratio"] <= 1.01  # measured: about 1.0001
    assert report["ratio_to_fp32"] < 0.25


def _synthetic_resnet18(n_values: int = 30, seed: int = 0) -> torch.nn.Module:
    """cifar_resnet18 with every conv/linear value drawn from ~30 APoT centres with a skewed (Zipf) law."""
    gen = torch.Generator().manual_seed(seed)
    centres = candidate_centres(0.5, 0.05, 1)
    pick = torch.randperm(centres.numel(), generator=gen)[:n_values]
    values = centres[pick].to(torch.float32)
    probs = 1.0 / torch.arange(1, n_values + 1, dtype=torch.float64) ** 1.3
    model = cifar_resnet18()
    with torch.no_grad():
        for _, p in fixable_parameters(model):
            p.copy_(values[torch.multinomial(probs, p.numel(), replacement=True, generator=gen)].view_as(p))
    return model


@pytest.mark.slow
def test_resnet18_sized_synthetic_reaches_the_bound(tmp_path):
    model = _synthetic_resnet18()
    report = save_compressed(model, tmp_path / "r18.wfnz")
    assert report["n_symbols"] > 11_000_000 and report["unique"] == 30
    assert 1.0 <= report["ratio"] <= 1.01  # measured: about 1.00001
    restored = load_compressed(tmp_path / "r18.wfnz", cifar_resnet18())
    assert_bit_equal(restored, model)


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("where", ["magic", "manifest", "stream", "raw", "checksum"])
def test_corrupted_byte_is_refused_and_model_unchanged(saved, tmp_path, where):
    path, report, _ = saved
    data = bytearray(path.read_bytes())
    header_len = struct.unpack_from("<I", data, 6)[0]
    offset = {
        "magic": 0, "manifest": 10 + header_len // 2,
        "stream": 10 + header_len + report["table_bytes"] + report["stream_bytes"] // 2,
        "raw": len(data) - 32 - report["raw_bytes"] // 2, "checksum": len(data) - 1,
    }[where]
    data[offset] ^= 0x10
    (tmp_path / "bad.wfnz").write_bytes(bytes(data))
    model = DigitsCNN()
    before = snapshot(model)
    with pytest.raises(CompressedFileError, match="checksum|magic"):
        load_compressed(tmp_path / "bad.wfnz", model)
    assert_unchanged(model, before)


@pytest.mark.parametrize("keep", [0, 2, 9, 100, 0.5, -1])
def test_truncated_file_is_refused(saved, tmp_path, keep):
    path, _, _ = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    (tmp_path / "cut.wfnz").write_bytes(data[:n])
    model = DigitsCNN()
    before = snapshot(model)
    with pytest.raises(CompressedFileError, match="truncated|checksum|not a WFN"):
        load_compressed(tmp_path / "cut.wfnz", model)
    assert_unchanged(model, before)


def test_wrong_magic_is_refused(saved, tmp_path):
    path, _, _ = saved
    (tmp_path / "m.wfnz").write_bytes(b"PK\x03\x04" + path.read_bytes()[4:])
    with pytest.raises(CompressedFileError, match="not a WFN compressed file"):
        load_compressed(tmp_path / "m.wfnz", DigitsCNN())


def test_wrong_version_is_refused_even_with_a_valid_checksum(saved, tmp_path):
    path, _, _ = saved
    body = bytearray(path.read_bytes()[:-32])
    struct.pack_into("<H", body, len(MAGIC), FORMAT_VERSION + 1)
    (tmp_path / "v.wfnz").write_bytes(bytes(body) + hashlib.sha256(body).digest())
    model = DigitsCNN()
    before = snapshot(model)
    with pytest.raises(CompressedFileError, match=f"unsupported format version {FORMAT_VERSION + 1}"):
        load_compressed(tmp_path / "v.wfnz", model)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DigitsCNN(num_classes=5), "classifier.3.weight has shape"),
        (lambda: DigitsCNN().double(), "dtype"),
        (lambda: torch.nn.Sequential(torch.nn.Linear(3, 2)), "does not match"),
        (lambda: WeightFixer(DigitsCNN()).model, "does not match"),
    ],
    ids=["num_classes", "dtype", "other", "parametrised"],
)
def test_architecture_mismatch_is_refused_and_model_unchanged(saved, make, match):
    path, _, _ = saved
    model = make()
    before = snapshot(model)
    with pytest.raises(CompressedFileError, match=match):
        load_compressed(path, model)
    assert_unchanged(model, before)
    assert issubclass(CompressedFileError, ValueError)


# ------------------------------------------------------------------------------ finished runs
def test_export_run_and_cli(wfn_run, tmp_path, capsys):
    result, run_dir = wfn_run
    report = export_run(run_dir, tmp_path / "run.wfnz")
    assert report["architecture"] == "DigitsCNN" and report["include_bn"] is False
    assert_bit_equal(load_compressed(tmp_path / "run.wfnz", DigitsCNN()), result.model)
    assert export_cli(run_dir, tmp_path / "cli.wfnz") == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "fp32" in out and str(tmp_path / "cli.wfnz") in out
    assert (tmp_path / "cli.wfnz").read_bytes() == (tmp_path / "run.wfnz").read_bytes()  # deterministic


def test_export_run_reads_include_bn_from_the_checkpoint(tmp_path):
    plain = _fixed_digits(include_bn=True, seed=3)
    torch.save(plain.state_dict(), tmp_path / "model.pt")
    torch.save({"config": {"include_bn": True}}, tmp_path / "wfn_checkpoint.pt")
    report = export_run(tmp_path, tmp_path / "out.wfnz")
    assert report["include_bn"] is True
    assert_bit_equal(load_compressed(tmp_path / "out.wfnz", DigitsCNN()), plain)


def test_export_run_refuses_a_folder_without_a_model_or_an_unknown_architecture(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        export_run(tmp_path, tmp_path / "x.wfnz")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="no known architecture"):
        export_run(tmp_path, tmp_path / "x.wfnz")
    report = export_run(tmp_path, tmp_path / "x.wfnz", model=torch.nn.Linear(3, 2))  # explicit architecture
    assert report["architecture"] == "Linear"


def test_infer_architecture_recognises_the_mnist1d_resnet():
    from wfn_core.compare.export import infer_architecture
    from wfn_core.models import MNIST1DResNet

    name, model = infer_architecture(MNIST1DResNet().state_dict())
    assert name == "MNIST1DResNet" and isinstance(model, MNIST1DResNet)
