"""torch.distributed (torchrun) against one process: 2 real gloo ranks on the CPU, sklearn-digits.

The ranks are started by the tests (plain processes with torchrun's environment, and once the
real ``torchrun -m condense run``); the single-process references are computed here.

Tolerances. Class-wise matching (DC, DSA) is exact: each rank back-propagates only its own
classes, so every entry of the all-reduced ∇_S L is one rank's value plus zeros. Contrastive
matching (DCC, DSAC) and the split network training add per-rank partial sums of gradients, in
another order than one process sums the whole batch: float32 rounding (≈ 1e-7 relative) per
step. The loop amplifies such differences strongly (measured in one process: adding 1e-6·N(0, 1)
to the initial S of ipc-1 DCC on sklearn-digits, K = 4, T = 5, changes the mean matching loss by
1 % in the first iteration and 4 % in the second), so the cases are kept short (2
iterations of 3 steps) and compared at an absolute tolerance of 1e-3 on images of magnitude ≈ 5
(measured: ≤ 1e-4), the 3-iteration run of the resume test at 1e-2 (measured: 5e-3); one split
training epoch, where nothing amplifies, is compared at 1e-6.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from condense.artifacts import SYNTHETIC_FILE, MetricsLog, SyntheticSet
from condense.data import load_dataset
from condense.distributed import my_share, slurm_array_shard, World
from condense.errors import ConfigError
from condense.synthesis import _read_checkpoint
from tests.condense import distributed_worker as worker

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-3
ATOL_RUN = 1e-2  # the 3-iteration run of the resume test: more steps to amplify rounding (measured 5e-3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(mode: str, out: Path, size: int = 2, timeout_s: float = 60.0) -> list[subprocess.Popen]:
    """``size`` processes of the worker with the environment torchrun would give them."""
    port = free_port()
    procs = []
    for rank in range(size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "CONDENSE_DIST_TIMEOUT": str(timeout_s)}
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.condense.distributed_worker", mode, str(out)], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        results.append((proc.returncode, err))
    return results


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("sklearn-digits")


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    """The worker's ``main`` mode on 2 ranks: equivalence cases, evaluation, runs (one launch for all)."""
    out = tmp_path_factory.mktemp("dist")
    results = finish(start_ranks("main", out), timeout=240)
    for code, err in results:
        assert code == 0, err[-3000:]
    return out, torch.load(out / "results.pt", weights_only=True)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_shutdown_joins_the_process_groups_threads(tmp_path):
    """Leaving the group must join gloo's worker threads before the interpreter exits: a worker
    that releases a collective's tensors during finalisation aborts the rank (condense.distributed.shutdown)."""
    for code, err in finish(start_ranks("threads", tmp_path), timeout=120):
        assert code == 0, err[-3000:]
    for rank in (0, 1):
        counts = json.loads((tmp_path / f"threads-rank{rank}.json").read_text())
        gloo_threads = counts["in_group"] - counts["before_init"]
        assert gloo_threads > 0, counts
        assert counts["after_shutdown"] == counts["before_init"], counts


@pytest.mark.parametrize("case", list(worker.CASES))
def test_two_ranks_give_the_single_process_synthetic_set(distributed, dataset, case):
    _, results = distributed
    single = worker.condense_case(case, dataset)
    got = results[case]
    assert got["ranks_agree"]  # every rank took the same steps: no drift between the ranks' copies of S
    if case in ("dc",):  # class-wise matching, network training not split: bit for bit
        assert torch.equal(got["images"], single["images"])
        assert got["losses"] == single["losses"]
    else:
        torch.testing.assert_close(got["images"], single["images"], rtol=0, atol=ATOL)
        torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(single["losses"]), rtol=1e-3, atol=0)
    assert not torch.equal(got["images"], initial_images(case, dataset))  # S did move


def initial_images(case: str, dataset) -> torch.Tensor:
    from condense.synthesis import Condenser

    return Condenser(worker.case_config(case), dataset, device="cpu").synthetic.detach()


def test_split_training_epoch_equals_one_process(distributed, dataset):
    _, results = distributed
    single = worker.one_training_epoch(dataset, split=False)
    for name, value in single.items():
        torch.testing.assert_close(results["epoch"][name], value, rtol=0, atol=1e-6, msg=name)


