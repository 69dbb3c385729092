"""Benchmark: one condensation iteration — the authors'-style loop vs the package, fp32 and bf16.

For each case (method × ipc) and on the same data (real Fashion-MNIST), config and seed, the
implementations run one after another, each in a fresh process (``multiprocessing`` spawn, so
that each has its own peak-RSS mark), interleaved over ``--rounds``:

- ``reference``: :mod:`reference_dc` (next to this file), structured like the authors' code:
  per-class real and synthetic passes, ``match_loss`` parameter by parameter, ``DiffAugment``
  with per-image Python lists for the affine matrices;
- ``package-eager``: ``condense.Condenser(config, dataset, device='cpu').run_iteration()`` with
  ``compile='off'``;
- ``package-compiled``: the same with ``compile='on'`` (real-gradient passes and training on S
  through ``torch.compile``; :mod:`condense.compiled`);
- ``package-compiled-bf16``: compiled, with ``real_grad_dtype='bfloat16'`` (real-data gradients
  under ``torch.autocast(dtype=torch.bfloat16)``);
- ``package-compiled-bf16-real-and-train``: compiled, with bf16 real gradients and
  ``network_train_dtype='bfloat16'`` (the T epochs of training θ on S under bf16 autocast too;
  not in the default list);
- ``package-eager-bf16``: eager with bf16 real gradients (not in the default list).

The package implementations are warmed up (untimed) by a 2-step, 1-epoch iteration of the same
shapes on a throwaway Condenser, which compiles every graph the timed iteration uses.

``--noise-floor`` adds, for item 4 of issue 9 (is the DCC difference rounding?):
``reference-perturbed`` (the reference from the initial set + 1e-7·N(0, 1)), ``package-perturbed``
(the same for the package) and ``package-onepass`` (the package with the former one-pass DCC target:
one weighted forward/backward over all classes' real batches, a different summation order).

Loop sizes are the paper's (K=10, T=5 at ipc 1; K=10, T=50 at ipc 10), real batch 256 per
class. DCC and DSAC are timed after the warm-up (``outer_warmup = inner_warmup = 0``: every
matching step contrastive); at iteration 0 with the default warm-up they would be DC.

Measured per implementation: seconds per iteration (after a warm-up of one real and one synthetic
gradient pass of the case's shapes on a throwaway network), peak resident memory during the timed
iterations (``/proc/self/clear_refs`` resets the high-water mark when they start, then
``VmHWM``; the start ``VmRSS`` is reported too), the mean matching loss, and the synthetic set
after the timed iterations. All three start from the same set and draw the same random numbers,
so the reference and the fp32 package agree up to float rounding: exactly for DC at ipc 1, to
~1e-7…1e-3 for the contrastive cases, whose real target (the mean of the class gradients)
cancels most of each class gradient and so magnifies differences in summation order.
``--noise-floor`` measures that sensitivity: it runs the package once more from the initial set
plus 1e-7·N(0, 1) noise and reports how far that lands from the unperturbed package.
A measurement during which other processes kept more than ``--max-other-load`` cores busy (from
``/proc/stat`` minus the process's own CPU time) is repeated up to ``--retries`` times; the table
reports the other load of the measurement it keeps. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` over one matching step and one network epoch of the
package, and scaled to an iteration as ``K·step + (K−1)·T·epoch`` (convolutions and matrix
products only; the same count is used for all three, so GFLOP/s compares like with like).

``--accuracy`` runs instead a small study of the bf16 option: the real gradients of one batch in
fp32 and bf16 (max |Δ|, cosine per layer), and DC at ipc 1 condensed for a few iterations from one
seed in fp32 and in bf16, each evaluated by a few ConvNets.

``--json FILE`` writes one record per (case, implementation): ``case``, ``implementation``,
``seconds_per_iteration``, ``peak_rss_mib``, ``max_abs_diff_vs_reference`` and more.

Usage::

    python bench/bench_synthesis.py --quick                 # smoke run, about a minute
    python bench/bench_synthesis.py --dry --compile off     # seconds: sklearn digits, tiny ConvNet
    python bench/bench_synthesis.py --cases dc-ipc1 dcc-ipc10 --threads 1 --json out.json
    python bench/bench_synthesis.py --implementations reference package-compiled --cases dc-ipc1
    python bench/bench_synthesis.py --out report.md         # all cases, paper loop sizes (see below)
    python bench/bench_synthesis.py --cases dc-ipc1 dcc-ipc1 --iterations 2 --threads 1
    python bench/bench_synthesis.py --accuracy              # bf16 effect (a few minutes)

Cost on 2 CPU cores (about 110 GFLOP/s in fp32): an ipc-1 iteration is ≈ 7.5 TFLOP (the real
passes: 10 steps × 10 classes × 256 images), about a minute; an ipc-10 iteration adds ≈ 13 TFLOP
of network training (9 × 50 epochs on 100 images). One timed iteration of every case and
implementation therefore takes about 20 minutes; pick ``--cases`` to fit a budget.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from machine import describe_machine  # noqa: E402  (bench/machine.py)

from condense.augment import DSA  # noqa: E402
from condense.config import CondenseConfig, EvaluationConfig  # noqa: E402
from condense.data import ImageDataset, load_dataset  # noqa: E402
from condense.networks import build_network  # noqa: E402
from condense.runtime import derive_generator, seeded_global_rng  # noqa: E402
from condense.synthesis import Condenser  # noqa: E402
from condense.training import train_epoch  # noqa: E402

DATASET = "fashion-mnist"
#: name -> (method, ipc)
CASES: dict[str, tuple[str, int]] = {
    "dc-ipc1": ("dc", 1),
    "dcc-ipc1": ("dcc", 1),
    "dsac-ipc1": ("dsac", 1),
    "dc-ipc10": ("dc", 10),
    "dcc-ipc10": ("dcc", 10),
}
#: implementation -> (package compile mode, real-gradient dtype, network-training dtype); the reference has none
PACKAGE_IMPLEMENTATIONS: dict[str, tuple[str, str, str]] = {
    "package-eager": ("off", "float32", "float32"),
    "package-compiled": ("on", "float32", "float32"),
    "package-compiled-bf16": ("on", "bfloat16", "float32"),
    "package-compiled-bf16-real-and-train": ("on", "bfloat16", "bfloat16"),
    "package-eager-bf16": ("off", "bfloat16", "float32"),
    "package-perturbed": ("off", "float32", "float32"),
    "package-onepass": ("off", "float32", "float32"),
}
IMPLEMENTATIONS = ("reference", "package-eager", "package-compiled", "package-compiled-bf16")
ALL_IMPLEMENTATIONS = ("reference", "reference-perturbed", *PACKAGE_IMPLEMENTATIONS)
#: --noise-floor: both loops again from the initial set plus N(0, NOISE²) noise, and the one-pass target
NOISE_FLOOR = ("reference-perturbed", "package-perturbed", "package-onepass")
NOISE = 1e-7
#: --quick: what changes from the paper's loop (ipc -> config fields), besides real batch 64
QUICK_LOOP: dict[int, dict[str, int]] = {1: dict(matching_steps=2, network_epochs=2), 10: dict(matching_steps=2, network_epochs=2)}
QUICK_REAL_BATCH = 64
#: --dry: seconds on any machine (sklearn's 8×8 digits, ConvNet width 32, real batch 8, K=2, T=1)
DRY = dict(dataset="sklearn-digits", network="convnet-w32", real_batch=8, loop=dict(matching_steps=2, network_epochs=1))


# --------------------------------------------------------------------------------------------
# configuration


def case_config(case: str, real_batch: int, quick: bool, seed: int = 0, dry: bool = False) -> CondenseConfig:
    """The config of one case: paper loop sizes (or the quick / dry ones), contrastive from the start."""
    method, ipc = CASES[case]
    dataset, network = (DRY["dataset"], DRY["network"]) if dry else (DATASET, "convnet")
    config = CondenseConfig(dataset=dataset, network=network, method=method, ipc=ipc, real_batch=real_batch, outer_warmup=0, inner_warmup=0, seed=seed)
    if dry:
        return config.replace(**DRY["loop"])
    return config.replace(**QUICK_LOOP[ipc]) if quick else config


@dataclass
class Job:
    """One measurement, run in a fresh process."""

    impl: str
    config: CondenseConfig
    dataset: ImageDataset
    iterations: int
    threads: int
    count_flops: bool = False
    warm_up: bool = True
    device: str = "cpu"


@dataclass
class Measurement:
    impl: str
    seconds: list[float]
    losses: list[float]
    rss_start_mib: float
    peak_rss_mib: float
    peak_is_reset: bool
    synthetic: torch.Tensor
    other_load: float | None = None  # CPU cores used by other processes during the timed iterations
    flops: int | None = None
    flop_detail: dict[str, int] = field(default_factory=dict)
    warm_up_seconds: float = 0.0
    cpu_seconds: list[float] = field(default_factory=list)  # CPU time of the measuring process per iteration
    peak_cuda_mib: float | None = None  # torch.cuda.max_memory_allocated during the timed iterations (CUDA only)

    @property
    def mean_cpu_seconds(self) -> float:
        return sum(self.cpu_seconds) / len(self.cpu_seconds) if self.cpu_seconds else math.nan

    @property
    def mean_seconds(self) -> float:
        return sum(self.seconds) / len(self.seconds)


# --------------------------------------------------------------------------------------------
# memory


def _proc_status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> tuple[float, bool]:
    """Reset the process's peak-RSS mark (Linux); return (current RSS in MiB, whether it was reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    rss = _proc_status_kib("VmRSS")
    return (rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024, reset


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) — Linux only."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), usage.ru_utime + usage.ru_stime


