"""Test-wide settings.

Tests work on tiny tensors, where one torch thread is fastest and where two threads on a busy
2-core machine can be ten times slower. Benchmarks (bench/) measure speed; tests never do.

``compile="auto"`` runs eagerly in the tests (``CONDENSE_COMPILE=off``): compiling costs seconds
per graph. Only the tests that check compilation (``tests/condense/test_compiled.py``, marked
``compile``) ask for ``compile="on"`` explicitly.
"""

import os

import torch

os.environ["CONDENSE_COMPILE"] = "off"
torch.set_num_threads(1)
