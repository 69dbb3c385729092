"""Command line: ``python -m condense <command>``.

Commands::

    run       --dataset NAME_OR_PATH [--method dcc] [--ipc N] | --preset NAME
              [--seed S] [--out DIR] [--resume] [--set field=value ...]
    evaluate  SET [--dataset NAME_OR_PATH] [--networks convnet,mlp] [--num-networks N] [--epochs E]
    baseline  {random,herding,whole} --dataset D --ipc N [--seed S] [--out DIR]
    study     --dataset D --methods random,dc,dcc --ipc 1,10 --seeds 0,1,2 --out DIR
    convert   res_<method>_<dataset>_<model>_<N>ipc.pt [--dataset D] --out DIR   the authors' released sets
    export    SET --out DIR        PNG files + labels.csv for other tools
    continual --preset fashion-mnist [--memories random,herding,dc,dcc] [--orders 0,1,2] [--training gdumb|incremental]
              [--out DIR] | --list     class-incremental learning with a condensed memory (PAPER.md §9)
    datasets  list the datasets and where they are read from
    presets   list the presets (paper-exact and quick) and what the quick ones reduce

A dataset is a registry name (``datasets`` lists them) or the path of an ImageFolder directory
or ``.npz`` file (:mod:`condense.data.userdata`). User errors (unknown dataset, ipc 0, missing
files, NaN loss...) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from condense.config import parse_overrides
from condense.errors import ConfigError

log = logging.getLogger("condense")


def _load(name: str, args: argparse.Namespace):
    from condense.data import load_dataset
    from condense.distributed import main_first

    with main_first("wait for rank 0 to load the dataset"):  # torchrun: one download, not one per rank
        return load_dataset(name, root=args.data_root, download=not args.offline)


def _overrides(args: argparse.Namespace) -> dict:
    """``--set`` pairs, plus ``--compile`` for condensation and evaluation alike."""
    changes = parse_overrides(args.set or [])
    if getattr(args, "compile", None):
        changes["compile"] = args.compile
        changes.setdefault("evaluation", {})["compile"] = args.compile
    return changes


def cmd_run(args: argparse.Namespace) -> int:
    from condense.artifacts import SYNTHETIC_FILE, prepare_output_dir
    from condense.config import CondenseConfig
    from condense.data.userdata import dataset_slug
    from condense.presets import get_preset
    from condense.synthesis import condense_dataset

    if args.preset:
        preset = get_preset(args.preset)
        base, source = preset.config, f"preset {preset.name} ({preset.description})"
    elif args.dataset:
        base, source = CondenseConfig(), "the paper's settings"
    else:
        raise ConfigError("run needs --dataset NAME_OR_PATH (the paper's settings for everything else) or --preset NAME")
    flags = {"dataset": args.dataset, "method": args.method, "ipc": args.ipc, "seed": args.seed}
    config = base.replace(**{k: v for k, v in flags.items() if v is not None}, **_overrides(args))
    name = preset.name if args.preset else f"{dataset_slug(config.dataset)}-ipc{config.ipc}-{config.method}"
    out = prepare_output_dir(args.out or f"runs/{name}-seed{config.seed}")
    dataset = _load(config.dataset, args)
    config = config.replace(dataset=dataset.name)  # a path dataset is recorded by its absolute path
    log.info("%s, %s ipc %d on %s -> %s", source, config.method, config.ipc, dataset.name, out)
    synthetic = condense_dataset(config, dataset, out, device=args.device, resume=args.resume, progress=not args.no_progress)
    print(f"synthetic set after {synthetic.iteration} iterations: {out / SYNTHETIC_FILE}")
    _print_evaluations(out)
    return 0


def _print_evaluations(run_dir: Path) -> None:
    from condense.artifacts import MetricsLog

    for r in MetricsLog(run_dir / "metrics.jsonl").read():
        if r.get("event") == "evaluation":
            print(f"iteration {r['iteration']:>5}  {r['network']:<12} {100 * r['mean']:.2f} ± {100 * r['std']:.2f} %  ({len(r['accuracies'])} networks)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from condense.artifacts import SyntheticSet
    from condense.config import EvaluationConfig
    from condense.crossarch import resolve_networks
    from condense.errors import DatasetNotFoundError
    from condense.evaluation import default_augmentation, evaluate_synthetic_set, mean_std

    synthetic = SyntheticSet.load(args.synthetic)
    evaluation = EvaluationConfig(
        networks=resolve_networks(args.networks) if args.networks else ("convnet",),
        num_networks=args.num_networks, epochs=args.epochs, augmentation=args.augmentation or "auto", ensemble=args.ensemble,
        compile=args.compile or "auto", test_dtype=args.test_dtype,
    )
    augmentation = default_augmentation(synthetic, evaluation)
    try:
        dataset = _load(args.dataset or synthetic.dataset, args)
    except DatasetNotFoundError as exc:
        if args.dataset:
            raise
        raise DatasetNotFoundError(f"{exc} (the set was made from {synthetic.dataset!r}; pass --dataset NAME_OR_PATH to evaluate on another copy)") from None
    results = evaluate_synthetic_set(synthetic, dataset, evaluation, augmentation=augmentation, seed=args.seed, key="cli", device=args.device, progress=not args.no_progress)
    print(f"{synthetic.method} ipc {synthetic.ipc} on {synthetic.dataset} (iteration {synthetic.iteration}), augmentation {augmentation}:")
    for arch, accs in results.items():
        mean, std = mean_std(accs)
        print(f"  {arch:<14} {100 * mean:.2f} ± {100 * std:.2f} %  ({len(accs)} networks)")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from condense.artifacts import prepare_output_dir
    from condense.data.userdata import dataset_slug
    from condense.study import Cell, cell_config, run_cell

    dataset = _load(args.dataset, args)
    cell = Cell(args.method, args.ipc, args.seed)
    config = cell_config(args.preset_prefix, dataset.name, cell, _overrides(args))
    out = prepare_output_dir(args.out or f"runs/baselines/{dataset_slug(dataset.name)}")
    run_cell(cell, config, dataset, out, device=args.device, progress=not args.no_progress)
    _print_evaluations(out / cell.name)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from condense.artifacts import prepare_output_dir
    from condense.study import run_study

    shard = _study_shard(args.shard)  # bad input fails here, before anything is written
    dataset = _load(args.dataset, args)
    prepare_output_dir(args.out)
    table = run_study(
        dataset, args.out, methods=args.methods.split(","), ipcs=[int(i) for i in args.ipc.split(",")],
        seeds=[int(s) for s in args.seeds.split(",")], preset_prefix=args.preset_prefix,
        overrides=_overrides(args), device=args.device, progress=not args.no_progress, shard=shard,
    )
    print(f"\nConvNet test accuracy (%), {dataset.name}, presets {args.preset_prefix}*:\n")
    print(table)
    return 0


def cmd_crossarch(args: argparse.Namespace) -> int:
    from condense.artifacts import SyntheticSet
    from condense.config import EvaluationConfig
    from condense.crossarch import find_synthetic_set, resolve_networks, run_cross_architecture
    from condense.data.userdata import dataset_slug

    sets = {}
    for given in args.sets:
        path = find_synthetic_set(given)
        name = Path(given).name if Path(given).is_dir() else path.stem
        if name in sets:
            raise ConfigError(f"two sets are named {name!r}; give run directories with distinct names")
        sets[name] = path
    datasets = {SyntheticSet.load(path).dataset for path in sets.values()}
    if len(datasets) != 1:
        raise ConfigError(f"the sets come from different datasets ({', '.join(sorted(datasets))}); compare one dataset at a time")
    (dataset_name,) = datasets
    networks = resolve_networks(args.networks)
    evaluation = EvaluationConfig(num_networks=args.num_networks, epochs=args.epochs, ensemble=args.ensemble)
    out = Path(args.out or f"runs/crossarch-{dataset_slug(dataset_name)}")
    dataset = _load(dataset_name, args)
    table = run_cross_architecture(
        sets, networks, evaluation, dataset, out, seed=args.seed, device=args.device,
        progress=not args.no_progress, shard=_parse_shard(args.shard),
    )
    print(f"\nTest accuracy (%) of each architecture trained on each set ({dataset.name}), mean ± std over {args.num_networks} networks:\n")
    print(table)
    return 0


def cmd_continual(args: argparse.Namespace) -> int:
    from condense.continual import CONTINUAL_PRESETS, get_continual_preset, run_continual

    if args.list:
        for name, preset in CONTINUAL_PRESETS.items():
            c = preset.config
            print(f"{name:<18} {c.dataset:<15} steps={c.steps!s:<3} memory={c.memory_per_class}/class  memories={','.join(c.memories)}  {preset.description}")
        return 0
    if not args.preset:
        raise ConfigError("continual needs --preset NAME (or --list)")
    preset = get_continual_preset(args.preset)
    changes: dict = {}
    if args.memories:
        changes["memories"] = tuple(m.strip() for m in args.memories.split(",") if m.strip())
    if args.orders:
        try:
            changes["orders"] = tuple(int(s) for s in args.orders.split(","))
        except ValueError:
            raise ConfigError(f"--orders expects comma-separated integers, got {args.orders!r}") from None
    if args.training:
        changes["training"] = args.training
    config = preset.config.replace(**changes)
    out = Path(args.out or f"runs/continual-{preset.name}")
    dataset = _load(config.dataset, args)
    log.info("continual preset %s (%s) -> %s", preset.name, preset.description, out)
    text = run_continual(config, dataset, out, name=preset.name, figures=args.figures, device=args.device,
                         progress=not args.no_progress, shard=_parse_shard(args.shard))
    print(text)
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects I/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text}: need 0 <= I < N")
    return index, count


def _study_shard(text: str | None) -> tuple[int, int]:
    """``--shard I/N``; else this task's place in a Slurm job array; else the whole grid."""
    from condense.distributed import slurm_array_shard

    if text is not None:
        return _parse_shard(text)
    shard = slurm_array_shard()
    if shard is not None:
        log.info("Slurm job array: shard %d/%d", *shard)
    return shard or (0, 1)