def other_load(before: tuple[float, float] | None, after: tuple[float, float] | None, wall: float) -> float | None:
    """Average number of cores other processes kept busy between two :func:`cpu_seconds` readings."""
    if before is None or after is None or wall <= 0:
        return None
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall


def peak_rss_mib() -> float:
    """Peak RSS since the last :func:`reset_peak_rss` (``VmHWM``; else ``ru_maxrss``, not reset)."""
    hwm = _proc_status_kib("VmHWM")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


# --------------------------------------------------------------------------------------------
# one measurement (child process)


class _PackageRunner:
    def __init__(self, config: CondenseConfig, dataset: ImageDataset, condenser_class: type[Condenser] = Condenser, device: str = "cpu"):
        self.condenser = condenser_class(config, dataset, device=device)

    @property
    def synthetic(self) -> torch.Tensor:
        return self.condenser.synthetic

    def run_iteration(self) -> float:
        return self.condenser.run_iteration().loss


class OnePassCondenser(Condenser):
    """The package before issue 9: the DCC target in one weighted pass over all classes' real batches
    (per-sample weights 1/(C·|B_c|)) — the same mathematics, another summation order, C× the memory."""

    def _mean_real_gradient(self, network: torch.nn.Module, reals: list[torch.Tensor]) -> list[torch.Tensor]:
        from condense.matching import parameter_gradients

        labels = torch.cat([self._class_label(c, len(r)) for c, r in enumerate(reals)])
        weights = torch.cat([torch.full((len(r),), 1.0 / (self.num_classes * len(r)), device=self.device) for r in reals])
        with self._real_autocast():
            return parameter_gradients(network, torch.cat(reals), labels, sample_weights=weights, forward=self.real_forward)


