"""dynamics.recording: one record per (run, time), ordered runs, refusal of foreign files, example.

Saving and reloading a tracked run, and its rows' distances and velocities, are tested with the
tracker in ``tests/dynamics/test_tracking.py``.
"""

from __future__ import annotations

import doctest

import pytest
import torch

import dynamics.recording as recording_module
from condense.errors import CondenseError
from dynamics.recording import KernelRecord, KernelRecorder
from dynamics.velocity import KernelMetadata


def _recorder() -> KernelRecorder:
    return KernelRecorder(KernelMetadata(mode="trace", time_unit="epoch", probe_indices=[0, 1]))


def _record(run: str, time: float, scale: float = 1.0) -> KernelRecord:
    return KernelRecord(run, time, "epoch", scale * torch.eye(2))


def test_a_resumed_loop_replaces_the_record_of_the_same_run_and_time():
    recorder = _recorder()
    recorder.add(_record("a", 1, scale=1.0))
    recorder.add(_record("a", 1.0, scale=3.0))  # the same time, as a float
    assert len(recorder) == 1
    assert torch.equal(recorder.records_of("a")[0].kernel, 3 * torch.eye(2))


def test_records_are_ordered_by_first_seen_run_then_time():
    recorder = _recorder()
    for run, time in [("b", 5), ("a", 2), ("b", 0), ("a", 1)]:
        recorder.add(_record(run, time))
    assert recorder.runs() == ["b", "a"]
    assert [(r.run, r.time) for r in recorder.records] == [("b", 0), ("b", 5), ("a", 1), ("a", 2)]
    with pytest.raises(KeyError, match="no records for run 'c'"):
        recorder.records_of("c")


def test_load_refuses_other_torch_files_and_incomplete_recordings(tmp_path):
    torch.save({"format": "condense.SyntheticSet/1", "records": []}, tmp_path / "other.pt")
    with pytest.raises(CondenseError, match="is not a kernel recording"):
        KernelRecorder.load(tmp_path / "other.pt")
    state = _recorder().state_dict()
    del state["metadata"]
    torch.save(state, tmp_path / "incomplete.pt")
    with pytest.raises(CondenseError, match="incomplete kernel recording"):
        KernelRecorder.load(tmp_path / "incomplete.pt")


def test_module_example_runs():
    result = doctest.testmod(recording_module, raise_on_error=False)
    assert result.failed == 0 and result.attempted >= 8
