"""``WFNConfig``: every setting of a WFN run, validated on construction, and named presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .centres import ZERO_THRESHOLD, validate_zero_threshold
from .clustering import DEFAULT_FRACTIONS

__all__ = ["WFNConfig", "PRESETS", "PRESET_MAX_DROP", "preset", "build_preset"]

OPTIMIZERS = ("adam", "sgd")

#: The accuracy budget presets are chosen for: validation top-1 points below fp32 (the δ search's default).
PRESET_MAX_DROP = 0.5


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class WFNConfig:
    """Settings of one WFN run (see the algorithm document for each one's meaning)."""

    delta: float = 0.0075
    alpha: float = 0.4
    tau: float = 0.05
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    epochs_per_iteration: int = 3
    epochs_before: int = 0
    lr: float = 2e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    grad_clip: float | None = 0.5
    include_bn: bool = False
    zero_threshold: float = ZERO_THRESHOLD
    recluster_fixed: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        if not (_finite(self.delta) and 0 < self.delta < 1):
            raise ValueError(f"delta={self.delta!r} is not allowed: it must lie in (0, 1)")
        if not (_finite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha={self.alpha!r} is not allowed: it must be >= 0 (0 disables the regulariser)")
        if not (_finite(self.tau) and self.tau > 0):
            raise ValueError(f"tau={self.tau!r} is not allowed: it must be > 0")
        f = self.fractions
        if not f or any(not (0 < x <= 1) for x in f) or any(b <= a for a, b in zip(f, f[1:])) or f[-1] != 1.0:
            raise ValueError(
                f"fractions={f!r} is not allowed: they must be strictly increasing values in (0, 1] ending at 1.0"
            )
        for name in ("epochs_per_iteration", "epochs_before"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}={value!r} is not allowed: it must be an integer >= 0")
        if not (_finite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r} is not allowed: it must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not allowed: choose one of {', '.join(OPTIMIZERS)}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r} is not allowed: it must be >= 0")
        if not (_finite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum={self.momentum!r} is not allowed: it must lie in [0, 1)")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} is not allowed: it must be a positive integer")
        if self.grad_clip is not None and not (_finite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"grad_clip={self.grad_clip!r} is not allowed: it must be > 0, or None for no clipping")
        validate_zero_threshold(self.zero_threshold)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} is not allowed: it must be an integer >= 0")

    @property
    def n_iterations(self) -> int:
        return len(self.fractions)

    def replace(self, **changes: Any) -> "WFNConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fractions"] = list(self.fractions)
        return d


PRESETS: dict[str, WFNConfig] = {
    # The embedded default: the shipped DigitsCNN on scikit-learn's digits. δ and α chosen on the
    # validation split by wfn_core.course.sweep.choose_setting from data/sweep_alpha_delta.csv (`python -m
    # wfn_core sweep`): the fewest values with every seed within 0.5 validation points of fp32, and the
    # next δ up within budget too (margin against the cliff). A larger lr than the paper's: tiny model.
    "digits": WFNConfig(delta=0.02, alpha=1.0, lr=1e-3, epochs_per_iteration=3, batch_size=64),
    "cifar10_resnet18": WFNConfig(delta=0.0075, alpha=0.4, lr=2e-5, epochs_per_iteration=3, batch_size=128, include_bn=True),
    "imagenet_resnet18": WFNConfig(delta=0.0075, alpha=0.4, lr=2e-5, epochs_per_iteration=3, batch_size=256, include_bn=True),
    "imagenet_resnet34": WFNConfig(delta=0.0075, alpha=0.4, lr=2e-5, epochs_per_iteration=3, batch_size=256, include_bn=True),
    "imagenet_resnet50": WFNConfig(delta=0.0075, alpha=0.4, lr=2e-5, epochs_per_iteration=3, batch_size=256, include_bn=True),
}


def preset(name: str, **overrides: Any) -> WFNConfig:
    """A named preset, optionally with some fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is unknown; allowed: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def build_preset(
    name: str, config: WFNConfig, weights: Path | None = None, data_root: Path | None = None, eval_split: str = "test"
):
    """The trained model and the (train, eval) loaders a preset starts from; ``eval_split="val"`` gives the
    validation split instead of the test split (where δ is searched; only the digits preset has one)."""
    from . import data, models  # lazily: importing torchvision is slow, and settings need none of it

    if eval_split != "test" and name != "digits":
        raise ValueError(
            f"eval_split={eval_split!r} is not allowed for preset={name!r}: only the digits preset has a validation "
            f"split wired up, and a search must not measure on the test split"
        )
    if name == "digits":
        if weights is None:
            model = models.load_pretrained_digits()
        else:
            model = models.DigitsCNN()
            model.load_state_dict(models.load_state_dict_file(weights))
        return model, *data.digits(batch_size=config.batch_size, seed=config.seed, eval_split=eval_split)
    if name == "cifar10_resnet18":
        if weights is None:
            raise ValueError("preset cifar10_resnet18 needs --weights: a trained cifar_resnet18 state_dict")
        model = models.cifar_resnet18()
        model.load_state_dict(models.load_state_dict_file(weights))
        return model, *data.cifar10(root=data_root, batch_size=config.batch_size, seed=config.seed)
    if name.startswith("imagenet_"):
        arch = name.removeprefix("imagenet_")
        model = models.torchvision_model(arch, weights=weights if weights is not None else "IMAGENET1K_V1")
        return model, *data.imagenet(root=data_root, batch_size=config.batch_size, seed=config.seed)
    raise ValueError(f"preset={name!r} has no model and data set wired up")