class _ReferenceRunner:
    def __init__(self, config: CondenseConfig, dataset: ImageDataset, device: str = "cpu"):
        from reference_dc import ReferenceCondenser

        self.reference = ReferenceCondenser(config, dataset, device=device)

    @property
    def synthetic(self) -> torch.Tensor:
        return self.reference.synthetic

    def run_iteration(self) -> float:
        return self.reference.run_iteration()


def _perturb(synthetic: torch.Tensor) -> None:
    with torch.no_grad():
        synthetic.add_(NOISE * torch.randn(synthetic.shape, generator=torch.Generator().manual_seed(1)).to(synthetic.device))


def package_config(impl: str, config: CondenseConfig) -> CondenseConfig:
    mode, real_dtype, train_dtype = PACKAGE_IMPLEMENTATIONS[impl]
    return config.replace(compile=mode, real_grad_dtype=real_dtype, network_train_dtype=train_dtype)


def make_runner(impl: str, config: CondenseConfig, dataset: ImageDataset, device: str = "cpu") -> _PackageRunner | _ReferenceRunner:
    if impl.startswith("reference"):
        runner: _PackageRunner | _ReferenceRunner = _ReferenceRunner(config, dataset, device)
    elif impl in PACKAGE_IMPLEMENTATIONS:
        runner = _PackageRunner(package_config(impl, config), dataset, OnePassCondenser if impl == "package-onepass" else Condenser, device)
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    if impl.endswith("-perturbed"):
        _perturb(runner.synthetic)
    return runner


def warm_up(config: CondenseConfig, image_shape: tuple[int, ...], num_classes: int, bf16: bool, device: str = "cpu") -> None:
    """One real and one synthetic (second-order) gradient pass of the case's batch shapes, thrown away."""
    generator = torch.Generator().manual_seed(12345)
    with seeded_global_rng(generator):
        network = build_network(config.network, image_shape[0], num_classes, image_shape[1:]).to(device)
    params = list(network.parameters())
    real = torch.randn(config.real_batch, *image_shape, generator=generator).to(device)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)
    with autocast:
        torch.autograd.grad(F.cross_entropy(network(real), torch.zeros(len(real), dtype=torch.long, device=device)), params)
    for n in {config.ipc, config.ipc * num_classes}:
        syn = torch.randn(n, *image_shape, generator=generator).to(device).requires_grad_(True)
        grads = torch.autograd.grad(F.cross_entropy(network(syn), torch.zeros(n, dtype=torch.long, device=device)), params, create_graph=True)
        sum(g.square().sum() for g in grads).backward()


