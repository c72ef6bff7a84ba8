import pytest
import torch

from wfn_core.data import digits
from wfn_core.models import (
    PRETRAINED_DIGITS_PATH,
    PRETRAINED_DIGITS_SHA256,
    DigitsCNN,
    cifar_resnet18,
    load_pretrained_digits,
    load_state_dict_file,
    sha256_file,
    torchvision_model,
)
from wfn_core.training import evaluate


def test_digits_cnn_size_and_shape():
    model = DigitsCNN()
    n = sum(p.numel() for p in model.parameters())
    assert 40_000 <= n <= 60_000
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_cifar_resnet18_keeps_32x32_resolution():
    model = cifar_resnet18().eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_model_from_local_state_dict(tmp_path, name):
    torch.manual_seed(0)
    ref = torchvision_model(name, num_classes=7)
    path = tmp_path / f"{name}.pt"
    torch.save(ref.state_dict(), path)
    model = torchvision_model(name, weights=path, num_classes=7)
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_torchvision_model_rejects_bad_names(tmp_path):
    with pytest.raises(ValueError, match="name='vgg16' is not allowed: it must be one of 'resnet18', 'resnet34'"):
        torchvision_model("vgg16")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        torchvision_model("resnet18", weights="NOT_A_WEIGHT_NAME")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not read weights"):
        torchvision_model("resnet18", weights=bad)


def test_pretrained_digits_checksum_and_accuracy():
    path = PRETRAINED_DIGITS_PATH
    assert sha256_file(path) == PRETRAINED_DIGITS_SHA256
    model = load_pretrained_digits()
    _, test_loader = digits()
    assert evaluate(model, test_loader, device="cpu")["top1"] >= 0.98


def test_pretrained_digits_refuses_a_corrupted_copy(tmp_path):
    copy = tmp_path / "digits_cnn.pt"
    data = bytearray((PRETRAINED_DIGITS_PATH).read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_pretrained_digits(copy)
    with pytest.raises(FileNotFoundError, match="train-baseline"):
        load_pretrained_digits(tmp_path / "missing" / "digits_cnn.pt")


def test_load_state_dict_file_unwraps_and_validates(tmp_path):
    sd = {"w": torch.ones(2)}
    torch.save({"state_dict": sd}, tmp_path / "a.pt")
    assert torch.equal(load_state_dict_file(tmp_path / "a.pt")["w"], sd["w"])
    torch.save([1, 2], tmp_path / "b.pt")
    with pytest.raises(ValueError, match="state_dict"):
        load_state_dict_file(tmp_path / "b.pt")
