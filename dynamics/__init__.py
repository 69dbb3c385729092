"""Training dynamics of networks trained on condensed sets: empirical NTK and kernel velocity.

    >>> from dynamics import empirical_ntk, kernel_distance, KernelTracker, make_probe   # doctest: +SKIP
    >>> probe = make_probe(load_dataset("fashion-mnist"), per_class=5, seed=0)          # 50 test images
    >>> tracker = KernelTracker(probe, epochs=log_schedule(301))                         # a condense Callback
    >>> train_and_test(..., callbacks=[tracker], tag="dcc")                               # records K_t
    >>> tracker.recorder.trajectory("dcc").velocities

Modules, top-down: :mod:`~dynamics.ntk` (empirical NTK; the CPU default's per-example Jacobians
in :mod:`~dynamics.layerwise_jacobian`, the other implementations in
:mod:`~dynamics.ntk_implementations`), :mod:`~dynamics.velocity` (kernel
distance, velocity, distance from init, probes), :mod:`~dynamics.tracking` (the callback that
records kernels during any ``condense`` training loop; the records saved by
:mod:`~dynamics.recording`), :mod:`~dynamics.presets` and
:mod:`~dynamics.track` (``python -m dynamics.track --run <preset>``; its command line in
:mod:`~dynamics.track_cli`, its tables in :mod:`~dynamics.track_tables`), :mod:`~dynamics.figures`
(``python -m dynamics.figures runs/<preset>``). ``dynamics`` builds on ``condense``; never the reverse.
"""

from dynamics.ntk import NTKImplementation, empirical_ntk
from dynamics.presets import TRACK_PRESETS, TrackPreset, get_track_preset
from dynamics.tracking import (
    KernelRecord,
    KernelRecorder,
    KernelTracker,
    ProbeSet,
    log_schedule,
    make_probe,
    parse_schedule,
    preserved_state,
)
from dynamics.velocity import (
    KernelMetadata,
    KernelTrajectory,
    class_balanced_probe,
    distance_from_init,
    kernel_distance,
    kernel_label_alignment,
    kernel_velocity,
    trajectory_from_kernels,
)

__all__ = [
    "NTKImplementation", "empirical_ntk",
    "KernelMetadata", "KernelTrajectory", "class_balanced_probe", "distance_from_init", "kernel_distance",
    "kernel_label_alignment", "kernel_velocity", "trajectory_from_kernels",
    "KernelRecord", "KernelRecorder", "KernelTracker", "ProbeSet", "log_schedule", "make_probe", "parse_schedule",
    "preserved_state",
    "TRACK_PRESETS", "TrackPreset", "get_track_preset",
]