def warm_up_package(impl: str, config: CondenseConfig, dataset: ImageDataset, device: str = "cpu") -> None:
    """An untimed 2-step, 1-epoch iteration of the same shapes on a throwaway Condenser: compiles
    (or, eager, lets oneDNN pick) everything the timed iteration runs."""
    short = package_config(impl, config).replace(matching_steps=2, network_epochs=1, seed=config.seed + 1000)
    condenser_class = OnePassCondenser if impl == "package-onepass" else Condenser
    condenser_class(short, dataset, device=device).run_iteration()


def iteration_flops(config: CondenseConfig, dataset: ImageDataset) -> dict[str, int]:
    """FLOPs of one iteration of the package: K × (one matching step) + (K−1)·T × (one epoch on S).

    Counted with ``FlopCounterMode`` (convolutions and matrix products, forward and backward,
    second-order terms included); the matching step is a 1-step iteration of a Condenser.
    """
    one_step = Condenser(config.replace(matching_steps=1, compile="off"), dataset, device="cpu")
    with FlopCounterMode(display=False) as counter:
        one_step.run_iteration()
    step = counter.get_total_flops()
    shape = one_step.image_shape
    generator = torch.Generator().manual_seed(0)
    with seeded_global_rng(generator):
        network = build_network(config.network, shape[0], dataset.num_classes, shape[1:])
    optimizer = torch.optim.SGD(network.parameters(), lr=config.network_lr)
    augment = None
    if config.uses_dsa:
        dsa = DSA()
        augment = lambda x, g: dsa(x, g, siamese=False)  # noqa: E731
    with FlopCounterMode(display=False) as counter:
        train_epoch(network, optimizer, one_step.synthetic.detach(), one_step.labels, batch_size=config.network_batch, generator=generator, augment=augment)
    epoch = counter.get_total_flops()
    total = config.steps * step + (config.steps - 1) * config.epochs_between_steps * epoch
    return {"matching_step": step, "network_epoch": epoch, "iteration": total}


def _synchronise(device: str) -> None:
    """Wait for queued GPU work, so that a wall-clock interval covers the work it timed."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(job: Job) -> Measurement:
    """Time ``job.iterations`` iterations of one implementation in this (fresh) process."""
    torch.set_num_threads(job.threads)
    cuda = torch.device(job.device).type == "cuda"
    runner = make_runner(job.impl, job.config, job.dataset, job.device)
    image_shape = tuple(job.dataset.train_images.shape[1:])
    if not job.warm_up:
        warm_up_seconds = 0.0
    elif job.impl in PACKAGE_IMPLEMENTATIONS:
        started = time.perf_counter()
        warm_up_package(job.impl, job.config, job.dataset, job.device)
        warm_up_seconds = time.perf_counter() - started
    else:
        warm_up(job.config, image_shape, job.dataset.num_classes, bf16=False, device=job.device)
        warm_up_seconds = 0.0
    _synchronise(job.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_start, reset = reset_peak_rss()
    cpu_before = cpu_seconds()
    seconds, cpu, losses = [], [], []
    for _ in range(job.iterations):
        started, cpu_started = time.perf_counter(), time.process_time()
        losses.append(runner.run_iteration())
        _synchronise(job.device)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    print(f"  [{job.impl}: {seconds[-1]:.1f} s wall, {cpu[-1]:.1f} s CPU of this process, {job.threads} thread(s), {job.device}]", flush=True)
    result = Measurement(
        impl=job.impl, seconds=seconds, losses=losses, rss_start_mib=rss_start, peak_rss_mib=peak_rss_mib(),
        peak_is_reset=reset, synthetic=runner.synthetic.detach().cpu().clone(),
        other_load=other_load(cpu_before, cpu_seconds(), sum(seconds)), warm_up_seconds=warm_up_seconds, cpu_seconds=cpu,
        peak_cuda_mib=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    )
    if job.count_flops:
        result.flop_detail = iteration_flops(job.config, job.dataset)
        result.flops = result.flop_detail["iteration"]
    return result


def measure_in_subprocess(job: Job) -> Measurement:
    """Run :func:`measure` in a fresh spawned process (clean memory accounting, no shared state)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (job,))