def test_networks_split_over_ranks_give_the_same_accuracies(distributed, dataset):
    from condense.evaluation import evaluate_images

    _, results = distributed
    images, labels = dataset.normalised_train()
    single = evaluate_images(images[:40], labels[:40], dataset, worker.EVALUATION, augmentation="none", seed=0, key="dist", device="cpu")
    assert results["evaluation"] == single  # each network is trained whole by one rank: exact


def test_killed_and_resumed_distributed_run_equals_the_uninterrupted_one(distributed, dataset, tmp_path):
    out, _ = distributed
    cut = out / "cut"
    assert not (cut / "DONE").exists() and _read_checkpoint(cut / "checkpoint.pt")["iteration"] == 1
    assert json.loads((out / "full" / "config.json").read_text())["world_size"] == 2
    # resume through the real launcher and command line
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "condense", "run",
               "--preset", worker.RUN_PRESET, "--out", str(cut), "--resume", "--no-progress", "--device", "cpu"]
    for pair in worker.RUN_SETS:
        command += ["--set", pair]
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("synthetic set after 3 iterations") == 1  # rank 1 prints nothing
    full, resumed = SyntheticSet.load(out / "full" / SYNTHETIC_FILE), SyntheticSet.load(cut / SYNTHETIC_FILE)
    assert torch.equal(full.images, resumed.images)
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(MetricsLog(out / "full" / "metrics.jsonl").read()) == strip(MetricsLog(cut / "metrics.jsonl").read())
    # and the distributed run is the single-process run
    from condense.synthesis import condense_dataset

    single = condense_dataset(worker.run_config(), dataset, tmp_path / "single", device="cpu", progress=False)
    torch.testing.assert_close(full.images, single.images, rtol=0, atol=ATOL_RUN)
    single_eval = [r for r in MetricsLog(tmp_path / "single" / "metrics.jsonl").read() if r["event"] == "evaluation"]
    assert [r for r in MetricsLog(cut / "metrics.jsonl").read() if r["event"] == "evaluation"][0]["accuracies"] == single_eval[0]["accuracies"]


def test_evaluate_and_study_commands_on_two_ranks_print_what_one_process_prints(distributed, tmp_path, capsys):
    from condense.__main__ import main

    out, _ = distributed
    commands = worker.cli_commands(out)
    assert main(commands["evaluate"]) == 0
    assert (out / "evaluate-rank0.txt").read_text() == capsys.readouterr().out  # every network whole on one rank: exact
    single = worker.cli_commands(tmp_path)["study"]
    assert main(single) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("| method"):]
    assert (out / "study-rank0.txt").read_text().endswith(table)  # DC at ipc 1: class-parallel and exact
    assert "| dc | " in table and "| random | " in table
    assert not list((out / "study").glob("*/DONE.*"))  # no stray files from rank 1


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_lost_rank_stops_the_job_with_a_one_line_error(tmp_path, how):
    timeout = 4.0
    started = time.perf_counter()
    procs = start_ranks(how, tmp_path, timeout_s=timeout)
    code, err = finish(procs[:1], timeout=60)[0]
    elapsed = time.perf_counter() - started
    procs[1].kill()
    procs[1].communicate()
    assert code == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: rank 0 of 2:") and "another rank died or did not answer" in last, err[-3000:]
    assert "Traceback" not in err
    assert elapsed < 40  # start-up (a few s) + the 4 s timeout, far below the 900 s default


def test_class_and_network_shares_tile_the_items():
    for size in (1, 2, 3, 7):
        shares = [my_share(10, World(rank, size)) for rank in range(size)]
        assert [i for s in shares for i in s] == list(range(10))
        assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_study_shard_comes_from_a_slurm_job_array():
    assert slurm_array_shard({}) is None
    assert slurm_array_shard({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}) == (2, 4)
    assert slurm_array_shard({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "6"}) == (2, 4)
    with pytest.raises(ConfigError, match="contiguous"):
        slurm_array_shard({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8"})


def test_study_command_reads_the_slurm_shard(monkeypatch):
    from condense.__main__ import _study_shard

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.delenv("SLURM_ARRAY_TASK_MIN", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_MAX", raising=False)
    assert _study_shard(None) == (1, 3)
    assert _study_shard("0/2") == (0, 2)  # --shard wins
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert _study_shard(None) == (0, 1)
