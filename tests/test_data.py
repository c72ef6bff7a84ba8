"""Tests for wfn_core.data.

Everything runs offline: the real-data loaders are exercised on tiny data sets that these tests write
in each data set's real on-disk format (CIFAR-10 python pickle batches, MNIST/Fashion-MNIST IDX files,
an ImageFolder tree of JPEGs), and the network is blocked for the whole module.
"""

from __future__ import annotations

import hashlib
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from wfn_core import data
from wfn_core.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetCorruptedError,
    DatasetNotFoundError,
    cifar10,
    digits,
    digits_arrays,
    imagenet,
)

# --------------------------------------------------------------------------- no network, ever


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Fail loudly if anything in this module tries to open a connection or call a downloader."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_url", refuse)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", refuse)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_range():
    train, test = digits(batch_size=64)
    x, y = next(iter(train))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.int64
    x_train, y_train, x_val, y_val, x_test, y_test = digits_arrays()
    for xs in (x_train, x_val, x_test):
        assert xs.dtype == torch.float32 and xs.shape[1:] == (1, 8, 8)
        assert xs.min() >= 0.0 and xs.max() <= 1.0
    assert x_train.max() == 1.0  # scaled by 16, not by the observed max of some subset
    assert set(y_train.tolist()) == set(range(10)) == set(y_val.tolist()) == set(y_test.tolist())


def _rows(x, y):
    return np.concatenate([x.reshape(-1, 64).numpy() * 16, y[:, None].numpy()], axis=1)


def _sorted_rows(rows):
    return rows[np.lexsort(rows.T)]


def test_digits_splits_are_stratified_disjoint_and_cover_all_samples():
    from sklearn.datasets import load_digits

    full = load_digits()
    x_train, y_train, x_val, y_val, x_test, y_test = digits_arrays()
    assert (len(x_train), len(x_val), len(x_test)) == (1149, 288, 360)
    assert len(y_train) + len(y_val) + len(y_test) == len(full.target) == 1797
    full_counts = np.bincount(full.target, minlength=10)
    counts = [np.bincount(y.numpy(), minlength=10) for y in (y_train, y_val, y_test)]
    np.testing.assert_array_equal(sum(counts), full_counts)
    # Stratified: every class keeps (to within one sample) its share in each held-out split.
    assert np.all(np.abs(counts[2] - 0.2 * full_counts) <= 1)
    assert np.all(np.abs(counts[1] - 0.2 * (full_counts - counts[2])) <= 1)
    # The three splits together are exactly the original data (as a multiset of (image, label) rows).
    ours = _rows(torch.cat([x_train, x_val, x_test]), torch.cat([y_train, y_val, y_test]))
    theirs = np.concatenate([full.data, full.target[:, None]], axis=1)
    np.testing.assert_array_equal(_sorted_rows(ours), _sorted_rows(theirs))


def test_digits_splits_are_the_fixed_sklearn_splits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    full = load_digits()
    rest_x, _, rest_y, y_test_ref = train_test_split(
        full.data, full.target, test_size=0.2, stratify=full.target, random_state=0
    )
    _, _, y_train_ref, y_val_ref = train_test_split(rest_x, rest_y, test_size=0.2, stratify=rest_y, random_state=0)
    data._digits_split.cache_clear()  # recompute rather than reuse this process's cached split
    _, y_train, _, y_val, _, y_test = digits_arrays()
    np.testing.assert_array_equal(y_test.numpy(), y_test_ref)  # the test split is the one it always was
    np.testing.assert_array_equal(y_train.numpy(), y_train_ref)
    np.testing.assert_array_equal(y_val.numpy(), y_val_ref)


def test_digits_eval_split_chooses_validation_or_test():
    _, _, x_val, y_val, x_test, y_test = digits_arrays()
    train_a, val = digits(eval_split="val")
    train_b, test = digits()
    assert torch.equal(val.dataset.tensors[1], y_val) and torch.equal(test.dataset.tensors[1], y_test)
    assert torch.equal(train_a.dataset.tensors[0], train_b.dataset.tensors[0])
    with pytest.raises(ValueError, match=r"eval_split='train' is not allowed: it must be one of 'test', 'val'"):
        digits(eval_split="train")


def test_digits_split_does_not_depend_on_seed():
    a_train, a_test = digits(seed=0)
    b_train, b_test = digits(seed=123)
    for a, b in ((a_train, b_train), (a_test, b_test)):
        for ta, tb in zip(a.dataset.tensors, b.dataset.tensors):
            assert torch.equal(ta, tb)