def cmd_convert(args: argparse.Namespace) -> int:
    from condense.artifacts import prepare_output_dir
    from condense.interop import parse_released_name, read_released_sets

    name = parse_released_name(args.file)
    dataset_name = args.dataset or (name.dataset if name else None)
    if dataset_name is None:
        raise ConfigError(f"cannot tell the dataset from the name {Path(args.file).name!r}; pass --dataset NAME_OR_PATH")
    source_mean, source_std = _floats(args.source_mean, "--source-mean"), _floats(args.source_std, "--source-std")
    dataset = _load(dataset_name, args)
    sets = read_released_sets(args.file, dataset, method=args.method, source_mean=source_mean, source_std=source_std)
    out = prepare_output_dir(args.out)
    for k, synthetic in enumerate(sets):
        target = out / f"exp{k}.safetensors"
        synthetic.save(target)
        reported = ", ".join(f"{m} {100 * sum(a) / len(a):.2f} %" for m, a in synthetic.config["released"]["reported_accuracies"].items() if a)
        print(f"{target}: {synthetic.method} ipc {synthetic.ipc}, {len(synthetic.labels)} images of {dataset.name}"
              + (f" (authors' mean over experiments: {reported})" if reported else ""))
    return 0


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated numbers, got {text!r}") from None


