"""bench/profile_pass.py on a tiny batch: both variants are timed and profiled, each operator
table lists the largest self-CPU shares first (together at most the whole), and the closing
compiled-vs-eager ratio is a positive number.

Compiles the ConvNet once (10–30 s on 2 cores), hence the ``compile`` mark.
"""

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

profile_pass = pytest.importorskip("profile_pass")

# torch.compile loads parts of torch through torch.jit
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

HEADER = re.compile(r"^(eager|compiled): (\d+) ms per pass; share of self CPU time:$")
ROW = re.compile(r"^\s+(\d+\.\d) %  \S")
RATIO = re.compile(r"^compiled vs eager: (\d+\.\d+)x$")


@pytest.mark.compile
def test_prints_both_variants_shares_and_a_positive_ratio(capsys):
    rows = 2
    with torch.random.fork_rng():  # main seeds torch's global generator
        assert profile_pass.main(["--threads", "1", "--batch", "4", "--repeats", "1", "--rows", str(rows)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine: ") and "4 images 1x28x28" in lines[0]

    shares: dict[str, list[float]] = {}
    current = None
    for line in lines[1:]:
        if header := HEADER.match(line):
            current = header.group(1)
            shares[current] = []
        elif row := ROW.match(line):
            assert current is not None, f"an operator row before any variant's header: {line!r}"
            shares[current].append(float(row.group(1)))
    assert list(shares) == ["eager", "compiled"]
    for name, values in shares.items():
        assert len(values) == rows, f"{name}: {values}"
        assert all(0.0 <= v <= 100.0 for v in values), f"{name}: {values}"
        assert values == sorted(values, reverse=True), f"{name}: largest share first, got {values}"
        assert sum(values) <= 100.0 + 0.05 * rows, f"{name}: shares of one total sum to {sum(values)}"  # each rounded to 0.1

    ratio = RATIO.match(lines[-1])
    assert ratio is not None, f"last line: {lines[-1]!r}"
    assert float(ratio.group(1)) > 0