def test_digits_same_seed_same_batches_different_seed_different_order():
    def first_batch(seed):
        train, _ = digits(batch_size=32, seed=seed)
        return next(iter(train))

    x1, y1 = first_batch(7)
    x2, y2 = first_batch(7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = first_batch(8)
    assert not torch.equal(x1, x3)

    # Whole epochs reproduce too, and successive epochs of one loader are reshuffled.
    train_a, _ = digits(batch_size=100, seed=3)
    train_b, _ = digits(batch_size=100, seed=3)
    epoch_a1 = torch.cat([y for _, y in train_a])
    epoch_b1 = torch.cat([y for _, y in train_b])
    epoch_a2 = torch.cat([y for _, y in train_a])
    assert torch.equal(epoch_a1, epoch_b1)
    assert not torch.equal(epoch_a1, epoch_a2)
    assert len(epoch_a1) == 1149


def test_digits_test_loader_is_not_shuffled():
    _, test = digits(batch_size=50, seed=5)
    assert isinstance(test.sampler, SequentialSampler)
    *_, x_test, y_test = digits_arrays()
    xs, ys = zip(*test)
    assert torch.equal(torch.cat(xs), x_test) and torch.equal(torch.cat(ys), y_test)
    assert [len(y) for y in ys] == [50] * 7 + [10]


def test_digits_test_batch_size_and_fresh_arrays():
    _, test = digits(batch_size=16, test_batch_size=360)
    assert len(test) == 1
    x_train, *_ = digits_arrays()
    x_train.zero_()
    assert digits_arrays()[0].max() == 1.0  # callers cannot corrupt the cached split


# --------------------------------------------------------------------------- CIFAR-10 (python pickle batches)

CIFAR_PER_BATCH = 4
CIFAR_TEST = 10


def _cifar_image(value: int) -> np.ndarray:
    """One CIFAR row (3072 uint8: the 1024 red, then green, then blue values of a 32x32 image, row-major).

    Red varies with the row index and green with the column index, so a wrong reshape or a
    missing CHW->HWC transpose would show; blue is constant at ``value``.
    """
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    red = (rows * 8).astype(np.uint8)
    green = (cols * 8).astype(np.uint8)
    blue = np.full((32, 32), value, dtype=np.uint8)
    return np.concatenate([red.ravel(), green.ravel(), blue.ravel()])


def write_cifar10(root: Path) -> dict[str, str]:
    """Write a miniature CIFAR-10 in the layout of cifar-10-python.tar.gz; return {file name: md5}.

    The real batches are Python 2 pickles of dicts whose keys load as str under the
    ``encoding="latin1"`` torchvision uses ("data": uint8 array N x 3072, "labels": list of int,
    "batch_label", "filenames"); batches.meta holds "label_names". Protocol 2, as in the originals.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": CIFAR_PER_BATCH for i in range(1, 6)}
    batches["test_batch"] = CIFAR_TEST
    for b, (name, n) in enumerate(batches.items()):
        labels = [(b + i) % 10 for i in range(n)]
        entry = {
            "batch_label": f"{name} of 5" if name != "test_batch" else "testing batch 1 of 1",
            "labels": labels,
            "data": np.stack([_cifar_image(20 * i) for i in range(n)]),
            "filenames": [f"img_{b}_{i}.png" for i in range(n)],
        }
        assert entry["data"].dtype == np.uint8 and entry["data"].shape == (n, 3072)
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        "num_cases_per_batch": 10000,
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A miniature CIFAR-10 that passes torchvision's real integrity check.

    torchvision 0.29.1 (CIFAR10._check_integrity / _load_meta) MD5-checks every batch file against
    the checksums of the official files, hard-coded as class attributes. Synthetic files cannot match
    those, so -- and this is the only thing patched -- the test swaps in the MD5s of the files it
    wrote; torchvision's own check_integrity/calculate_md5 still run over the files unchanged.
    """
    from torchvision.datasets import CIFAR10

    md5 = write_cifar10(tmp_path)
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return tmp_path


def _cifar_expected(channel: int, pixel: float | torch.Tensor) -> float | torch.Tensor:
    return (pixel / 255.0 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]


def test_cifar10_loads_real_format(cifar_root):
    train, test = cifar10(root=cifar_root, batch_size=8, seed=0)
    assert len(train.dataset) == 5 * CIFAR_PER_BATCH and len(test.dataset) == CIFAR_TEST
    assert train.dataset.classes[0] == "airplane"

    # Test split: normalisation only, unshuffled, labels in file order.
    x, y = next(iter(test))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [(5 + i) % 10 for i in range(8)]
    rows = torch.arange(32, dtype=torch.float32)[:, None].expand(32, 32)
    cols = torch.arange(32, dtype=torch.float32)[None, :].expand(32, 32)
    for i in range(8):
        torch.testing.assert_close(x[i, 0], _cifar_expected(0, rows * 8), atol=1e-5, rtol=0)
        torch.testing.assert_close(x[i, 1], _cifar_expected(1, cols * 8), atol=1e-5, rtol=0)
        torch.testing.assert_close(x[i, 2], torch.full((32, 32), _cifar_expected(2, 20.0 * i)), atol=1e-5, rtol=0)

    # Training split: augmented (crop with zero padding, flip), so every blue value is either the
    # image's constant or the normalised zero padding; shapes are unchanged.
    xt, yt = next(iter(train))
    assert xt.shape == (8, 3, 32, 32) and yt.shape == (8,) and yt.dtype == torch.int64
    blue_pad = _cifar_expected(2, 0.0)
    allowed = {round(_cifar_expected(2, 20.0 * i), 4) for i in range(CIFAR_PER_BATCH)} | {round(blue_pad, 4)}
    assert {round(v, 4) for v in xt[:, 2].unique().tolist()} <= allowed


def test_cifar10_training_augmentation_is_the_standard_one(cifar_root):
    from torchvision import transforms

    train, test = cifar10(root=cifar_root)
    train_tf = [type(t) for t in train.dataset.transform.transforms]
    assert train_tf == [transforms.RandomCrop, transforms.RandomHorizontalFlip, transforms.ToTensor,
                        transforms.Normalize]
    crop = train.dataset.transform.transforms[0]
    assert crop.size == (32, 32) and crop.padding == 4
    assert [type(t) for t in test.dataset.transform.transforms] == [transforms.ToTensor, transforms.Normalize]
    norm = test.dataset.transform.transforms[-1]
    assert tuple(norm.mean) == CIFAR10_MEAN and tuple(norm.std) == CIFAR10_STD


def test_cifar10_same_seed_same_order(cifar_root):
    def labels(seed):
        train, _ = cifar10(root=cifar_root, batch_size=20, seed=seed)
        return next(iter(train))[1]

    assert torch.equal(labels(1), labels(1))
    assert not torch.equal(labels(1), labels(2))


def test_cifar10_download_true_with_data_present_does_not_download(cifar_root):
    train, test = cifar10(root=cifar_root, batch_size=4, download=True)  # the fixture blocks any download
    assert next(iter(test))[0].shape == (4, 3, 32, 32)


def test_cifar10_files_failing_md5_raise_our_error(tmp_path):
    # Not patched: torchvision compares our synthetic files with the official checksums and rejects them.
    write_cifar10(tmp_path)
    with pytest.raises(DatasetCorruptedError) as err:
        cifar10(root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "download=True" in message


def test_cifar10_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        cifar10(root=tmp_path / "nothing")
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    assert str(tmp_path / "nothing" / "cifar-10-batches-py") in message
    assert "download=True" in message and "cifar-10-python.tar.gz" in message


def test_cifar10_partially_missing_names_the_missing_files(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3") as err:
        cifar10(root=cifar_root)
    assert "data_batch_1," not in str(err.value).split("missing from")[-1]


# --------------------------------------------------------------------------- ImageNet (ImageFolder of JPEGs)

IMAGENET_CLASSES = ["n01440764", "n01443537", "n01484850"]
IMAGENET_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def write_image_folder(root: Path, per_class: int = 4, size: int = 40) -> None:
    """root/{train,val}/<wnid>/<name>.JPEG, one flat colour per class (so labels are checkable)."""
    from PIL import Image

    for split in ("train", "val"):
        for wnid, colour in zip(IMAGENET_CLASSES, IMAGENET_COLOURS):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (size, size + 4 * i), colour).save(folder / f"{wnid}_{i}.JPEG", quality=95)


def test_imagenet_loads_image_folder(tmp_path):
    write_image_folder(tmp_path)
    train, val = imagenet(tmp_path, batch_size=4, seed=0, num_workers=0)
    assert train.dataset.classes == IMAGENET_CLASSES == val.dataset.classes
    assert len(train.dataset) == len(val.dataset) == 12
    x, y = next(iter(val))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 0, 0]  # unshuffled, class folders in sorted order
    ys = torch.cat([b[1] for b in val])
    assert ys.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for xb, yb in val:
        for image, label in zip(xb, yb):
            expected = torch.tensor(
                [(c / 255 - m) / s for c, m, s in zip(IMAGENET_COLOURS[label], IMAGENET_MEAN, IMAGENET_STD)]
            )
            torch.testing.assert_close(image.mean(dim=(1, 2)), expected, atol=0.06, rtol=0)
    xt, yt = next(iter(train))
    assert xt.shape == (4, 3, 224, 224) and yt.dtype == torch.int64


def test_imagenet_transforms_are_the_standard_224_crops(tmp_path):
    from torchvision import transforms

    write_image_folder(tmp_path, per_class=1)
    train, val = imagenet(tmp_path, num_workers=0)
    t_train = train.dataset.transform.transforms
    assert [type(t) for t in t_train] == [
        transforms.RandomResizedCrop, transforms.RandomHorizontalFlip, transforms.ToTensor, transforms.Normalize
    ]
    assert t_train[0].size == (224, 224)
    t_val = val.dataset.transform.transforms
    assert [type(t) for t in t_val] == [transforms.Resize, transforms.CenterCrop, transforms.ToTensor,
                                        transforms.Normalize]
    assert t_val[0].size == 256 and t_val[1].size == (224, 224)
    assert tuple(t_val[-1].mean) == IMAGENET_MEAN and tuple(t_val[-1].std) == IMAGENET_STD
    assert train.batch_size == 256


def test_imagenet_default_workers(tmp_path):
    import os

    write_image_folder(tmp_path, per_class=1)
    train, _ = imagenet(tmp_path)  # not iterated: no worker processes are started
    assert train.num_workers == min(8, os.cpu_count() or 1)


def test_imagenet_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        imagenet(tmp_path / "ilsvrc")
    message = str(err.value)
    assert str(tmp_path / "ilsvrc" / "train") in message and str(tmp_path / "ilsvrc" / "val") in message
    assert "image-net.org" in message and "<class>" in message


def test_imagenet_flat_val_folder_is_explained(tmp_path):
    from PIL import Image

    write_image_folder(tmp_path, per_class=1)
    for wnid in IMAGENET_CLASSES:  # as ILSVRC2012_img_val.tar unpacks: one flat folder of images
        for f in (tmp_path / "val" / wnid).iterdir():
            f.rename(tmp_path / "val" / f.name)
        (tmp_path / "val" / wnid).rmdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DatasetNotFoundError, match="no class sub-folders") as err:
        imagenet(tmp_path, num_workers=0)
    assert str(tmp_path / "val") in str(err.value)


