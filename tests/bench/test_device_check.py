"""bench/device_check.sh, the script a lent GPU runs, works: its dry mode runs every step on this CPU.

A device session lasts minutes, so the script must not fail there for a reason a CPU could have
shown: a renamed flag, a missing file, a step that writes nothing. The dry mode runs the same
steps on tiny settings; this test checks every step finished and left what the GPU run reports.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "device_check.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils' timeout")
def test_device_check_dry_run_finishes_every_step(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, DRY="1", OUT=str(out), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    steps = dict(line.split(" ", 1) for line in (out / "steps.txt").read_text().splitlines() if " " in line)
    assert set(steps) == {"cuda_tests", "synthesis", "evaluation", "paper-dc", "paper-dcc"}
    assert all(detail.startswith("rc=0 ") for detail in steps.values()), steps
    assert "torch" in (out / "env.txt").read_text()

    with tarfile.open(out / "device_check.tar.gz") as archive:
        archive.extractall(tmp_path / "files", filter="data")
    files = tmp_path / "files"
    synthesis = json.loads((files / "synthesis.json").read_text())
    assert {(r["case"], r["implementation"]) for r in synthesis} == {
        (case, impl) for case in ("dc-ipc1", "dcc-ipc10") for impl in ("reference", "package-eager")
    }
    for record in synthesis:
        assert {"seconds_per_iteration", "peak_rss_mib", "max_abs_diff_vs_reference"} <= set(record)
        assert record["seconds_per_iteration"] > 0
    # the package and the reference loop compute the same iteration (eager, same draws)
    assert max(r["max_abs_diff_vs_reference"] or 0.0 for r in synthesis) < 1e-3
    evaluation = json.loads((files / "evaluation.json").read_text())
    assert {r["implementation"] for r in evaluation} == {"original", "package-eager"}
    for method in ("dc", "dcc"):
        events = [json.loads(line) for line in (files / f"paper-{method}.jsonl").read_text().splitlines()]
        assert [e["iteration"] for e in events if e["event"] == "evaluation"] == [0, 2]
        assert sum(e["event"] == "iteration" for e in events) == 2
