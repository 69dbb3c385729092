"""Dataset condensation by gradient matching: DC, DSA, DCC and DSAC.

    >>> from condense import load_dataset, get_preset, condense_dataset   # doctest: +SKIP
    >>> data = load_dataset("fashion-mnist")
    >>> config = get_preset("quick-fashion-mnist-ipc1-dcc").config
    >>> synthetic = condense_dataset(config, data, "runs/demo")         # writes the run directory
    >>> synthetic.images.shape                                            # (10, 1, 28, 28), normalised

Modules, top-down: :mod:`~condense.data` (datasets), :mod:`~condense.networks`,
:mod:`~condense.augment` (DSA; its transforms in :mod:`~condense.image_transforms`),
:mod:`~condense.matching` (losses), :mod:`~condense.synthesis` (the loop),
:mod:`~condense.evaluation` (the protocol), :mod:`~condense.baselines`,
:mod:`~condense.artifacts` (what runs write), :mod:`~condense.presets`, :mod:`~condense.study`,
:mod:`~condense.warmup_ablation` and :mod:`~condense.figures` (``python -m condense.figures``: the
paper's figures from stored results).
"""

__version__ = "0.1.0"

from condense.artifacts import SyntheticSet
from condense.baselines import herding_subset, random_subset
from condense.config import LOOP_SIZES, CondenseConfig, EvaluationConfig
from condense.data import ImageDataset, list_datasets, load_dataset
from condense.evaluation import evaluate_images, evaluate_synthetic_set
from condense.hooks import Callback
from condense.matching import classwise_matching_loss, contrastive_matching_loss, gradient_distance, matching_objective
from condense.networks import build_network
from condense.presets import PRESETS, get_preset
from condense.synthesis import Condenser, condense_dataset

__all__ = [
    "__version__", "SyntheticSet", "herding_subset", "random_subset", "LOOP_SIZES", "CondenseConfig",
    "EvaluationConfig", "ImageDataset", "list_datasets", "load_dataset", "evaluate_images",
    "evaluate_synthetic_set", "Callback", "classwise_matching_loss", "contrastive_matching_loss",
    "gradient_distance", "matching_objective", "build_network", "PRESETS", "get_preset", "Condenser",
    "condense_dataset",
]