def cmd_export(args: argparse.Namespace) -> int:
    from condense.artifacts import SyntheticSet, prepare_output_dir
    from condense.interop import export_png_folder

    synthetic = SyntheticSet.load(args.synthetic)
    labels_csv = export_png_folder(synthetic, prepare_output_dir(args.out))
    print(f"{len(synthetic.labels)} PNG files and {labels_csv}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from condense.data import list_datasets

    for name, description in list_datasets():
        print(f"{name:<24} {description}")
    print(f"{'PATH':<24} your own data: an ImageFolder directory (PATH/train/<class>/*.png, PATH/test/<class>/*.png) or an .npz")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from condense.presets import PRESETS

    for name, preset in PRESETS.items():
        if args.filter and args.filter not in name:
            continue
        c = preset.config
        print(f"{name:<36} K={c.steps:<3} T={c.epochs_between_steps:<3} iterations={c.iterations:<5} {preset.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m condense", description="Dataset condensation by gradient matching (DC, DSA, DCC, DSAC).")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
        p.add_argument("--data-root", default=None, help="dataset root (default: $CONDENSE_DATA_ROOT or ./data)")
        p.add_argument("--offline", action="store_true", help="never download; fail with instructions instead")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; 1 is best when several jobs share the cores)")

    def compiled(p: argparse.ArgumentParser) -> None:
        p.add_argument("--compile", choices=["auto", "on", "off"], default=None,
                       help="torch.compile the first-order passes (auto: where a compiler works, else eager with one warning; default: the config's, auto)")

    p = sub.add_parser("run", help="condense a dataset (the paper's settings, or a preset)")
    p.add_argument("--dataset", default=None, help="registry name or path of an ImageFolder directory / .npz (default: the preset's)")
    p.add_argument("--method", default=None, help="dc, dsa, dcc or dsac (default: the preset's, else dcc)")
    p.add_argument("--ipc", type=int, default=None, help="images per class (default: the preset's, else 1)")
    p.add_argument("--preset", default=None, help="a named preset (python -m condense presets); --dataset/--method/--ipc/--set override it")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="run directory (default runs/<preset or dataset-ipcN-method>-seed<S>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a config field, e.g. iterations=20 or evaluation.num_networks=3")
    common(p)
    compiled(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("evaluate", help="evaluate a saved synthetic set by the paper's protocol")
    p.add_argument("synthetic", help="a synthetic-set file (.safetensors, or a legacy .pt)")
    p.add_argument("--dataset", default=None, help="evaluate on this dataset (name or path) instead of the one the set records")
    p.add_argument("--networks", default=None, help="comma-separated architectures or groups 'pool', 'ablations' (default convnet)")
    p.add_argument("--num-networks", type=int, default=20)
    p.add_argument("--ensemble", choices=["auto", "stacked", "one-by-one"], default="auto", help="train the networks together as one vmapped model (auto: on CUDA)")
    p.add_argument("--epochs", type=int, default=None, help="default 300, or 1000 with DSA augmentation")
    p.add_argument("--augmentation", choices=["none", "dsa", "dc"], default=None)
    p.add_argument("--test-dtype", choices=["float32", "bfloat16"], default="float32", help="bfloat16: the test pass under bf16 autocast (faster on CPUs with bf16 units)")
    p.add_argument("--seed", type=int, default=0)
    common(p)
    compiled(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baseline", help="select and evaluate a coreset baseline")
    p.add_argument("method", choices=["random", "herding", "whole"], help="whole: train on the whole training set (set evaluation.epochs on a CPU)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--preset-prefix", default="quick-", help="evaluation settings from these presets ('' for the paper's)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE")
    common(p)
    compiled(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("study", help="a resumable grid of methods × ipc × seeds with a summary table")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--methods", default="random,dc,dcc,dsa,dsac")
    p.add_argument("--ipc", default="1,10")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", required=True)
    p.add_argument("--preset-prefix", default="quick-", help="'quick-' or '' (the paper's presets)")
    p.add_argument("--shard", default=None, help="I/N: run only cells I, I+N, I+2N ... (run N processes with --threads 1 to use N cores); "
                   "default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a Slurm job array, else 0/1")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE")
    common(p)
    compiled(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("crossarch", help="evaluate saved sets on other architectures (resumable table)")
    p.add_argument("sets", nargs="+", help="run directories (with synthetic.safetensors) or set files, all of one dataset")
    p.add_argument("--networks", default="pool", help="architectures and/or groups: pool (MLP, ConvNet, LeNet, AlexNet, VGG11, ResNet18), ablations (ConvNet variants)")
    p.add_argument("--num-networks", type=int, default=20)
    p.add_argument("--epochs", type=int, default=None, help="default 300, or 1000 with DSA augmentation")
    p.add_argument("--ensemble", choices=["auto", "stacked", "one-by-one"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default runs/crossarch-<dataset>")
    p.add_argument("--shard", default="0/1", help="I/N: run only (set, architecture) pairs I, I+N, ...")
    common(p)
    p.set_defaults(func=cmd_crossarch)

    p = sub.add_parser("continual", help="class-incremental learning with a condensed memory (PAPER.md §9)")
    p.add_argument("--preset", default=None, help="a continual preset (see --list)")
    p.add_argument("--list", action="store_true", help="list the continual presets")
    p.add_argument("--memories", default=None, help="comma-separated: random,herding,dc,dcc,dsa,dsac (default: the preset's)")
    p.add_argument("--orders", default=None, help="comma-separated class-order seeds (default: the preset's)")
    p.add_argument("--training", choices=["gdumb", "incremental"], default=None, help="gdumb: a fresh network per step (default); incremental: one network kept")
    p.add_argument("--out", default=None, help="output directory (default runs/continual-<preset>)")
    p.add_argument("--figures", default="figures", help="where continual-<preset>.png/.pdf go")
    p.add_argument("--shard", default="0/1", help="I/N: run only (memory, order) units I, I+N, ...")
    common(p)
    p.set_defaults(func=cmd_continual)

    p = sub.add_parser("convert", help="turn the DC/DSA/DM/DCC authors' res_*.pt files into synthetic sets (one per experiment)")
    p.add_argument("file", help="res_<method>_<dataset>_<model>_<ipc>ipc.pt: {'data': [[images, labels], ...], 'accs_all_exps': ...}")
    p.add_argument("--dataset", default=None, help="the dataset it was condensed from (default: from the file name)")
    p.add_argument("--out", required=True, help="directory for exp<k>.safetensors")
    p.add_argument("--method", default=None, help="method name to record (default: from the file name)")
    p.add_argument("--source-mean", default=None, help="the normalisation the authors used, if not the dataset's (e.g. DCC's CIFAR-100: 0.4914,0.4822,0.4465)")
    p.add_argument("--source-std", default=None, help="likewise (DCC's CIFAR-100: 0.2023,0.1994,0.2010)")
    common(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="write a synthetic set as PNG files plus labels.csv")
    p.add_argument("synthetic", help="a synthetic-set file (.safetensors, or a legacy .pt)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("datasets", help="list datasets")
    common(p)
    p.set_defaults(func=cmd_datasets)
    p = sub.add_parser("presets", help="list presets")
    p.add_argument("filter", nargs="?", default="")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    from condense.runtime import run_command

    args = build_parser().parse_args(argv)
    return run_command(
        lambda: _run_in_world(args), verbose=args.verbose, threads=getattr(args, "threads", None), device=getattr(args, "device", None),
        interrupted="rerun the same command with --resume (run) or as is (study, continual) to continue",
    )


def _run_in_world(args: argparse.Namespace) -> int:
    """The command, in the process group when launched by torchrun (see condense/distributed.py)."""
    from condense.distributed import distributed_session

    with distributed_session(getattr(args, "device", None)) as world:
        if world.is_distributed and args.command in _SINGLE_PROCESS_COMMANDS:
            raise ConfigError(f"{args.command} does not run under torchrun; {_SINGLE_PROCESS_COMMANDS[args.command]}")
        return args.func(args)


#: commands without a torchrun mode, and what to do instead
_SINGLE_PROCESS_COMMANDS = {
    "continual": "split it over processes with --shard I/N",
    "convert": "run it as one process", "export": "run it as one process",
    "datasets": "run it as one process", "presets": "run it as one process",
}


if __name__ == "__main__":
    sys.exit(main())
