"""The `medtl` command.

    medtl benchmark benchmark/suites/smoke.yaml     # run a suite (resumes: finished cells are skipped)
    medtl report benchmark/suites/smoke.yaml        # leaderboard of what has finished so far
    medtl list                                      # backbones, datasets, strategies, built-in suites
    medtl data ...                                  # download / verify / describe datasets
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SUITES_DIR = Path(__file__).parent / "suites"


def _suite_path(value: str) -> Path:
    path = Path(value)
    if not path.exists() and (SUITES_DIR / f"{value}.yaml").exists():
        return SUITES_DIR / f"{value}.yaml"  # `medtl benchmark smoke` works from anywhere
    return path


def _data_root(value: str | None) -> Path | None:
    value = value or os.environ.get("MEDTL_DATA")
    return Path(value) if value else None


def cmd_benchmark(args) -> int:
    from benchmark.runner import run_suite

    outcome = run_suite(_suite_path(args.suite), data_root=_data_root(args.data_root), uri=args.tracking_uri,
                        report_dir=Path(args.report_dir) if args.report_dir else None, accelerator=args.accelerator)
    print(f"Done in {outcome.seconds:.1f} s: {len(outcome.ran)} ran, {len(outcome.skipped)} skipped, {len(outcome.failed)} failed.")
    return outcome.exit_code


def cmd_report(args) -> int:
    from benchmark.report import to_markdown, write_report
    from benchmark.runner import suite_leaderboard
    from benchmark.suite import load_suite
    from tracking import client

    suite = load_suite(_suite_path(args.suite))
    table, cells = suite_leaderboard(suite, client(args.tracking_uri))
    out_dir = Path(args.report_dir) if args.report_dir else Path("reports") / suite.name
    write_report(table, cells, out_dir, f"medtl {suite.name}")
    print(to_markdown(table, f"Leaderboard: {suite.name}"))
    print(f"{len(cells)} of {len(suite.finetune_cells)} fine-tuning cells finished; report in {out_dir}/.")
    return 0


def cmd_list(args) -> int:
    from backbones import list_backbones
    from tasks import list_datasets, list_strategies

    print("backbones: ", ", ".join(list_backbones()))
    print("datasets:  ", ", ".join(list_datasets()))
    print("strategies:", ", ".join(list_strategies()))
    print("suites:    ", ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="Transfer-learning benchmark for medical image classification.")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("benchmark", help="run a suite of cells (resumable)")
    bench.add_argument("suite", help="suite YAML, or the name of a built-in suite (smoke, real-cpu)")
    bench.add_argument("--data-root", help="folder holding the datasets (default $MEDTL_DATA)")
    bench.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    bench.add_argument("--report-dir", help="where to write the leaderboard (default reports/<suite>)")
    bench.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)")
    bench.set_defaults(func=cmd_benchmark)

    report = sub.add_parser("report", help="print and write the leaderboard of a suite from MLflow")
    report.add_argument("suite")
    report.add_argument("--tracking-uri")
    report.add_argument("--report-dir")
    report.set_defaults(func=cmd_report)

    listing = sub.add_parser("list", help="list registered backbones, datasets, strategies and suites")
    listing.set_defaults(func=cmd_list)

    try:
        from benchmark.data_cli import add_data_commands
    except ImportError:  # the data commands are optional at import time only while being built
        pass
    else:
        add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from backbones import BackboneError
    from benchmark.suite import SuiteError
    from tasks import DataError

    try:
        return int(args.func(args) or 0)
    except (SuiteError, DataError, BackboneError) as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medtl: interrupted; rerun the same command to resume (finished cells are skipped).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