def measure_quietly(job: Job, max_other_load: float, retries: int) -> Measurement:
    """:func:`measure_in_subprocess`, repeated up to ``retries`` times while other processes kept
    more than ``max_other_load`` cores busy on average; returns the least disturbed measurement."""
    best = measure_in_subprocess(job)
    for _ in range(retries):
        if best.other_load is None or best.other_load <= max_other_load:
            break
        print(f"  {job.impl}: other processes used {best.other_load:.2f} cores; measuring again", flush=True)
        again = measure_in_subprocess(job)
        if again.other_load is not None and again.other_load < best.other_load:
            best = again
    return best


# --------------------------------------------------------------------------------------------
# report


def machine_description(threads: int) -> str:
    return describe_machine(threads)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 100 else f"{seconds:.0f}"


def summary_row(case: str, config: CondenseConfig, results: dict[str, Measurement]) -> str:
    """Seconds per iteration of each implementation and its speed-up over the reference."""
    ref = results.get("reference")
    loop = f"K={config.steps}, T={config.epochs_between_steps}, real batch {config.real_batch}"
    wall, cpu = [], []
    for impl, r in results.items():
        wall_ratio = f" ({ref.mean_seconds / r.mean_seconds:.2f}×)" if ref is not None and impl != "reference" else ""
        cpu_ratio = f" ({ref.mean_cpu_seconds / r.mean_cpu_seconds:.2f}×)" if ref is not None and impl != "reference" else ""
        wall.append(f"{impl} {_fmt_s(r.mean_seconds)}{wall_ratio}")
        cpu.append(f"{impl} {_fmt_s(r.mean_cpu_seconds)}{cpu_ratio}")
    return f"| {case} | {loop} | {' · '.join(wall)} | {' · '.join(cpu)} |"


def difference(impl: str, results: dict[str, Measurement]) -> tuple[str, float | None]:
    """(what the ΔS is measured against, max |ΔS|): the reference, or for a perturbed run its own
    unperturbed implementation (the noise floor)."""
    if impl == "reference":
        return "–", None
    base = "package-eager" if impl == "package-perturbed" else "reference"
    if base not in results:
        return "–", None
    return base, (results[impl].synthetic - results[base].synthetic).abs().max().item()


def detail_rows(case: str, results: dict[str, Measurement]) -> list[str]:
    """Per implementation: time, GFLOP/s, peak memory, loss and agreement with the reference."""
    flops = next((r.flops for r in results.values() if r.flops), None)
    rows = []
    for impl, r in results.items():
        rate = f"{flops / r.mean_seconds / 1e9:.0f}" if flops else "–"
        gflop = f"{flops / 1e9:,.0f}" if flops else "–"
        base, diff = difference(impl, results)
        diff_text = "–" if diff is None else (f"{diff:.1e}" + ("" if base == "reference" else f" (vs {base})"))
        load = f"{r.other_load:.2f}" if r.other_load is not None else "?"
        rows.append(
            f"| {case} | {impl} | {_fmt_s(r.mean_seconds)} | {gflop} | {rate} | {r.peak_rss_mib:,.0f} "
            f"| {r.peak_rss_mib - r.rss_start_mib:,.0f} | {sum(r.losses) / len(r.losses):.4f} | {diff_text} | {load} | {r.warm_up_seconds:.0f} |"
        )
    return rows


