"""Test-wide settings.

Tests work on tiny tensors, where one torch thread is fastest and where two threads on a busy
2-core machine can be ten times slower. Benchmarks (bench/) measure speed; tests never do.
"""

import torch

torch.set_num_threads(1)
