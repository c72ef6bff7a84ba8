"""Data loaders for wfn: the embedded digits default and the real data sets through torchvision.

Every public loader returns ``(train_loader, test_loader)``; :func:`digits` can return the validation
split in place of the test split (``eval_split="val"``), which is where presets are chosen.

* :func:`digits` is the embedded default: scikit-learn's bundled 8x8 digits, so it never touches the
  network or the disk outside the installed packages.
* :func:`mnist1d` is the deeper track's data set: MNIST-1D (Greydanus, "Scaling down deep learning"),
  generated on this machine by the ``mnist1d`` package from templates it carries, never downloaded,
  and cached after the first call.
* :func:`cifar10` and :func:`imagenet` read the real data sets
  with :mod:`torchvision.datasets`, rooted at :data:`DATA_ROOT` (the repository's ``data/`` folder,
  or ``$WFN_DATA``) unless ``root`` is given. Nothing is downloaded unless the caller passes
  ``download=True`` (ImageNet cannot be downloaded at all). When a data set is missing a
  :class:`DatasetNotFoundError` says which paths were checked and how to get the data.

Shuffling is seeded: the training loader draws its order (and, with worker processes, the workers'
seeds) from a :class:`torch.Generator` seeded with ``seed``, so the same seed gives the same batches.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ._validation import check_bool, check_choice, check_int, fail

__all__ = [
    "DATA_ROOT",
    "REPO_DATA_DIR",
    "ASSETS_DIR",
    "DatasetNotFoundError",
    "DatasetCorruptedError",
    "data_root",
    "digits_arrays",
    "digits",
    "mnist1d_arrays",
    "mnist1d",
    "MNIST1D_FINGERPRINT",
    "cifar10",
    "imagenet",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: The repository's ``data/`` folder: the default root of the downloaded data sets in a checkout, unless
#: ``$WFN_DATA`` is set.
REPO_DATA_DIR: Path = Path(__file__).resolve().parent.parent / "data"

#: The files shipped inside the package (the digits checkpoint, the α × δ sweep): package data, so they are
#: found wherever the package is installed, with or without the repository around it.
ASSETS_DIR: Path = Path(__file__).resolve().parent / "assets"

#: Environment variable that moves the default root of the downloadable data sets.
DATA_ENV_VAR = "WFN_DATA"


def data_root() -> Path:
    """Default root for the real data sets: ``$WFN_DATA`` if set (read at call time), else the repository's
    ``data/`` when the package runs from its checkout, else ``data/`` in the working directory (a pip or
    Colab install: never inside site-packages)."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    in_checkout = (REPO_DATA_DIR.parent / "pyproject.toml").is_file()
    return REPO_DATA_DIR if in_checkout else Path.cwd() / "data"


#: Default data root as it was when the module was imported (``$WFN_DATA`` or the repository's ``data/``).
DATA_ROOT: Path = data_root()

# Per-channel statistics of the training sets (the values used throughout the literature).
CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)

#: Fraction of the digits data held out for testing, the fraction of the rest held out for validation
#: (choosing presets and thresholds), and the fixed seed of both splits.
DIGITS_TEST_FRACTION = 0.2
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
#: What ``digits(eval_split=...)`` accepts.
DIGITS_EVAL_SPLITS = ("test", "val")


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on disk where we looked; the message says where and how to get it."""


class DatasetCorruptedError(RuntimeError):
    """A data set's files are present but torchvision rejected them (e.g. failed checksum)."""


def _resolve_root(root: str | os.PathLike[str] | None, default: Path | None = None) -> Path:
    if root is None:
        return default if default is not None else data_root()
    if not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise fail("root", root, "a non-empty path (str or os.PathLike) or None")
    return Path(root).expanduser()