# --------------------------------------------------------------------------- default root, arguments


def test_default_root_is_repo_data_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("WFN_DATA", raising=False)
    assert data.data_root() == Path(data.__file__).resolve().parent.parent / "data"
    assert data.REPO_DATA_DIR == data.data_root()
    monkeypatch.setenv("WFN_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "cifar-10-batches-py")):
        cifar10()


def test_an_installed_package_keeps_data_out_of_site_packages(tmp_path, monkeypatch):
    """Outside a checkout (pip, Colab) the default root is data/ in the working directory."""
    monkeypatch.delenv("WFN_DATA", raising=False)
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "site-packages" / "data")
    monkeypatch.chdir(tmp_path)
    assert data.data_root() == tmp_path / "data"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -8}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"batch_size": "64"}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"test_batch_size": 0}, "test_batch_size"),
        ({"seed": -1}, "seed"),
        ({"seed": 0.5}, "seed"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
@pytest.mark.parametrize("loader", [digits, cifar10, imagenet])
def test_bad_arguments_raise_value_error(tmp_path, loader, kwargs, fragment):
    # Arguments are checked before the data is looked for, so the (missing) root does not matter.
    extra = {} if loader is digits else {"root": tmp_path}
    with pytest.raises(ValueError, match=rf"^{fragment}=.* is not allowed: it must be an integer") as err:
        loader(**extra, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(err.value)


@pytest.mark.parametrize("loader", [cifar10])
def test_bad_download_and_root(tmp_path, loader):
    with pytest.raises(ValueError, match="download"):
        loader(root=tmp_path, download="yes")
    with pytest.raises(ValueError, match="root"):
        loader(root=123)
    with pytest.raises(ValueError, match="root"):
        loader(root="")


def test_imagenet_train_and_val_classes_must_agree(tmp_path):
    write_image_folder(tmp_path, per_class=1)
    extra = tmp_path / "train" / "n99999999"
    extra.mkdir()
    (tmp_path / "train" / IMAGENET_CLASSES[0] / f"{IMAGENET_CLASSES[0]}_0.JPEG").rename(extra / "x.JPEG")
    (tmp_path / "train" / IMAGENET_CLASSES[1] / f"{IMAGENET_CLASSES[1]}_0.JPEG").rename(
        tmp_path / "train" / IMAGENET_CLASSES[0] / "y.JPEG"
    )
    (tmp_path / "train" / IMAGENET_CLASSES[1]).rmdir()
    with pytest.raises(ValueError, match="class folders differ"):
        imagenet(tmp_path, num_workers=0)
