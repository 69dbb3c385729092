"""bench/bench_first_conv.py: each row's ratio is taken against the eager fp32 pass of its own
kind, and on a tiny batch the thin and the plain compiled route compute the eager logits."""

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

bench_first_conv = pytest.importorskip("bench_first_conv")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

ROW = re.compile(r"^\| 1×28×28 \| (\w+ \w+ \w+) \| (\d+) \| (\d+\.\d\d)× \|$")


def test_each_row_is_compared_with_the_eager_fp32_pass_of_its_own_kind():
    seconds = {"grad fp32 eager": 0.4, "grad bf16 thin": 0.1, "test fp32 eager": 0.9, "test fp32 plain": 0.3}
    rows = {m.group(1): (int(m.group(2)), float(m.group(3))) for line in bench_first_conv.report(1, seconds) if (m := ROW.match(line))}
    assert rows == {"grad fp32 eager": (400, 1.0), "grad bf16 thin": (100, 4.0), "test fp32 eager": (900, 1.0), "test fp32 plain": (300, 3.0)}


@pytest.mark.compile
def test_both_compiled_routes_compute_the_eager_logits():
    with torch.random.fork_rng():
        functions = bench_first_conv.pass_functions(1, 4, 6, ["fp32"], ["test"])
    logits = {name: function() for name, function in functions.items()}
    for route in ("plain", "thin"):
        torch.testing.assert_close(logits[f"test fp32 {route}"], logits["test fp32 eager"], rtol=1e-4, atol=1e-5)
