"""wfn_core: Weight Fixing Networks, a small library behind the wfn course notebooks."""

from .models import DigitsCNN, cifar_resnet18, load_pretrained_digits, torchvision_model
from .training import evaluate, seed_everything, train_epoch

__version__ = "0.1.0"
