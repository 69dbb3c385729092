"""bench/bench_synthesis.py in its dry mode: the JSON records of issue 9, and the package's eager
DCC iteration equal to the authors'-style reference loop bit for bit (same order of operations)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

bench_synthesis = pytest.importorskip("bench_synthesis")


def test_dry_run_writes_one_record_per_case_and_implementation(tmp_path):
    out = tmp_path / "records.json"
    bench_synthesis.main(["--dry", "--compile", "off", "--cases", "dcc-ipc10", "--threads", "1", "--retries", "0", "--no-flops",
                          "--implementations", "reference", "package-eager", "package-onepass", "--json", str(out)])
    records = {r["implementation"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"reference", "package-eager", "package-onepass"}
    for r in records.values():
        assert r["case"] == "dcc-ipc10" and r["seconds_per_iteration"] > 0 and r["peak_rss_mib"] > 0
        assert {"max_abs_diff_vs_reference", "cpu_seconds_per_iteration"} <= set(r)
    assert records["reference"]["max_abs_diff_vs_reference"] is None
    assert records["package-eager"]["max_abs_diff_vs_reference"] == 0.0  # class by class, then / C: the reference's order
    assert records["package-onepass"]["max_abs_diff_vs_reference"] < 1e-3  # same mathematics, another summation order
