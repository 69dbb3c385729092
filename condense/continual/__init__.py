"""Class-incremental learning with a condensed memory (PAPER.md §9).

The classes of a dataset arrive in steps, in an order drawn from a seed. After each step the
step's classes are turned into ``memory_per_class`` images per class (random real images,
herding, or a condensation by DC / DCC / DSA / DSAC) and added to a fixed memory; a network is
then trained on all memory so far and tested on the test images of the seen classes, with the
logits of unseen classes masked to −inf. GDumb-style (a fresh network per step, the DSA/DM
authors' protocol) or incremental (one network trained further at every step).

    >>> from condense.continual import get_continual_preset, run_continual   # doctest: +SKIP
    >>> from condense import load_dataset
    >>> preset = get_continual_preset("fashion-mnist")
    >>> run_continual(preset.config, load_dataset("fashion-mnist"), "runs/continual-fashion-mnist",
    ...               name=preset.name)           # steps.csv, summary.md, figures/continual-fashion-mnist.png

Command line: ``python -m condense continual --preset fashion-mnist --memories random,herding,dc,dcc``.

Modules: :mod:`~condense.continual.classes` (class orders, steps, class subsets),
:mod:`~condense.continual.memory` (the memory and its builders), :mod:`~condense.continual.learners`
(GDumb / incremental, seen-class masking), :mod:`~condense.continual.config` (config, presets),
:mod:`~condense.continual.run` (units, outputs, figure).
"""

from condense.continual.classes import ClassSubset, class_orders, class_subset, split_into_steps, step_sizes
from condense.continual.config import CONTINUAL_PRESETS, ContinualConfig, ContinualPreset, get_continual_preset
from condense.continual.learners import LEARNERS, FreshNetworkPerStep, OneNetwork, SeenClassMask, mask_unseen, seen_mask
from condense.continual.memory import MEMORY_BUILDERS, Memory, MemoryRequest, step_memory
from condense.continual.run import STEPS_COLUMNS, plot_accuracy, read_rows, run_continual, run_unit, summary_table

__all__ = [
    "ClassSubset", "class_orders", "class_subset", "split_into_steps", "step_sizes", "CONTINUAL_PRESETS", "ContinualConfig",
    "ContinualPreset", "get_continual_preset", "LEARNERS", "FreshNetworkPerStep", "OneNetwork", "SeenClassMask", "mask_unseen",
    "seen_mask", "MEMORY_BUILDERS", "Memory", "MemoryRequest", "step_memory", "STEPS_COLUMNS", "plot_accuracy", "read_rows",
    "run_continual", "run_unit", "summary_table",
]
