"""Benchmark: class-parallel condensation on torch.distributed vs one process, on this machine's cores.

For each case (Fashion-MNIST, the paper's loop sizes, real batch 256 per class; DCC contrastive
from the first step, ``outer_warmup = inner_warmup = 0``), side by side in one run:

- ``1 process × 2 threads``: ``Condenser(config).run_iteration()`` with ``torch.set_num_threads(2)``;
- ``2 ranks × 1 thread``: the same under ``torchrun --standalone --nproc_per_node 2`` (gloo), each
  rank one thread (``condense/class_parallel.py``: 5 classes per rank, the network training on S
  split over the ranks when a rank gets ≥ 32 images of the batch, i.e. at ipc 10).

Measured per setting: seconds per iteration (after an untimed warm-up of the case's batch shapes
and, for the ranks, of one all-reduce), peak resident memory of each process during the timed
iterations (``/proc/self/clear_refs`` then ``VmHWM``, as ``bench_synthesis.py``), the CPU seconds
the benchmark's own processes spent per iteration (all threads, all ranks), the other load
on the machine during the timed iterations (busy cores from ``/proc/stat`` minus the benchmark's
own processes), and how far the two synthetic sets are apart afterwards (the same draws: DC is
exact, DCC differs by float rounding, see ``tests/condense/test_distributed.py``). Passes run eager
(``compile="off"``) unless ``--compile auto``, which warms up with a 2-step iteration instead;
``--real-grad-dtype bfloat16`` computes the real gradients under bf16 autocast.

``--reference`` adds, first and in the same run, the authors'-style loop (``bench/reference_dc.py``,
eager fp32) in one process with as many threads as the single-process setting: the baseline of
issue 9's speed targets, so that "what does this machine gain over the original code" is one
table — compiled passes and one-thread ranks together, side by side with the loop they replace.

Usage::

    python bench/bench_distributed.py --quick                  # smoke run: 2 matching steps, real batch 64
    python bench/bench_distributed.py --out report.md          # the three cases at the paper's loop sizes
    python bench/bench_distributed.py --cases dcc-ipc1 --iterations 2
    python bench/bench_distributed.py --reference --compile auto --cases dc-ipc1 dcc-ipc10   # the whole machine vs the original loop
    python bench/bench_distributed.py --reference --compile auto --cases dc-ipc1 --repeats 2  # round-robin, fastest of 2 (noisy machines)
    python bench/bench_distributed.py --dry --reference        # seconds: sklearn digits, tiny network (the test suite runs it)
    python bench/bench_distributed.py --reference --json records.json   # also one record per (case, setting)

(``--rank-worker`` is how the script runs itself under torchrun; not for direct use.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

from bench_synthesis import DRY as DRY_SETTINGS  # noqa: E402
from bench_synthesis import cpu_seconds, peak_rss_mib, reset_peak_rss, warm_up  # noqa: E402
from machine import describe_machine  # noqa: E402  (bench/machine.py)

from condense.config import CondenseConfig  # noqa: E402

DATASET = "fashion-mnist"
#: name -> (method, ipc)
CASES: dict[str, tuple[str, int]] = {"dc-ipc1": ("dc", 1), "dcc-ipc1": ("dcc", 1), "dcc-ipc10": ("dcc", 10)}
QUICK = dict(matching_steps=2, network_epochs=2, real_batch=64)
#: --dry: seconds on any machine (as bench_synthesis.py's dry mode)
DRY = dict(dataset=DRY_SETTINGS["dataset"], network=DRY_SETTINGS["network"], real_batch=DRY_SETTINGS["real_batch"], **DRY_SETTINGS["loop"])
RANKS = 2
#: threads of the single process (and of the reference loop); each rank has one
SINGLE_THREADS = 2


def case_config(case: str, args: argparse.Namespace) -> CondenseConfig:
    method, ipc = CASES[case]
    config = CondenseConfig(dataset=DATASET, method=method, ipc=ipc, real_batch=256, outer_warmup=0, inner_warmup=0,
                            compile=args.compile, real_grad_dtype=args.real_grad_dtype)
    if args.dry:
        return config.replace(**DRY)
    return config.replace(**QUICK) if args.quick else config


def measure(case: str, args: argparse.Namespace, out: Path) -> None:
    """One setting of one case in this process (one rank under torchrun); rank 0 writes ``out`` (JSON + tensor)."""
    from condense.distributed import distributed_session

    torch.set_num_threads(args.threads)
    with distributed_session("cpu"):  # leaves the process group before the interpreter exits (see shutdown)
        _measure(case, args, out)


def _measure(case: str, args: argparse.Namespace, out: Path) -> None:
    from condense.data import load_dataset
    from condense.distributed import all_reduce_sum_, barrier, current_world, gather_indexed
    from condense.synthesis import Condenser

    world = current_world()
    config = case_config(case, args)
    dataset = load_dataset(config.dataset, download=False)
    if args.implementation == "reference":
        from reference_dc import ReferenceCondenser

        runner = ReferenceCondenser(config, dataset, device="cpu")
        run_iteration, synthetic = runner.run_iteration, lambda: runner.synthetic
        warm_up(config, runner.shape, runner.num_classes, bf16=False)
    else:
        condenser = Condenser(config, dataset, device="cpu")
        run_iteration, synthetic = (lambda: condenser.run_iteration().loss), (lambda: condenser.synthetic)
        if args.compile == "off":
            warm_up(config, condenser.image_shape, condenser.num_classes, bf16=config.real_grad_dtype == "bfloat16")
        else:  # compile every pass shape of the case once (compiled passes are cached per kind and shape)
            Condenser(config.replace(matching_steps=2, network_epochs=1, seed=999), dataset, device="cpu").run_iteration()
    all_reduce_sum_([torch.zeros(400_000)])  # gloo connections up before the clock starts
    barrier()
    rss_start, _ = reset_peak_rss()
    before = cpu_seconds()
    started = time.perf_counter()
    losses = [run_iteration() for _ in range(args.iterations)]
    barrier()
    wall = time.perf_counter() - started
    after = cpu_seconds()
    own_cpu = after[1] - before[1] if before and after else None
    record = {"rank": world.rank, "peak_rss_mib": peak_rss_mib(), "rss_start_mib": rss_start, "own_cpu_s": own_cpu, "machine_busy_s": after[0] - before[0] if before and after else None}
    ranks = gather_indexed({world.rank: record}, world.size)
    if world.is_main:
        own = sum(r["own_cpu_s"] or 0.0 for r in ranks)
        busy = ranks[0]["machine_busy_s"]
        summary = {
            "case": case, "implementation": args.implementation, "ranks": world.size, "threads": args.threads,
            "seconds_per_iteration": wall / args.iterations, "losses": losses,
            "per_rank": ranks, "other_load": None if busy is None else max(0.0, busy - own) / wall, "cpu_seconds_per_iteration": own / args.iterations,
        }
        out.write_text(json.dumps(summary, indent=2))
        torch.save(synthetic().detach().clone(), out.with_suffix(".pt"))


def run_setting(case: str, ranks: int, threads: int, args: argparse.Namespace, work: Path, implementation: str = "package") -> tuple[dict, torch.Tensor]:
    """Run one setting in fresh process(es): ``ranks`` = 1 is a plain process, more go through torchrun."""
    out = work / f"{case}-{implementation}-{ranks}x{threads}.json"
    worker = [str(Path(__file__).resolve()), "--rank-worker", case, str(out), "--threads", str(threads), "--iterations", str(args.iterations),
              "--compile", args.compile, "--real-grad-dtype", args.real_grad_dtype, "--implementation", implementation]
    worker += [flag for flag, on in (("--quick", args.quick), ("--dry", args.dry)) if on]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if ranks == 1:
        command = [sys.executable, *worker]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), *worker]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{case} with {ranks} rank(s) failed:\n{done.stderr[-4000:]}")
    return json.loads(out.read_text()), torch.load(out.with_suffix(".pt"), weights_only=True)


def _fastest_of(case: str, settings: list[tuple[str, int, int, str]], args: argparse.Namespace, work: Path) -> dict[str, tuple[dict, torch.Tensor]]:
    """Each setting ``(name, ranks, threads, implementation)`` ``args.repeats`` times, round-robin
    (so a slow spell of a shared or virtual machine hits every setting alike); the fastest run of each."""
    fastest: dict[str, tuple[dict, torch.Tensor]] = {}
    for _ in range(args.repeats):
        for name, ranks, threads, implementation in settings:
            result = run_setting(case, ranks, threads, args, work, implementation=implementation)
            if name not in fastest or result[0]["seconds_per_iteration"] < fastest[name][0]["seconds_per_iteration"]:
                fastest[name] = result
    return fastest


def _setting_label(args: argparse.Namespace) -> str:
    passes = "compiled" if args.compile != "off" else "eager"
    return passes + (", bf16 real gradients" if args.real_grad_dtype == "bfloat16" else "")


def _record(case: str, setting: str, result: dict, images: torch.Tensor, baseline: dict[str, torch.Tensor]) -> dict:
    """One machine-readable row: a setting's timing and how far its S is from each baseline's."""
    return {
        "case": case, "setting": setting, "ranks": result["ranks"], "threads": result["threads"],
        "seconds_per_iteration": result["seconds_per_iteration"], "cpu_seconds_per_iteration": result["cpu_seconds_per_iteration"],
        "peak_rss_mib": [r["peak_rss_mib"] for r in result["per_rank"]], "other_load": result["other_load"],
        **{f"max_abs_diff_vs_{name}": (images - other).abs().max().item() for name, other in baseline.items()},
    }


def report(args: argparse.Namespace) -> tuple[str, list[dict]]:
    """Run every case's settings side by side; the Markdown report and one record per (case, setting)."""
    machine = describe_machine()
    loop = "dry loop (sklearn digits, ConvNet-w32, K=2, T=1, real batch 8)" if args.dry else (
        "quick loop (K=2, T=2), real batch 64" if args.quick else "the paper loop sizes (ipc 1: K=10, T=5; ipc 10: K=10, T=50), real batch 256")
    single = f"1 process x {SINGLE_THREADS} threads"
    ranks = f"{RANKS} ranks x 1 thread"
    header = ["case"]
    if args.reference:
        header += [f"reference ({single}): s/it"]
    header += [f"{single}: s/it", f"{ranks}: s/it", "ranks vs 1 process"]
    if args.reference:
        header += ["1 process vs reference", "ranks vs reference"]
    timed = "reference / 1 process / ranks" if args.reference else "1 process / ranks"
    header += [f"CPU s/it ({timed})", "peak RSS MiB (1 process)", "peak RSS MiB per rank", f"other load (cores, {timed})", "max abs diff of S (ranks vs 1 process)"]
    if args.reference:
        header += ["max abs diff of S (1 process vs reference)"]
    lines = [
        f"# Class-parallel condensation: {single} vs {ranks}" + (", against the authors'-style loop" if args.reference else ""),
        "",
        f"Machine: {machine}. {loop}, {args.iterations} timed iteration(s), fastest of {args.repeats} round-robin run(s), package passes {_setting_label(args)} "
        f"(compile={args.compile}), DCC contrastive throughout." + (" Reference: eager fp32, authors'-style loop." if args.reference else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    records: list[dict] = []
    settings = ([("reference", 1, SINGLE_THREADS, "reference")] if args.reference else []) + [
        ("one-process", 1, SINGLE_THREADS, "package"), ("ranks", RANKS, 1, "package")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in args.cases:
            runs = _fastest_of(case, settings, args, work)
            baseline = {"reference": runs["reference"][1]} if args.reference else {}
            case_records = {"reference": _record(case, "reference", *runs["reference"], {})} if args.reference else {}
            case_records["one-process"] = _record(case, "one-process", *runs["one-process"], baseline)
            case_records["ranks"] = _record(case, "ranks", *runs["ranks"], {**baseline, "one_process": runs["one-process"][1]})
            records += case_records.values()
            one, dist = runs["one-process"][0], runs["ranks"][0]
            timed_runs = [runs[name][0] for name in case_records]  # (reference,) 1 process, ranks
            t_one, t_dist = one["seconds_per_iteration"], dist["seconds_per_iteration"]
            row = [case, *(f"{r['seconds_per_iteration']:.1f}" for r in timed_runs), f"{t_one / t_dist:.2f}x"]
            if args.reference:
                t_ref = timed_runs[0]["seconds_per_iteration"]
                row += [f"{t_ref / t_one:.2f}x", f"**{t_ref / t_dist:.2f}x**"]
            row += [
                " / ".join(f"{r['cpu_seconds_per_iteration']:.0f}" for r in timed_runs),
                f"{one['per_rank'][0]['peak_rss_mib']:.0f}",
                " / ".join(f"{r['peak_rss_mib']:.0f}" for r in dist["per_rank"]),
                " / ".join("–" if r["other_load"] is None else f"{r['other_load']:.2f}" for r in timed_runs),
                f"{case_records['ranks']['max_abs_diff_vs_one_process']:.1e}",
            ]
            if args.reference:
                row.append(f"{case_records['one-process']['max_abs_diff_vs_reference']:.1e}")
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    lines += ["", f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    return "\n".join(lines) + "\n", records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="run the settings round-robin this many times; report the fastest of each")
    parser.add_argument("--quick", action="store_true", help="2 matching steps, 2 network epochs, real batch 64")
    parser.add_argument("--dry", action="store_true", help="seconds on any machine: sklearn digits, a small ConvNet, K=2, T=1, real batch 8")
    parser.add_argument("--compile", choices=["off", "auto", "on"], default="off")
    parser.add_argument("--real-grad-dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--reference", action="store_true", help="also time the authors'-style loop (eager fp32, one process) as the baseline")
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    parser.add_argument("--json", default=None, help="also write one record per (case, setting: reference, one-process, ranks) here")
    parser.add_argument("--rank-worker", nargs=2, metavar=("CASE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--implementation", choices=["package", "reference"], default="package", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_worker:
        case, out = args.rank_worker
        measure(case, args, Path(out))
        return 0
    text, records = report(args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
