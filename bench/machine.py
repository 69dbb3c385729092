"""One description of the machine a benchmark ran on, for every report in ``bench/``."""

from __future__ import annotations

import os
import platform
import subprocess

import torch


def cpu_name() -> str:
    """The CPU's model name (``lscpu``), else what ``platform`` knows."""
    name = platform.processor() or platform.machine() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return name


def describe_machine(threads: int | None = None, device: torch.device | None = None) -> str:
    """``"<CPU or GPU>, N cores, torch X[, T thread(s) per run], load average at start a / b / c"``."""
    parts = [torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else cpu_name()]
    parts += [f"{os.cpu_count()} cores", f"torch {torch.__version__}"]
    if threads is not None:
        parts.append(f"{threads} thread(s) per run")
    if hasattr(os, "getloadavg"):
        parts.append("load average at start " + " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    return ", ".join(parts)
