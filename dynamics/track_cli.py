"""The command line of :mod:`dynamics.track`: ``python -m dynamics.track --run <preset>``.

Parses the arguments, applies ``--set`` / ``--condense-set`` / ``--seeds`` / ``--dataset`` to the
chosen :class:`~dynamics.presets.TrackPreset` and calls :func:`dynamics.track.run_track` inside
the torchrun process group when there is one. User errors exit with status 2 and one
``error: ...`` line (:func:`condense.runtime.run_command`). ``main`` and ``apply_overrides`` are
re-exported by :mod:`dynamics.track`, whose ``python -m`` entry point calls ``main``.

Example::

    python -m dynamics.track --list
    python -m dynamics.track --run smoke --out /tmp/smoke --seeds 0,1,2 --set epochs=8
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from condense.config import parse_field
from condense.errors import ConfigError
from dynamics.presets import TRACK_PRESETS, TrackPreset, get_track_preset

__all__ = ["apply_overrides", "build_parser", "main"]


def apply_overrides(preset: TrackPreset, pairs: Sequence[str]) -> TrackPreset:
    """``preset`` with ``['epochs=50', 'methods=random,dcc']`` applied (:class:`ConfigError` if unknown)."""
    hints = typing.get_type_hints(TrackPreset)
    changes: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects field=value, got {pair!r}")
        key, text = pair.split("=", 1)
        if key not in hints or key == "name":
            raise ConfigError(f"unknown track preset field {key!r}; known: {', '.join(k for k in hints if k != 'name')}")
        try:
            changes[key] = parse_field(text, hints[key])
        except ValueError:
            raise ConfigError(f"--set {pair}: cannot parse {text!r} as {hints[key]}") from None
    return preset.replace(**changes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dynamics.track",
        description="Track the empirical NTK (kernel velocity) of networks trained on condensed sets, a random subset and real data.",
    )
    parser.add_argument("--run", "--preset", dest="run", metavar="PRESET", help="a track preset (see --list); --preset is the spelling torchrun accepts")
    parser.add_argument("--list", action="store_true", help="list the track presets and exit")
    parser.add_argument("--out", default=None, help="run directory (default runs/<preset>, or runs/<preset>-<dataset> with --dataset)")
    parser.add_argument("--dataset", default=None, help="track on this dataset instead of the preset's: a registry name or the path of an ImageFolder directory / .npz")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a preset field, e.g. epochs=50 or methods=random,dcc")
    parser.add_argument("--condense-set", action="append", default=[], metavar="FIELD=VALUE", help="override a condensation config field, e.g. iterations=3")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (overrides the preset's)")
    parser.add_argument("--reuse-study", default=None, metavar="DIR", help="a `condense study` output dir whose finished <method>-ipc<N>-seed<S>/ sets may be reused when their config matches")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 when other jobs share the cores)")
    parser.add_argument("--data-root", default=None, help="dataset root (default: $CONDENSE_DATA_ROOT or ./data)")
    parser.add_argument("--offline", action="store_true", help="never download datasets; fail with instructions instead")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-figures", action="store_true", help="do not draw figures at the end")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _list_presets() -> None:
    for name, preset in TRACK_PRESETS.items():
        print(f"{name:<22} {preset.dataset:<22} ipc {preset.ipc:<3} {','.join(preset.methods):<30} {preset.description}")


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a one-line ``error:`` for user errors)."""
    from condense.runtime import run_command

    args = build_parser().parse_args(argv)
    return run_command(
        lambda: _track_in_world(args), verbose=args.verbose, threads=args.threads, device=args.device,
        interrupted="rerun the same command to continue (finished units are kept)",
    )


def _track_in_world(args: argparse.Namespace) -> int:
    """The command, in the process group when launched by torchrun (units split over the ranks)."""
    from condense.distributed import distributed_session

    with distributed_session(args.device):
        return _track_command(args)


def _track_command(args: argparse.Namespace) -> int:
    if args.list:
        _list_presets()
        return 0
    if not args.run:
        raise ConfigError("give --run PRESET (or --list to see them)")
    from condense.data.userdata import dataset_slug, looks_like_path
    from dynamics.track import run_track  # here, not above: dynamics.track re-exports this module's names

    preset = apply_overrides(get_track_preset(args.run), args.set)
    if args.dataset:
        preset = preset.replace(dataset=args.dataset)
    if looks_like_path(preset.dataset):  # one spelling of the path, so reruns from elsewhere find their sets
        preset = preset.replace(dataset=str(Path(preset.dataset).expanduser().resolve()))
    if args.condense_set:
        preset = preset.replace(condense_set=preset.condense_set + tuple(args.condense_set))
    if args.seeds:
        try:
            preset = preset.replace(seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()))
        except ValueError:
            raise ConfigError(f"--seeds expects integers like 0,1,2, got {args.seeds!r}") from None
    default = preset.name if not args.dataset else f"{preset.name}-{dataset_slug(preset.dataset)}"
    out = Path(args.out) if args.out else Path("runs") / default
    run_track(
        preset, out, data_root=args.data_root, download=not args.offline, device=args.device,
        reuse_study=args.reuse_study, progress=not args.no_progress, figures=not args.no_figures,
    )
    print(f"done: {out}  (dynamics.csv, kernels/, figures/)")
    return 0
