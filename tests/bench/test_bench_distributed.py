"""bench/bench_distributed.py in its dry mode, on real processes: the authors'-style loop, one
package process and two one-thread gloo ranks under torchrun, side by side, with their records."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

bench_distributed = pytest.importorskip("bench_distributed")
pytest.importorskip("torch.distributed")


def test_dry_run_compares_the_reference_one_process_and_two_ranks(tmp_path):
    report, records_file = tmp_path / "report.md", tmp_path / "records.json"
    assert bench_distributed.main(["--dry", "--reference", "--compile", "off", "--cases", "dc-ipc1",
                                   "--out", str(report), "--json", str(records_file)]) == 0
    records = {r["setting"]: r for r in json.loads(records_file.read_text())}
    assert set(records) == {"reference", "one-process", "ranks"}
    for r in records.values():
        assert r["case"] == "dc-ipc1" and r["seconds_per_iteration"] > 0 and all(m > 0 for m in r["peak_rss_mib"])
    assert (records["ranks"]["ranks"], records["ranks"]["threads"]) == (2, 1)
    assert (records["one-process"]["ranks"], records["one-process"]["threads"]) == (1, bench_distributed.SINGLE_THREADS)
    # Same threads, same eager arithmetic in the same order: the package's DC step is the reference's, bit for bit.
    assert records["one-process"]["max_abs_diff_vs_reference"] == 0.0
    # The ranks each use one thread (another blocking of the convolutions): equal up to float rounding.
    assert 0.0 <= records["ranks"]["max_abs_diff_vs_one_process"] < 1e-4
    text = report.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| dc-ipc1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    seconds = {name: r["seconds_per_iteration"] for name, r in records.items()}
    assert cells[1:4] == [f"{seconds[name]:.1f}" for name in ("reference", "one-process", "ranks")]
    assert cells[4] == f"{seconds['one-process'] / seconds['ranks']:.2f}x"
    assert cells[6] == f"**{seconds['reference'] / seconds['ranks']:.2f}x**"