def _describe_missing(folder: Path, missing: list[str], expected: tuple[str, ...]) -> str:
    """Human-readable summary of which expected files are absent from ``folder``."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    if len(missing) == len(expected):
        return f"{folder} exists but none of these files is in it"
    return f"missing from {folder}: {', '.join(missing)}"


def _make_loaders(
    train_set: Dataset,
    test_set: Dataset,
    batch_size: int,
    test_batch_size: int | None,
    seed: int,
    num_workers: int,
) -> tuple[DataLoader, DataLoader]:
    """Training loader shuffled by a generator seeded with ``seed``; test loader in file order."""
    _validate_common(batch_size, test_batch_size, seed, num_workers)
    test_batch_size = batch_size if test_batch_size is None else test_batch_size
    generator = torch.Generator()
    generator.manual_seed(seed)
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available(),
        "persistent_workers": num_workers > 0,
    }
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator, **common)
    test_loader = DataLoader(test_set, batch_size=test_batch_size, shuffle=False, **common)
    return train_loader, test_loader


def _validate_common(batch_size: Any, test_batch_size: Any, seed: Any, num_workers: Any) -> None:
    """Check the loader arguments up front, before any file is touched."""
    check_int("batch_size", batch_size, low=1)
    if test_batch_size is not None:
        check_int("test_batch_size", test_batch_size, low=1)
    check_int("seed", seed, low=0, high=2**63 - 1)
    check_int("num_workers", num_workers, low=0)


# --------------------------------------------------------------------------- digits (embedded)


@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED
    )
    # The validation split comes out of the training part, so the test split is the one it always was.
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=DIGITS_VAL_FRACTION, stratify=y_rest, random_state=DIGITS_SPLIT_SEED
    )
    arrays = (x_train, y_train, x_val, y_val, x_test, y_test)
    for arr in arrays:
        arr.setflags(write=False)
    return arrays


def digits_arrays() -> tuple[torch.Tensor, ...]:
    """The fixed digits splits as fresh tensors ``(x_train, y_train, x_val, y_val, x_test, y_test)``.

    Images are float32 of shape ``(N, 1, 8, 8)`` in ``[0, 1]``; labels are int64 in ``0..9``.
    The splits are the same on every call and every machine: a stratified 80/20 train/test split
    (``random_state=0``), then a stratified 80/20 split of the training part into train and validation:
    1149 training, 288 validation and 360 test images (one test image is 0.28 accuracy points, one
    validation image 0.35).
    """
    return tuple(torch.tensor(a) for a in _digits_split())


def digits(
    batch_size: int = 64,
    seed: int = 0,
    num_workers: int = 0,
    test_batch_size: int | None = None,
    eval_split: str = "test",
) -> tuple[DataLoader, DataLoader]:
    """scikit-learn's bundled 8x8 digits: the embedded default data set (nothing is downloaded).

    Returns ``(train_loader, eval_loader)``. The training split never contains a validation or test image.

    Args:
        batch_size: training batch size (also the evaluation batch size unless ``test_batch_size`` is given).
        seed: seeds the training loader's shuffling only; the splits never change.
        num_workers: DataLoader worker processes (0 loads in the main process).
        test_batch_size: evaluation batch size (default: ``batch_size``).
        eval_split: ``"test"`` (report results) or ``"val"`` (choose settings: presets, thresholds, δ).
    """
    _validate_common(batch_size, test_batch_size, seed, num_workers)
    check_choice("eval_split", eval_split, DIGITS_EVAL_SPLITS)
    return _split_loaders(digits_arrays(), eval_split, batch_size, test_batch_size, seed, num_workers)


def _split_loaders(
    arrays: tuple[torch.Tensor, ...], eval_split: str, batch_size: int, test_batch_size: int | None, seed: int,
    num_workers: int,
) -> tuple[DataLoader, DataLoader]:
    """Loaders of fixed ``(x_train, y_train, x_val, y_val, x_test, y_test)`` splits: training, and the
    validation or test split."""
    x_train, y_train, x_val, y_val, x_test, y_test = arrays
    held_out = TensorDataset(x_test, y_test) if eval_split == "test" else TensorDataset(x_val, y_val)
    return _make_loaders(TensorDataset(x_train, y_train), held_out, batch_size, test_batch_size, seed, num_workers)


# --------------------------------------------------------------------------- MNIST-1D (generated)

#: Examples generated, and how they are split: train, then validation, then test (one test example is
#: 0.025 accuracy points, one validation example 0.025). The generator's own seed (42) and settings are the
#: package's defaults (``mnist1d.data.get_dataset_args``); only the number of examples changes.
MNIST1D_SPLITS: dict[str, int] = {"train": 12_000, "val": 4_000, "test": 4_000}
MNIST1D_EVAL_SPLITS = ("test", "val")
#: SHA-256 of the generated data (inputs rounded to 1e-5, then labels), as :func:`mnist1d_fingerprint` computes it,
#: with mnist1d 0.0.2.post1 (pinned in constraints.txt). A different generator gives a different data set: the
#: loader warns, since the shipped checkpoint and results were made on this one.
MNIST1D_FINGERPRINT = "ff6369b06bf2dd73f0261d6b2b2c1204e465ad3d5ff6493958b1d3024df823d0"
_MNIST1D_CACHE_VERSION = 1


class MNIST1DChangedWarning(UserWarning):
    """The installed ``mnist1d`` generated a data set other than the one the shipped results were made on."""


def mnist1d_cache_dir() -> Path:
    """``$WFN_CACHE/mnist1d``, else ``$XDG_CACHE_HOME/wfn/mnist1d``, else ``~/.cache/wfn/mnist1d``
    (read at call time)."""
    from .io import cache_dir

    return cache_dir("mnist1d")


def mnist1d_fingerprint(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of a data set: inputs rounded to 1e-5 (so the last float bits of another CPU's ``exp`` or
    interpolation do not count), then the labels."""
    import hashlib

    h = hashlib.sha256()
    h.update(np.round(np.asarray(x, dtype=np.float64) * 1e5).astype(np.int64).tobytes())
    h.update(np.asarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()


def _generate_mnist1d(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples from ``mnist1d.data.make_dataset`` (the generation path only: its ``get_dataset`` would
    download). It reseeds Python's and NumPy's global generators, so their states are put back afterwards."""
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the MNIST-1D data set is generated by the mnist1d package: pip install mnist1d"
        ) from exc
    args = get_dataset_args()
    args.num_samples, args.train_split = n, 1.0  # one pool; the split is ours (train, validation, test)
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 (mnist1d seeds the legacy global)
    try:
        generated = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return generated["x"].astype(np.float32), generated["y"].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _mnist1d_split() -> tuple[np.ndarray, ...]:
    from .io import atomic_torch_save

    n = sum(MNIST1D_SPLITS.values())
    path = mnist1d_cache_dir() / f"mnist1d_{n}_v{_MNIST1D_CACHE_VERSION}.pt"
    x = y = None
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            x, y = cached["x"].numpy(), cached["y"].numpy()
            if cached["fingerprint"] != mnist1d_fingerprint(x, y) or len(y) != n:
                x = y = None  # a damaged cache file: make it again
        except Exception:  # unreadable: make it again
            x = y = None
    if x is None:
        x, y = _generate_mnist1d(n)
        fingerprint = mnist1d_fingerprint(x, y)
        try:
            atomic_torch_save({"x": torch.from_numpy(x), "y": torch.from_numpy(y), "fingerprint": fingerprint}, path)
        except OSError:  # a read-only home still gets the data, only without the cache
            pass
    if mnist1d_fingerprint(x, y) != MNIST1D_FINGERPRINT:
        import warnings

        warnings.warn(
            f"the installed mnist1d generated a data set with fingerprint {mnist1d_fingerprint(x, y)[:12]}…, not "
            f"{MNIST1D_FINGERPRINT[:12]}… (mnist1d 0.0.2.post1): the shipped MNIST-1D checkpoint and results were "
            "made on the latter; install mnist1d==0.0.2.post1 to reproduce them", MNIST1DChangedWarning, stacklevel=3)
    x = x[:, None, :]  # (N, 1 channel, 40 positions), as nn.Conv1d takes it
    bounds = np.cumsum([0, *MNIST1D_SPLITS.values()])
    arrays: list[np.ndarray] = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        arrays += [x[lo:hi], y[lo:hi]]
    for arr in arrays:
        arr.setflags(write=False)
    return tuple(arrays)


def mnist1d_arrays() -> tuple[torch.Tensor, ...]:
    """The fixed MNIST-1D splits as fresh tensors ``(x_train, y_train, x_val, y_val, x_test, y_test)``.

    Inputs are float32 of shape ``(N, 1, 40)`` (standardised over the whole pool by the generator); labels are
    int64 in ``0..9``. 20,000 examples are generated with the ``mnist1d`` package's default settings and seed,
    already shuffled by it, and cut in order into 12,000 training, 4,000 validation and 4,000 test examples
    (one test example is 0.025 accuracy points). The first call generates them (a few seconds) and caches them
    in :func:`mnist1d_cache_dir`; later calls read the cache.
    """
    return tuple(torch.tensor(a) for a in _mnist1d_split())


def mnist1d(
    batch_size: int = 128,
    seed: int = 0,
    num_workers: int = 0,
    test_batch_size: int | None = None,
    eval_split: str = "test",
) -> tuple[DataLoader, DataLoader]:
    """MNIST-1D (:func:`mnist1d_arrays`): ``(train_loader, eval_loader)``, with the arguments of :func:`digits`
    (``eval_split="val"``: the validation split, where settings are chosen; ``"test"``: where results are
    reported). Only the training loader is shuffled, seeded by ``seed``; the splits never change."""
    _validate_common(batch_size, test_batch_size, seed, num_workers)
    check_choice("eval_split", eval_split, MNIST1D_EVAL_SPLITS)
    return _split_loaders(mnist1d_arrays(), eval_split, batch_size, test_batch_size, seed, num_workers)


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def cifar10(
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    seed: int = 0,
    download: bool = False,
    num_workers: int = 0,
    test_batch_size: int | None = None,
) -> tuple[DataLoader, DataLoader]:
    """CIFAR-10 (50k/10k, 3x32x32) with the standard augmentation for training.

    Training: ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip`` + normalise; test: normalise only.
    Reads ``root/cifar-10-batches-py/`` (the python pickle batches; default root: :func:`data_root`).
    Downloads only if ``download=True``; otherwise a missing data set raises
    :class:`DatasetNotFoundError`, and files that fail torchvision's MD5 check raise
    :class:`DatasetCorruptedError`.
    """
    from torchvision import transforms
    from torchvision.datasets import CIFAR10

    _validate_common(batch_size, test_batch_size, seed, num_workers)
    download = check_bool("download", download)
    root_path = _resolve_root(root)
    folder = root_path / _CIFAR10_FOLDER
    if not download:
        missing = [name for name in _CIFAR10_FILES if not (folder / name).is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"CIFAR-10 not found under {root_path}: looked in {folder} for "
                f"{', '.join(_CIFAR10_FILES)}; {_describe_missing(folder, missing, _CIFAR10_FILES)}.\n"
                f"To get it, call wfn_core.data.cifar10(root={str(root_path)!r}, download=True) (about 170 MB), "
                f"or download {_CIFAR10_URL} and extract it into {root_path}; "
                f"or set ${DATA_ENV_VAR} / pass root= to where it already is."
            )
    normalize = transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    train_tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), normalize])
    try:
        train_set = CIFAR10(str(root_path), train=True, transform=train_tf, download=download)
        test_set = CIFAR10(str(root_path), train=False, transform=test_tf, download=False)
    except RuntimeError as exc:
        if download:
            raise
        # All files exist (checked above), so torchvision's integrity (MD5) check rejected them.
        raise DatasetCorruptedError(
            f"CIFAR-10 files are present in {folder} but torchvision rejected them ({exc}). "
            f"They are probably incomplete or corrupted: delete {folder} and call "
            f"wfn_core.data.cifar10(root={str(root_path)!r}, download=True)."
        ) from exc
    return _make_loaders(train_set, test_set, batch_size, test_batch_size, seed, num_workers)


# --------------------------------------------------------------------------- ImageNet

_IMAGENET_HOWTO = (
    "ImageNet cannot be downloaded automatically: request ILSVRC2012 (CLS-LOC) from "
    "https://image-net.org/download (free registration for non-commercial research), extract "
    "ILSVRC2012_img_train.tar (and the per-class tars inside it) into <root>/train/<wnid>/*.JPEG, "
    "and sort ILSVRC2012_img_val.tar into <root>/val/<wnid>/*.JPEG (the validation images come as "
    "one flat folder; move them into per-class folders using the validation ground truth, e.g. with "
    "the widely used valprep.sh script). Then pass root=<root>, or put it at {default}."
)


def _image_folder_problem(split_dir: Path) -> str | None:
    """Why ``split_dir`` is not a usable ImageFolder split, or None if it looks fine."""
    if not split_dir.is_dir():
        return f"{split_dir} does not exist"
    if not any(entry.is_dir() for entry in split_dir.iterdir()):
        return f"{split_dir} has no class sub-folders (expected {split_dir}/<class>/<image>.JPEG)"
    return None


def imagenet(
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
    seed: int = 0,
    num_workers: int | None = None,
    test_batch_size: int | None = None,
) -> tuple[DataLoader, DataLoader]:
    """ImageNet (ILSVRC2012) from an ImageFolder tree: ``root/train/<class>/*`` and ``root/val/<class>/*``.

    Training: ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``; validation: ``Resize(256)`` +
    ``CenterCrop(224)``; both normalised with the ImageNet mean/std. The default root is
    ``data_root() / "imagenet"``. ``num_workers`` defaults to ``min(8, os.cpu_count())``.
    Nothing is ever downloaded; a missing tree raises :class:`DatasetNotFoundError`.
    """
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    _validate_common(batch_size, test_batch_size, seed, num_workers)
    default_root = data_root() / "imagenet"
    root_path = _resolve_root(root, default=default_root)
    problems = [p for p in (_image_folder_problem(root_path / s) for s in ("train", "val")) if p]
    if problems:
        raise DatasetNotFoundError(
            f"ImageNet not found under {root_path}: looked for {root_path / 'train'}/<class>/*.JPEG and "
            f"{root_path / 'val'}/<class>/*.JPEG; " + "; ".join(problems) + ".\n"
            + _IMAGENET_HOWTO.format(default=default_root)
        )
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
    )
    train_set = ImageFolder(str(root_path / "train"), transform=train_tf)
    val_set = ImageFolder(str(root_path / "val"), transform=val_tf)
    if train_set.classes != val_set.classes:
        raise ValueError(
            f"ImageNet train and val class folders differ under {root_path}: "
            f"{len(train_set.classes)} train classes vs {len(val_set.classes)} val classes; "
            "every class needs a folder in both splits so the label indices agree."
        )
    return _make_loaders(train_set, val_set, batch_size, test_batch_size, seed, num_workers)
