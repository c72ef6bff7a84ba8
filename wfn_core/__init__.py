"""wfn_core: Weight Fixing Networks, a small library behind the wfn course notebooks.

Stages: APoT candidate centres (``centres``), relative-distance clustering (``clustering``),
freezing (``fixing``), the regulariser (``regulariser``), the outer loop (``pipeline``), metrics
(``metrics``), the δ search (``delta_search``), plus data, models, training utilities, plots and widgets.
"""

from .centres import ZERO_THRESHOLD, apot_approx, apot_terms, candidate_centres
from .clustering import DEFAULT_FRACTIONS, ClusterResult, cluster, cluster_schedule, delta_schedule, relative_distance
from .config import PRESETS, WFNConfig, preset
from .delta_search import DeltaSearchResult, search_delta, search_preset
from .fixable import fixable_parameters
from .freezing import WeightFixer
from .metrics import entropy_bits, order_histogram, power_of_two_share, summary, unique_count
from .models import DigitsCNN, cifar_resnet18, load_pretrained_digits, torchvision_model
from .pipeline import WFNResult, run_wfn
from .regulariser import ClusterRegulariser
from .training import evaluate, seed_everything, train_epoch

__version__ = "0.1.0"

__all__ = [
    "ZERO_THRESHOLD", "apot_approx", "apot_terms", "candidate_centres",
    "DEFAULT_FRACTIONS", "ClusterResult", "cluster", "cluster_schedule", "delta_schedule", "relative_distance",
    "PRESETS", "WFNConfig", "preset", "DeltaSearchResult", "search_delta", "search_preset",
    "fixable_parameters", "WeightFixer",
    "entropy_bits", "order_histogram", "power_of_two_share", "summary", "unique_count",
    "DigitsCNN", "cifar_resnet18", "load_pretrained_digits", "torchvision_model",
    "WFNResult", "run_wfn", "ClusterRegulariser", "evaluate", "seed_everything", "train_epoch",
]