SUMMARY_HEADER = (
    "| case | loop | wall seconds per iteration (speed-up vs reference) | CPU seconds per iteration of the measuring process (speed-up) |\n"
    "|---|---|---|---|"
)
DETAIL_HEADER = (
    "| case | implementation | s/it | GFLOP/it | GFLOP/s | peak RSS (MiB) | peak − start (MiB) | mean loss | max abs ΔS vs reference | other load (cores) | warm-up s |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def json_records(case: str, config: CondenseConfig, results: dict[str, Measurement], threads: int) -> list[dict]:
    """One record per implementation (the keys of issue 9, then details)."""
    records = []
    ref = results.get("reference")
    for impl, r in results.items():
        base, diff = difference(impl, results)
        records.append({
            "case": case, "implementation": impl, "seconds_per_iteration": r.mean_seconds, "peak_rss_mib": r.peak_rss_mib,
            "max_abs_diff_vs_reference": diff if base == "reference" else None,
            "max_abs_diff_vs": {base: diff} if diff is not None else {},
            "speedup_vs_reference": ref.mean_seconds / r.mean_seconds if ref is not None else None,
            "cpu_seconds_per_iteration": r.mean_cpu_seconds, "cpu_speedup_vs_reference": ref.mean_cpu_seconds / r.mean_cpu_seconds if ref is not None else None,
            "seconds": r.seconds, "losses": r.losses, "rss_start_mib": r.rss_start_mib, "other_load_cores": r.other_load,
            "warm_up_seconds": r.warm_up_seconds, "flops": r.flop_detail, "threads": threads, "peak_cuda_mib": r.peak_cuda_mib,
            "loop": {"K": config.steps, "T": config.epochs_between_steps, "real_batch": config.real_batch, "ipc": config.ipc, "method": config.method},
        })
    return records


def run_benchmark(args: argparse.Namespace) -> str:
    """Measure every case and implementation (interleaved over rounds); return the Markdown report."""
    real_batch = args.real_batch if args.real_batch is not None else (DRY["real_batch"] if args.dry else QUICK_REAL_BATCH if args.quick else 256)
    datasets: dict[str, ImageDataset] = {}
    summary, details, records = [], [], []
    for case in args.cases:
        config = case_config(case, real_batch, args.quick, dry=args.dry)
        if args.steps is not None or args.epochs is not None:
            config = config.replace(matching_steps=args.steps or config.steps, network_epochs=args.epochs if args.epochs is not None else config.epochs_between_steps)
        dataset = datasets.setdefault(config.dataset, load_dataset(config.dataset))
        rounds: dict[str, list[Measurement]] = {impl: [] for impl in args.implementations}
        for round_index in range(args.rounds):
            for impl in args.implementations:
                count = impl == "package-eager" and round_index == 0 and not args.no_flops
                job = Job(impl, config, dataset, args.iterations, args.threads, count_flops=count, device=args.device)
                started = time.perf_counter()
                r = measure_quietly(job, args.max_other_load, args.retries)
                rounds[impl].append(r)
                base = "package-eager" if impl == "package-perturbed" else "reference"
                delta = (r.synthetic - rounds[base][0].synthetic).abs().max().item() if impl != base and rounds.get(base) else float("nan")
                print(
                    f"{case:10s} {impl:22s} round {round_index + 1}: {r.mean_seconds:8.2f} s/it  loss {sum(r.losses) / len(r.losses):.4f}  "
                    f"peak RSS {r.peak_rss_mib:.0f} MiB (+{r.peak_rss_mib - r.rss_start_mib:.0f})  "
                    f"other load {r.other_load if r.other_load is not None else float('nan'):.2f} cores  "
                    f"warm-up {r.warm_up_seconds:.0f} s  max|ΔS| vs {base} {delta:.1e}  [process {time.perf_counter() - started:.0f} s]",
                    flush=True,
                )
        # the fastest round of each implementation (the least disturbed on a shared machine)
        results = {impl: min(ms, key=lambda m: m.mean_seconds) for impl, ms in rounds.items()}
        flops = next((m.flops for ms in rounds.values() for m in ms if m.flops), None)
        for r in results.values():
            r.flops = flops
        summary.append(summary_row(case, config, results))
        details.extend(detail_rows(case, results))
        records.extend(json_records(case, config, results, args.threads))
        if args.json:  # after every case, so that a long run leaves its finished cases behind
            Path(args.json).write_text(json.dumps(records, indent=1))
    return "\n".join([SUMMARY_HEADER, *summary, "", DETAIL_HEADER, *details])


# --------------------------------------------------------------------------------------------
# --memory: DC vs DCC peak memory of one matching step at every loop size


def memory_table(args: argparse.Namespace) -> str:
    """Peak RSS above the start of one matching step (K = 1: the real passes, the synthetic
    second-order pass and the backward to S), DC vs DCC, package eager, at each ipc of ``LOOP_SIZES``."""
    from condense.config import LOOP_SIZES

    real_batch = args.real_batch or 256
    dataset = load_dataset(DATASET)
    rows = ["| ipc | DC peak − start (MiB) | DCC peak − start (MiB) | DCC ÷ DC |", "|---:|---:|---:|---:|"]
    ipcs = [int(i) for i in args.memory.split(",")] if args.memory != "all" else sorted(LOOP_SIZES)
    records = []
    for ipc in ipcs:
        growth = {}
        for method in ("dc", "dcc"):
            config = CondenseConfig(dataset=DATASET, method=method, ipc=ipc, real_batch=real_batch, outer_warmup=0, inner_warmup=0, matching_steps=1, network_epochs=0)
            r = measure_quietly(Job("package-eager", config, dataset, 1, args.threads, warm_up=False), args.max_other_load, 0)
            growth[method] = r.peak_rss_mib - r.rss_start_mib
            records.append({"ipc": ipc, "method": method, "peak_rss_mib": r.peak_rss_mib, "peak_minus_start_mib": growth[method], "seconds": r.mean_seconds})
            print(f"ipc {ipc:3d} {method:4s} peak {r.peak_rss_mib:.0f} MiB (+{growth[method]:.0f})", flush=True)
        rows.append(f"| {ipc} | {growth['dc']:,.0f} | {growth['dcc']:,.0f} | {growth['dcc'] / max(growth['dc'], 1):.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# --accuracy: the effect of bf16 real gradients


def _gradient_table(network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> str:
    """fp32 vs bf16-autocast real gradients of one batch, per parameter tensor, as Markdown."""
    from condense.matching import gradient_distance, parameter_gradients

    g32 = parameter_gradients(network, x, y, sample_weights=weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g16 = [g.float() for g in parameter_gradients(network, x, y, sample_weights=weights)]
    rows = ["| parameter | shape | max abs g (fp32) | max abs Δ | max abs Δ / max abs g | cosine | min row cosine |", "|---|---|---:|---:|---:|---:|---:|"]
    for (name, _), a, b in zip(network.named_parameters(), g32, g16):
        cosine = F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
        # the matching distance compares rows (output nodes) of 2-D+ tensors and ignores 1-D ones
        row_cos = F.cosine_similarity(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), dim=1).min().item() if a.dim() > 1 else None
        diff, scale = (a - b).abs().max().item(), a.abs().max().item()
        row_text = f"{row_cos:.4f}" if row_cos is not None else "– (not matched)"
        rows.append(f"| {name} | {tuple(a.shape)} | {scale:.2e} | {diff:.2e} | {diff / scale:.1e} | {cosine:.6f} | {row_text} |")
    distance = gradient_distance(g32, g16).item()
    rows.append(f"\nmatching distance D(fp32, bf16) between the two real gradients: {distance:.4f} (summed over {sum(a.dim() > 1 for a in g32)} matched tensors)")
    return "\n".join(rows)


def gradient_comparison(dataset: ImageDataset, batch: int, seed: int = 0) -> str:
    """Real gradients in fp32 and bf16 on a fresh ConvNet: the DC target (one class-0 batch) and the
    DCC target (mean of the class gradients, ``batch`` images per class in one weighted pass)."""
    images, labels = dataset.normalised_train()
    generator = derive_generator(seed, "bench-gradients")
    per_class = []
    for c in range(dataset.num_classes):
        index = torch.nonzero(labels == c).flatten()
        per_class.append(index[torch.randperm(len(index), generator=generator)[:batch]])
    with seeded_global_rng(generator):
        network = build_network("convnet", images.shape[1], dataset.num_classes, tuple(images.shape[2:]))
    dc = _gradient_table(network, images[per_class[0]], labels[per_class[0]])
    index = torch.cat(per_class)
    weights = torch.cat([torch.full((len(i),), 1.0 / (dataset.num_classes * len(i))) for i in per_class])
    dcc = _gradient_table(network, images[index], labels[index], weights)
    return (
        f"DC target: ∇θ ℓ(B_0), {batch} real images of class 0, fresh ConvNet (seeded):\n\n{dc}\n\n"
        f"DCC target: (1/C) Σ_c ∇θ ℓ(B_c), {batch} images per class in one weighted pass, same network:\n\n{dcc}"
    )


def accuracy_study(dataset: ImageDataset, args: argparse.Namespace) -> str:
    """DC, ipc 1, ``args.accuracy_iterations`` iterations, fp32 vs bf16 from one seed, evaluated by a few ConvNets."""
    from condense.evaluation import evaluate_synthetic_set

    evaluation = EvaluationConfig(num_networks=args.accuracy_networks, epochs=args.accuracy_epochs)
    base = CondenseConfig(dataset=DATASET, method="dc", ipc=1, real_batch=args.accuracy_real_batch, iterations=args.accuracy_iterations, seed=0, evaluation=evaluation)
    rows = ["| synthetic set | seconds to condense | test accuracy per network (%) | mean (%) |", "|---|---:|---|---:|"]
    finals = {}
    for label, config in [("random real init (iteration 0)", None), ("DC fp32", base), ("DC bf16 real gradients", base.replace(real_grad_dtype="bfloat16"))]:
        condenser = Condenser(config or base, dataset, device="cpu")
        started = time.perf_counter()
        if config is not None:
            for _ in range(config.iterations):
                condenser.run_iteration()
        seconds = time.perf_counter() - started
        synthetic = condenser.synthetic_set()
        finals[label] = synthetic.images
        accs = evaluate_synthetic_set(synthetic, dataset, evaluation, augmentation="none", seed=0, key="bench-accuracy")["convnet"]
        mean = 100 * sum(accs) / len(accs)
        print(f"{label}: {seconds:.0f} s, accuracies {[round(100 * a, 2) for a in accs]}", flush=True)
        rows.append(f"| {label} | {seconds:.0f} | {', '.join(f'{100 * a:.2f}' for a in accs)} | {mean:.2f} |")
    drift = (finals["DC fp32"] - finals["DC bf16 real gradients"]).abs().max().item()
    rows.append("")
    rows.append(f"max abs difference of the final synthetic images, fp32 vs bf16: {drift:.3f} (normalised pixel units)")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--real-batch", type=int, default=None, help="real images per class per matching step (default 256; 64 with --quick)")
    parser.add_argument("--iterations", type=int, default=1, help="timed iterations per case and implementation (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in each run (default: all cores)")
    parser.add_argument("--device", default="cpu", help="where the implementations run: cpu (default) or cuda (the FLOP count stays on the CPU)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: real batch {QUICK_REAL_BATCH}, K and T from QUICK_LOOP")
    parser.add_argument("--steps", type=int, default=None, help="override K (matching steps per iteration); the report shows the loop")
    parser.add_argument("--epochs", type=int, default=None, help="override T (network epochs between matching steps)")
    parser.add_argument("--dry", action="store_true", help="seconds: sklearn digits, ConvNet width 32, real batch 8, K=2, T=1 (checks that the script runs)")
    parser.add_argument("--implementations", nargs="+", default=None, choices=ALL_IMPLEMENTATIONS, help=f"default: {' '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--compile", choices=["on", "off"], default="on", help="off: leave out the compiled implementations (default on)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every implementation this often, interleaved; keep the fastest (default 1)")
    parser.add_argument("--noise-floor", action="store_true", help=f"also run {', '.join(NOISE_FLOOR)}: the ΔS that rounding alone causes")
    parser.add_argument("--max-other-load", type=float, default=0.1, help="repeat a measurement during which other processes kept more cores busy than this (default 0.1)")
    parser.add_argument("--retries", type=int, default=1, help="how often to repeat a disturbed measurement (default 1)")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (one extra matching step per case)")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--json", help="write one record per (case, implementation) to this JSON file")
    parser.add_argument("--accuracy", action="store_true", help="run the bf16 accuracy study instead of the timing")
    parser.add_argument("--memory", default=None, metavar="IPCS", help="instead of the timing: DC vs DCC peak memory of one matching step at these ipc values ('all': every LOOP_SIZES row)")
    parser.add_argument("--accuracy-iterations", type=int, default=10)
    parser.add_argument("--accuracy-real-batch", type=int, default=64)
    parser.add_argument("--accuracy-networks", type=int, default=3)
    parser.add_argument("--accuracy-epochs", type=int, default=300, help="evaluation epochs per network")
    parser.add_argument("--gradient-batch", type=int, default=256, help="batch of the fp32-vs-bf16 gradient comparison")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.rounds < 1:
        parser.error("--iterations and --rounds must be >= 1")
    implementations = list(args.implementations or IMPLEMENTATIONS)
    if args.noise_floor:
        implementations += [i for i in NOISE_FLOOR if i not in implementations]
    if args.compile == "off":
        implementations = [i for i in implementations if PACKAGE_IMPLEMENTATIONS.get(i, ("off",))[0] == "off"]
    args.implementations = implementations
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    header = [
        f"command: `python {' '.join(['bench/bench_synthesis.py', *(sys.argv[1:] if argv is None else argv)])}`",
        f"machine: {machine_description(args.threads)}",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]
    print("\n".join(header), flush=True)
    started = time.perf_counter()
    if args.accuracy:
        dataset = load_dataset(DATASET)
        body = gradient_comparison(dataset, args.gradient_batch)
        print(body, flush=True)
        body += "\n\n" + accuracy_study(dataset, args)
    elif args.memory:
        body = memory_table(args)
    else:
        body = run_benchmark(args)
    footer = f"total wall time: {time.perf_counter() - started:.0f} s"
    report = "\n".join(header) + "\n\n" + body + "\n\n" + footer + "\n"
    print()
    print(body)
    print(footer)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
