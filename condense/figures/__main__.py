"""``python -m condense.figures [--results results] [--runs runs] [--out figures]``: every condense-side figure.

Draws the benchmark chart and table, the DC vs DCC image grids, the fine-grained comparison and
the warm-up ablation (see :mod:`condense.figures.paper`), runs the ablation when it is not stored
(unless ``--no-run``), prints the files written and the notes on missing inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from condense.figures.paper import PARTS, PaperFigureConfig, make_paper_figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m condense.figures", description="Regenerate the paper's condense-side figures from stored results.")
    parser.add_argument("--results", default="results", help="committed results, searched first (default results)")
    parser.add_argument("--runs", default="runs", help="scratch runs, searched second; a missing ablation is run here (default runs)")
    parser.add_argument("--out", default="figures", help="output directory (default figures)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--ablation-preset", default="fashion-mnist", help="warm-up ablation preset whose results are drawn (default fashion-mnist)")
    parser.add_argument("--ablation-when-missing", default=None, help="preset to run when those are missing (e.g. smoke; default the same)")
    parser.add_argument("--no-run", action="store_true", help="never run anything; missing inputs give a note")
    parser.add_argument("--stored-only", action="store_true", help="read only --results (not --runs) and run nothing: figures of what is committed")
    parser.add_argument("--formats", default="pdf,png", help="comma-separated file formats")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads when the ablation must run (default 1)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    from condense.runtime import run_command

    args = build_parser().parse_args(argv)
    return run_command(lambda: _figures_command(args), verbose=args.verbose, threads=args.threads,
                       interrupted="rerun the same command to continue (finished ablation runs are kept)")


def _figures_command(args: argparse.Namespace) -> int:
    from condense.errors import ConfigError

    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = sorted(set(only) - set(PARTS))
    if unknown:
        raise ConfigError(f"--only: unknown parts {unknown}; choose from {', '.join(PARTS)}")
    config = PaperFigureConfig(
        results=Path(args.results), runs=None if args.stored_only else Path(args.runs), out=Path(args.out), ablation_preset=args.ablation_preset,
        ablation_when_missing=args.ablation_when_missing, run_missing=not args.no_run,
        formats=tuple(f for f in args.formats.split(",") if f),
    )
    report = make_paper_figures(config, only)
    for path in report.written:
        print(path)
    for note in report.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
