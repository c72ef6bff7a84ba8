"""wfn_core: Weight Fixing Networks, a small library behind the wfn course notebooks.

The method, one module a stage: APoT candidate centres (``centres``), relative-distance clustering
(``clustering``: the readable ``cluster_reference`` and the fast ``cluster``), freezing fixed weights
(``freezing``), the regulariser (``regulariser``), the outer loop (``pipeline``), settings and presets
(``config``) and metrics (``metrics``); the δ search (``delta_search``); data, models and training
utilities. Teaching helpers live in ``wfn_core.course``, comparisons and deployment in ``wfn_core.compare``.
"""

from ._validation import InvalidParameterError
from .centres import ZERO_THRESHOLD, apot_approx, apot_terms, candidate_centres
from .clustering import (
    DEFAULT_FRACTIONS,
    ClusterResult,
    cluster,
    cluster_reference,
    cluster_schedule,
    delta_schedule,
    relative_distance,
)
from .compare.export import CodebookWarning, CompressedFileError
from .config import PRESETS, WFNConfig, preset
from .data import DatasetCorruptedError, DatasetNotFoundError
from .delta_search import DeltaSearchResult, search_delta, search_preset
from .fixable import FloatParametersWarning, fixable_parameters, float_parameters
from .freezing import WeightFixer
from .metrics import entropy_bits, order_histogram, power_of_two_share, summary, unique_count
from .models import DigitsCNN, cifar_resnet18, load_pretrained_digits, torchvision_model
from .pipeline import AccuracyDropError, CheckpointError, CollapseWarning, WFNResult, run_wfn
from .regulariser import ClusterRegulariser, penalty_reference
from .training import NonFiniteLossError, evaluate, seed_everything, train_epoch

__version__ = "0.1.0"

__all__ = [
    "ZERO_THRESHOLD", "apot_approx", "apot_terms", "candidate_centres",
    "DEFAULT_FRACTIONS", "ClusterResult", "cluster", "cluster_reference", "cluster_schedule", "delta_schedule",
    "relative_distance",
    "PRESETS", "WFNConfig", "preset", "DeltaSearchResult", "search_delta", "search_preset",
    "fixable_parameters", "float_parameters", "WeightFixer",
    "entropy_bits", "order_histogram", "power_of_two_share", "summary", "unique_count",
    "DigitsCNN", "cifar_resnet18", "load_pretrained_digits", "torchvision_model",
    "WFNResult", "run_wfn", "ClusterRegulariser", "penalty_reference", "evaluate", "seed_everything", "train_epoch",
    # errors: bad arguments, and what can go wrong on disk or in training
    "InvalidParameterError", "CheckpointError", "CompressedFileError", "DatasetNotFoundError", "DatasetCorruptedError",
    "NonFiniteLossError", "AccuracyDropError",
    # warnings: what a run leaves in float, a collapsing run, an export without a shared codebook
    "FloatParametersWarning", "CollapseWarning", "CodebookWarning",
]
