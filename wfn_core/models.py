"""Models: the small digits CNN, a 1-D ResNet for MNIST-1D, a CIFAR ResNet-18 and torchvision ImageNet ResNets.

The shipped digits checkpoint (``wfn_core/assets/digits_cnn.pt``, package data) is what the notebooks
start from; ``python -m wfn_core train-baseline --dataset digits --out wfn_core/assets/digits_cnn.pt`` remakes it.
The MNIST-1D ResNet's (``wfn_core/assets/mnist1d_resnet.pt``) is remade by
``python -m wfn_core train-baseline --dataset mnist1d --out wfn_core/assets/mnist1d_resnet.pt``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ._validation import check_choice, fail
from .data import ASSETS_DIR

__all__ = [
    "DigitsCNN",
    "MNIST1DResNet",
    "load_pretrained_mnist1d",
    "PRETRAINED_MNIST1D_PATH",
    "PRETRAINED_MNIST1D_SHA256",
    "MNIST1D_BASELINE_RECIPE",
    "cifar_resnet18",
    "torchvision_model",
    "load_pretrained_digits",
    "load_state_dict_file",
    "sha256_file",
    "PRETRAINED_DIGITS",
    "PRETRAINED_DIGITS_PATH",
    "PRETRAINED_DIGITS_SHA256",
    "DIGITS_BASELINE_RECIPE",
]

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")

#: The shipped pretrained digits model, and the SHA-256 it must have.
PRETRAINED_DIGITS = "digits_cnn.pt"
#: Where it is: inside the installed package, so a pip install without the repository finds it too.
PRETRAINED_DIGITS_PATH: Path = ASSETS_DIR / PRETRAINED_DIGITS
#: How it was made (``python -m wfn_core train-baseline``: :func:`wfn_core.training.train_baseline`).
DIGITS_BASELINE_RECIPE = {"epochs": 20, "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "seed": 0}
PRETRAINED_DIGITS_SHA256 = "68ac457981404eedfa3764461620dbd2c7e933978f3fb8eb8e2aa35888b13bbd"

#: The shipped pretrained MNIST-1D ResNet (package data too), its SHA-256, and how it was made
#: (``python -m wfn_core train-baseline --dataset mnist1d``, one thread, on the training split only).
PRETRAINED_MNIST1D = "mnist1d_resnet.pt"
PRETRAINED_MNIST1D_PATH: Path = ASSETS_DIR / PRETRAINED_MNIST1D
MNIST1D_BASELINE_RECIPE = {"epochs": 15, "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 128, "seed": 0}
PRETRAINED_MNIST1D_SHA256 = "323f0be4933880b8deeb6eb5cf69fe23c9e5dc868918f5b81129236400a48c17"


class DigitsCNN(nn.Module):
    """A small conv + batch-norm + linear network for 8x8 digits (about 49k parameters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, 16),
            *block(16, 32),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            *block(32, 64),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 2 * 2, 96), nn.ReLU(), nn.Linear(96, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _Block1d(nn.Module):
    """A 1-D basic residual block: two 3-tap convolutions with batch norm, and a 1x1 projection on the shortcut
    where the length halves or the width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class MNIST1DResNet(nn.Module):
    """A ResNet for MNIST-1D's ``(N, 1, 40)`` signals (about 136k parameters, 22 weight tensors).

    A 5-tap stem, then three stages of ``blocks`` basic blocks at widths 32, 48 and 64 (the last two halve the
    length: 40 -> 20 -> 10), global average pooling and a linear classifier. Deep on purpose: with 22 weight
    tensors, per-layer codebooks have room to hold many more distinct values than one codebook for the network.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (32, 48, 64), blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, widths[0], 5, padding=2, bias=False), nn.BatchNorm1d(widths[0]),
                                  nn.ReLU())
        layers: list[nn.Module] = []
        c_in = widths[0]
        for stage, width in enumerate(widths):
            for b in range(blocks):
                layers.append(_Block1d(c_in, width, stride=2 if stage > 0 and b == 0 else 1))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean(dim=-1))


def cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 adapted to 32x32 inputs: a 3x3 stride-1 stem and no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a ``state_dict`` saved with ``torch.save`` (also accepts ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrappers), on the CPU and without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted or not a torch file
        raise ValueError(f"could not read weights from {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors)")
    return obj


def torchvision_model(name: str, weights: str | Path | None = None, num_classes: int = 1000) -> nn.Module:
    """A torchvision ResNet (``resnet18``, ``resnet34`` or ``resnet50``).

    ``weights`` is ``None`` (random init), a local ``state_dict`` path, or a torchvision weights name
    (``"IMAGENET1K_V1"``, ``"DEFAULT"`` or ``"ResNet18_Weights.IMAGENET1K_V1"``). A weights name
    downloads into torch's hub cache unless already there, so it needs a network the first time.
    """
    import torchvision.models as tvm

    check_choice("name", name, TORCHVISION_RESNETS)
    builder = getattr(tvm, name)
    if weights is None:
        return builder(weights=None, num_classes=num_classes)
    path = Path(weights)
    if path.suffix in {".pt", ".pth", ".bin"} or path.exists():
        model = builder(weights=None, num_classes=num_classes)
        model.load_state_dict(load_state_dict_file(path))
        return model
    enum = tvm.get_model_weights(name)
    short = str(weights).split(".")[-1]
    if short not in enum.__members__:
        allowed = ", ".join(enum.__members__)
        raise fail("weights", weights, f"None, a local state_dict file, or a {enum.__name__} name: {allowed}")
    if num_classes != 1000:
        raise fail("num_classes", num_classes, "1000 with pretrained ImageNet weights")
    try:
        return builder(weights=enum[short])
    except OSError as exc:  # URLError is an OSError
        raise RuntimeError(
            f"could not fetch torchvision weights {enum.__name__}.{short} (offline?): {exc}. "
            "Download them once where there is a network, or pass a local state_dict path."
        ) from exc


def _load_pretrained(path: str | Path | None, default: Path, sha256: str, dataset: str, build: type[nn.Module],
                     verify: bool) -> nn.Module:
    """A shipped checkpoint (``default``, SHA-256 ``sha256`` checked when ``verify``) or ``path``, loaded into
    ``build()``, in eval mode; ``dataset`` names the train-baseline command that remakes it."""
    path = Path(path) if path is not None else default
    remake = f"`python -m wfn_core train-baseline --dataset {dataset} --out {path}`"
    if not path.is_file():
        raise FileNotFoundError(f"pretrained {dataset} model not found at {path}; remake it with {remake}")
    if verify and path.name == default.name:
        actual = sha256_file(path)
        if actual != sha256:
            raise ValueError(
                f"{path} has SHA-256 {actual}, expected {sha256}: the file is corrupted "
                "or was remade (a retrained file is bit-identical only on the same CPU kernels and thread count); "
                f"remake it with {remake}, or pass verify=False to load it anyway"
            )
    model = build()
    model.load_state_dict(load_state_dict_file(path))
    return model.eval()


def load_pretrained_mnist1d(path: str | Path | None = None, verify: bool = True) -> MNIST1DResNet:
    """The shipped pretrained :class:`MNIST1DResNet`, in eval mode; its SHA-256 is checked on load."""
    return _load_pretrained(path, PRETRAINED_MNIST1D_PATH, PRETRAINED_MNIST1D_SHA256, "mnist1d", MNIST1DResNet,
                            verify)  # type: ignore[return-value]


def load_pretrained_digits(path: str | Path | None = None, verify: bool = True) -> DigitsCNN:
    """The shipped pretrained :class:`DigitsCNN`, in eval mode; its SHA-256 is checked on load."""
    return _load_pretrained(path, PRETRAINED_DIGITS_PATH, PRETRAINED_DIGITS_SHA256, "digits", DigitsCNN,
                            verify)  # type: ignore[return-value]
