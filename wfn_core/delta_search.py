"""Search δ for an accuracy budget: the largest base relative distance (fewest values) whose full WFN run
stays within ``max_drop`` validation points of fp32, found in a handful of full runs (:func:`search_delta`).

The search (what :func:`search_delta` does, step by step):

1. **Proxy** (milliseconds to a second a point). Cluster the trained weights with the whole δ schedule
   and *no retraining* (:func:`~wfn_core.clustering.cluster_schedule`) and record validation top-1,
   unique values and entropy, on a log grid of δ scanned from its largest value down to the first δ
   where the proxy stays within budget.
2. **Bracket** ``[lo, hi]`` from the proxy. ``lo``: that first δ within budget (the grid's smallest
   when there is none); retraining rarely costs accuracy, so a full run there is expected to pass.
   ``hi``: the first grid δ above ``lo`` at which the proxy reaches its fewest values; a larger δ is
   not expected to buy fewer values, so it is not searched.
3. **Bisection on log δ with full runs** (:func:`~wfn_core.pipeline.run_wfn`, evaluated on the
   validation loader): a run within budget raises ``lo``, one outside it lowers ``hi``, until the
   bracket is within ``rtol`` or ``max_runs`` full runs are spent. One run is kept in reserve to
   confirm ``lo`` when no bisection run has passed; if ``lo`` fails, the search steps down the grid.
4. **Answer**: among the accepted runs (all below every rejected δ), the one with the fewest unique
   values (ties: the larger δ), usually the bracket's lower end. Unique counts wobble by a few values
   between neighbouring δ, so a step below the edge sometimes has fewer. There is no other margin: the
   answer sits near the accuracy edge of this seed's runs, whereas the ``digits`` preset was chosen
   over three seeds with a grid step to spare (:func:`wfn_core.course.sweep.choose_setting`).

Where the proxy misleads, and why it cannot cost a δ a full run would accept:

* Its **accuracy** collapses far below the δ where full runs do (digits: δ = 0.025 gives about 8 %
  top-1 without retraining, 98.9 % with it), because retraining between iterations repairs what each
  clustering step breaks. So it is read only as a *sufficient* sign (it sets ``lo``) and never rules a
  δ out: every δ between ``lo`` and ``hi`` is decided by full runs.
* Its **accuracy can also flatter**: a full run may fail where the proxy passed (the regulariser moves
  the free weights; a few images' noise). Hence ``lo`` is confirmed by a full run before it is returned.
* Its **unique counts** follow the full runs' trend but not their exact values and are not monotone in
  δ; past a collapse they can fall to a single value (digits: δ >= 0.06), so ``hi`` may sit well above the
  accuracy cliff; each full run halves the bracket on a log scale, so the overshoot costs a run or
  two. δ above ``hi`` are never tried: there the proxy promises no fewer values, not lower accuracy.
* Full-run accuracy is itself not monotone in δ (digits, validation, seed 2: δ = 0.03 loses 3.1 points,
  0.04 only 0.7); bisection returns one accepted δ below the lowest rejected one, not a global optimum.

Every full run and the proxy curve are cached on disk, keyed by the model's weights, the settings
(except δ), the training and validation data, the torch version, the device type and the CPU kernels and
thread count, so the same search
again, or one with a larger ``max_runs``, reuses them. Only the loaders passed in are read: give the
validation split, never the test split.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ._validation import check_int, check_number, fail
from .clustering import cluster_schedule
from .config import PRESET_MAX_DROP, WFNConfig
from .fixable import fixable_parameters, flat_values, set_flat_values
from .io import atomic_write_text, cache_dir
from .metrics import summary
from .pipeline import CollapseWarning, run_wfn
from .training import default_device, evaluate, progress

__all__ = [
    "search_delta", "search_preset", "DeltaSearchResult", "default_cache_dir", "cache_key", "write_search",
    "DEFAULT_MAX_RUNS", "DEFAULT_DELTA_MIN", "DEFAULT_GRID", "DEFAULT_RTOL", "SEARCH_SPLIT",
]

DEFAULT_MAX_RUNS = 6
#: Smallest δ of the proxy grid; the largest defaults to just below 1/T (δ·T must stay below 1).
DEFAULT_DELTA_MIN = 1e-3
#: Points of the proxy's log grid.
DEFAULT_GRID = 17
#: The search stops once hi / lo <= 1 + rtol.
DEFAULT_RTOL = 0.05
#: The split the search measures on (the loaders it is given must be this one).
SEARCH_SPLIT = "val"
CACHE_VERSION = 2  # 2: proxy points carry seconds; CPU kernels and threads in the key
_METRICS = ("unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero", "power_of_two_share")
_SLACK = 1e-9  # drops are differences of image fractions: compare with a hair of float slack

Point = dict[str, Any]


@dataclass
class DeltaSearchResult:
    """What :func:`search_delta` found.

    ``delta``: the chosen δ, ``None`` when no full run stayed within budget. ``runs``: the full runs in
    the order the search used them (``delta``, ``top1``, ``drop`` in points, ``passed``, ``cached``,
    unique values, entropy, ...). ``proxy``: the no-retraining points scanned, ascending from the
    bracket's lower end (``drop``, ``passed``, unique values, ...). ``bracket``: the final
    ``(lo, hi)`` (``hi`` is ``None`` when the proxy passed at the grid's largest δ). ``new_runs``: full runs
    computed by this call (the rest came from the cache).
    """

    delta: float | None
    max_drop: float
    max_runs: int
    baseline_top1: float
    runs: list[Point]
    proxy: list[Point]
    bracket: tuple[float, float | None]
    new_runs: int
    reason: str
    seconds: float
    config: dict[str, Any]
    cache_dir: str | None = None
    split: str = SEARCH_SPLIT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen(self) -> Point | None:
        """The full run of the chosen δ (``None`` when nothing was chosen)."""
        return next((r for r in self.runs if r["delta"] == self.delta), None)

    @property
    def full_runs(self) -> int:
        return len(self.runs)

    @property
    def points(self) -> list[Point]:
        """Every tried point, proxy ones first (ascending δ), then the full runs in the order they ran:
        ``delta``, ``kind`` (``"proxy"`` or ``"full"``), ``val_top1``, ``drop``, ``passed``, ``unique``,
        ``entropy_bits``, ``seconds`` (``None`` for a proxy point cached by an older version)."""
        return [
            {"delta": p["delta"], "kind": kind, "val_top1": p["top1"], "drop": p["drop"], "passed": p["passed"],
             "unique": p["unique"], "entropy_bits": p["entropy_bits"], "seconds": p.get("seconds")}
            for kind, group in (("proxy", self.proxy), ("full", self.runs)) for p in group
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready, with the chosen run's numbers at the top level."""
        chosen = self.chosen or {}
        head = {k: chosen.get(k) for k in ("top1", "drop", *_METRICS)}
        return {"delta": self.delta, "split": self.split, "max_drop": self.max_drop, "max_runs": self.max_runs,
                "full_runs": self.full_runs, "new_runs": self.new_runs, "baseline_top1": self.baseline_top1,
                **head, "bracket": list(self.bracket), "reason": self.reason, "seconds": self.seconds,
                **self.extra, "points": self.points, "config": self.config, "cache_dir": self.cache_dir,
                "runs": self.runs, "proxy": self.proxy}

    def table(self) -> str:
        """The full runs, one line each, in the order they were used."""
        lines = [f"{'run':>3} {'delta':>8} {'top1 %':>7} {'drop':>6} {'unique':>6} {'H bits':>6}  within  from"]
        for i, r in enumerate(self.runs, 1):
            lines.append(
                f"{i:>3} {r['delta']:>8.4g} {100 * r['top1']:>7.2f} {r['drop']:>6.2f} {r['unique']:>6} "
                f"{r['entropy_bits']:>6.2f}  {'yes' if r['passed'] else 'no':<6}  {'cache' if r['cached'] else 'run'}"
            )
        return "\n".join(lines)


# ----------------------------------------------------------------------------- checks and grid


def _round(delta: float) -> float:
    """Three significant figures: readable δ on the command line, and exact cache keys."""
    return float(f"{delta:.3g}")


def _grid(delta_range: tuple[float, float | None], n_fractions: int, points: int) -> list[float]:
    """The proxy's log grid of δ, rounded, strictly increasing, every point below 1/T."""
    limit = 1.0 / n_fractions
    low, high = delta_range
    high = _round(0.99 * limit) if high is None else high
    real = all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (low, high))
    if not (real and 0 < low < high < limit):
        raise fail("delta_range", delta_range,
                   f"(low, high) with 0 < low < high < 1/T = {limit:.4g} (T = {n_fractions} fractions; δ·T must "
                   f"stay below 1), or (low, None) for high just below 1/T")
    ratio = high / low
    grid = sorted({_round(low * ratio ** (i / (points - 1))) for i in range(points)})
    return [d for d in grid if d < limit]


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$WFN_CACHE/delta_search``, else ``$XDG_CACHE_HOME/wfn/delta_search``, else ``~/.cache/wfn/delta_search``
    (read at call time)."""
    return cache_dir("delta_search")


def _hash_tensor(h: hashlib._Hash, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: every dtype, bit-exact


def _model_digest(model: nn.Module) -> str:
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        _hash_tensor(h, name, tensor)
    return h.hexdigest()


def _data_digest(loader) -> str:
    """What a loader feeds, without a pass over it where that can be avoided.

    A :class:`TensorDataset` is hashed whole (the digits and the tests); another dataset by its type,
    length, root, transform and labels (a pass over ImageNet would cost more than a run); anything that
    is not a DataLoader by one pass over its batches.
    """
    h = hashlib.sha256()
    if not isinstance(loader, DataLoader):
        for i, batch in enumerate(loader):
            for j, t in enumerate(batch):
                _hash_tensor(h, f"{i}.{j}", torch.as_tensor(t))
        return h.hexdigest()
    ds = loader.dataset
    size = len(ds)  # type: ignore[arg-type]
    h.update(f"{type(ds).__qualname__}|{size}|{loader.batch_size}|{type(loader.sampler).__name__}|"
             f"{loader.drop_last}|".encode())
    if isinstance(ds, TensorDataset):
        for j, t in enumerate(ds.tensors):
            _hash_tensor(h, str(j), t)
    else:
        for attr in ("root", "transform", "targets", "samples"):
            h.update(f"{attr}={getattr(ds, attr, None)!r}|".encode())
    return h.hexdigest()


def cache_key(model: nn.Module, config: WFNConfig, train_loader, val_loader, device: torch.device | str = "cpu") -> str:
    """Key of a search's cache entries: model weights, settings except δ, both loaders' data, torch
    version, device type and, on the CPU, the vector kernels and thread count in use (each trains a slightly
    different network, so a run cached under one is not the run another would make)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "delta"}
    kind = torch.device(device).type
    cpu = ({"kernels": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
           if kind == "cpu" else {})
    what = {"version": CACHE_VERSION, "model": _model_digest(model), "config": settings,
            "train": _data_digest(train_loader), "val": _data_digest(val_loader),
            "torch": torch.__version__, "device": kind, **cpu}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


class _Cache:
    """One JSON file per full run (``full-<δ>.json``) and per proxy grid, written atomically."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get(self, name: str) -> Any:
        if self.folder is None or not (self.folder / name).is_file():
            return None
        try:
            return json.loads((self.folder / name).read_text())
        except (OSError, json.JSONDecodeError):
            return None  # unreadable: compute it again and overwrite

    def put(self, name: str, value: Any) -> None:
        if self.folder is not None:
            atomic_write_text(self.folder / name, json.dumps(value, indent=1) + "\n")


# ----------------------------------------------------------------------------- the two measurements


def _proxy_probe(model: nn.Module, val_loader, config: WFNConfig, device: torch.device) -> Callable[[float], Point]:
    """A function giving validation top-1, unique values and entropy after clustering ``model`` with the
    whole δ schedule and no retraining (one model copy, overwritten at each δ: ``model`` stays as it is)."""
    before = flat_values(fixable_parameters(model, include_bn=config.include_bn)).cpu()
    probe = copy.deepcopy(model).to(device)
    params = fixable_parameters(probe, include_bn=config.include_bn)

    def measure(delta: float) -> Point:
        began = time.perf_counter()
        after = cluster_schedule(before, delta, config.fractions, zero_threshold=config.zero_threshold,
                                 recluster_fixed=config.recluster_fixed)[-1].values
        set_flat_values(params, after.to(device))
        s = summary(after)
        top1 = evaluate(probe, val_loader, device=device, show_progress=False)["top1"]
        return {"delta": delta, "top1": top1, **{k: s[k] for k in _METRICS},
                "seconds": round(time.perf_counter() - began, 3)}

    return measure


def _full_run(model: nn.Module, train_loader, val_loader, config: WFNConfig, delta: float,
              device: torch.device) -> Point:
    """One WFN run at ``delta`` on a copy of ``model``, evaluated on the validation loader."""
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)  # the search probes collapsing δ on purpose
        result = run_wfn(model, train_loader, val_loader, config.replace(delta=delta), device=device)
    final = result.final
    return {"delta": delta, "baseline_top1": result.baseline["top1"], "top1": final["top1"],
            **{k: final[k] for k in _METRICS}, "seconds": round(time.perf_counter() - began, 2)}


def _judge(point: Point, baseline_top1: float, max_drop: float) -> Point:
    drop = 100 * (point.get("baseline_top1", baseline_top1) - point["top1"])
    return {**point, "drop": drop, "passed": drop <= max_drop + _SLACK}


def _upper_end(proxy: list[Point]) -> float | None:
    """First δ above ``proxy[0]`` (the bracket's lower end) at which the proxy has its fewest values."""
    if len(proxy) < 2:
        return None
    fewest = min(p["unique"] for p in proxy[1:])
    return next(p["delta"] for p in proxy[1:] if p["unique"] == fewest)


# ----------------------------------------------------------------------------- the search


def _scan_proxy(model: nn.Module, val_loader, config: WFNConfig, grid: list[float], device: torch.device,
                store: _Cache, baseline: float, max_drop: float, notify: Callable[[Point], None]) -> list[Point]:
    """The proxy from the grid's largest δ down to the first δ within budget (or the whole grid), in
    ascending δ. Scanning down skips the small δ, whose clustering is the slowest and never needed."""
    known: dict[str, Point] = store.get("proxy.json") or {}
    measure, fresh, proxy = None, False, []
    for delta in reversed(grid):
        raw = known.get(repr(delta))
        if raw is None:
            measure = measure or _proxy_probe(model, val_loader, config, device)
            raw, fresh = measure(delta), True
            known[repr(delta)] = raw
        point = _judge(raw, baseline, max_drop)
        proxy.append(point)
        notify({**point, "stage": "proxy", "index": len(proxy), "total": len(grid)})
        if point["passed"]:
            break
    if fresh:
        store.put("proxy.json", known)
    return proxy[::-1]


def search_delta(
    model: nn.Module,
    train_loader,
    val_loader,
    config: WFNConfig,
    *,
    max_drop: float = PRESET_MAX_DROP,
    max_runs: int = DEFAULT_MAX_RUNS,
    delta_range: tuple[float, float | None] = (DEFAULT_DELTA_MIN, None),
    grid_points: int = DEFAULT_GRID,
    rtol: float = DEFAULT_RTOL,
    cache: bool | str | Path = True,
    device: torch.device | str | None = None,
    callback: Callable[[Point], None] | None = None,
) -> DeltaSearchResult:
    """A δ as large as a full WFN run allows while losing at most ``max_drop`` top-1 points on ``val_loader``.

    Brackets δ with the no-retraining proxy, bisects the bracket on log δ with at most ``max_runs``
    full runs of ``config`` (its δ is ignored) and returns, among the accepted runs, the one with the
    fewest unique values; see the module docstring for the steps and where the proxy misleads. ``model`` is
    left untouched. ``val_loader`` must be a validation split: the search reads no other loader, so the
    test split stays unseen.

    ``cache``: ``True`` for :func:`default_cache_dir`, a folder, or ``False`` for none.
    ``callback(point)`` is called after every proxy point (``point["stage"] == "proxy"``) and every
    full run (``"full"``; with ``index``, ``max_runs``, ``cached`` and the bracket ``lo``/``hi``),
    for example to move a progress widget.
    """
    began = time.perf_counter()
    if not isinstance(config, WFNConfig):
        raise fail("config", config, "a WFNConfig")
    max_drop = check_number("max_drop", max_drop, low=0, why="accuracy points")
    max_runs = check_int("max_runs", max_runs, low=1)
    rtol = check_number("rtol", rtol, low=0, low_open=True, why="relative width of the final bracket")
    grid_points = check_int("grid_points", grid_points, low=3)
    grid = _grid(delta_range, config.n_iterations, grid_points)
    device = torch.device(device) if device is not None else default_device()
    notify = callback or (lambda point: None)

    folder = None
    if cache is not False and cache is not None:
        root = default_cache_dir() if cache is True else Path(cache)
        folder = root / cache_key(model, config, train_loader, val_loader, device)
    store = _Cache(folder)

    baseline = evaluate(model, val_loader, device=device, show_progress=False)["top1"]
    proxy = _scan_proxy(model, val_loader, config, grid, device, store, baseline, max_drop, notify)
    lo, hi = proxy[0]["delta"], _upper_end(proxy)
    lo_i = grid.index(lo)
    lo_confirmed = False

    runs: list[Point] = []
    new_runs = 0
    bar = progress(total=max_runs, desc="δ search: full runs")

    def full(delta: float) -> Point:
        nonlocal new_runs
        name = f"full-{delta!r}.json"
        point, cached = store.get(name), True
        if point is None:
            point, cached = _full_run(model, train_loader, val_loader, config, delta, device), False
            store.put(name, point)
            new_runs += 1
        point = {**_judge(point, baseline, max_drop), "cached": cached}
        runs.append(point)
        bar.update(1)
        bar.set_postfix(delta=f"{delta:.4g}", drop=f"{point['drop']:.2f}")
        return point

    def report(point: Point) -> None:
        notify({**point, "stage": "full", "index": len(runs), "max_runs": max_runs, "lo": lo, "hi": hi})

    reason = "the proxy stayed within budget at the grid's largest δ: confirmed it with a full run"
    while hi is not None:
        if len(runs) + (not lo_confirmed) >= max_runs:  # keep one run to confirm an unconfirmed lo
            reason = f"max_runs={max_runs} spent"
            break
        mid = _round(math.sqrt(lo * hi))
        if hi / lo <= 1 + rtol or not lo < mid < hi:
            reason = f"bracket within rtol={rtol}"
            break
        point = full(mid)
        if point["passed"]:
            lo, lo_confirmed = mid, True
        else:
            hi = mid
        report(point)
    while not lo_confirmed and len(runs) < max_runs:
        point = full(lo)
        lo_confirmed = point["passed"]
        if not lo_confirmed and lo_i > 0:  # the proxy flattered lo: step down its grid
            hi, lo_i = lo, lo_i - 1
            lo = grid[lo_i]
        report(point)
        if not lo_confirmed and lo == point["delta"]:
            break  # failed at the grid's smallest δ: nothing left to step down to
    bar.close()
    accepted = [r for r in runs if r["passed"]]  # all below every rejected δ: bisection keeps them under hi
    if not accepted:
        reason = (f"no full run stayed within max_drop={max_drop} points (down to δ={lo:g}); "
                  f"raise max_drop or max_runs, or lower delta_range")
    # unique counts wobble by a few values between neighbouring δ, so the edge is not always the fewest
    best = min(accepted, key=lambda r: (r["unique"], -r["delta"]), default=None)
    return DeltaSearchResult(
        delta=best["delta"] if best is not None else None, max_drop=max_drop, max_runs=max_runs, baseline_top1=baseline,
        runs=runs, proxy=proxy, bracket=(lo, hi), new_runs=new_runs, reason=reason,
        seconds=round(time.perf_counter() - began, 2), config=config.to_dict(),
        cache_dir=str(folder) if folder is not None else None,
    )


def search_preset(
    name: str = "digits",
    *,
    config: WFNConfig | None = None,
    overrides: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    data_root: str | Path | None = None,
    **search: Any,
) -> DeltaSearchResult:
    """:func:`search_delta` on a preset's model and its **validation** split (the preset's settings with
    ``overrides``, or ``config``); keyword arguments go to :func:`search_delta`. Presets without a
    validation split are refused rather than searched on their test split."""
    from .config import build_preset, preset
    from .training import seed_everything

    config = config if config is not None else preset(name, **(overrides or {}))
    seed_everything(config.seed)
    model, train_loader, val_loader = build_preset(
        name, config, Path(weights) if weights is not None else None,
        Path(data_root) if data_root is not None else None, eval_split=SEARCH_SPLIT,
    )
    result = search_delta(model, train_loader, val_loader, config, **search)
    result.extra = {"preset": name, "seed": config.seed}
    return result


def write_search(result: DeltaSearchResult, path: str | Path, figure: bool = True) -> Path:
    """``result`` as JSON (``search.json``), atomically, and its trade-off figure beside it
    (``search.png``, :func:`wfn_core.course.plots.plot_delta_search`) unless ``figure=False``."""
    path = atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")
    if figure:
        import matplotlib.pyplot as plt

        from .course.plots import plot_delta_search

        fig = plot_delta_search(result)
        tmp = path.with_name(f".{path.stem}.png.tmp")
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        os.replace(tmp, path.with_suffix(".png"))  # atomic, like every file we write
        plt.close(fig)
    return path
