"""The `medtl data` commands: download, verify and describe datasets.

    medtl data download kvasir-v2 --root ~/data
    medtl data verify medmnist --root ../shared/data/breastmnist/breastmnist.npz
    medtl data describe class-folders --root ../shared/data/dtd10 --option sample=200
    python -m benchmark.data_cli verify class-folders --root ../shared/data/dtd10   # same, without `medtl`

Exit codes: 0 success; 1 verification found errors (or warnings, with --strict); 2 the data
cannot be used as given (a DataError: unknown name, bad option, failed download, or a dataset
that must be downloaded by hand, whose instructions are printed).

Contract for `benchmark/cli.py`: `add_data_commands(subparsers)` adds the `data` parser to the
main parser's subparsers; every leaf sets `func`, and the main CLI runs
`sys.exit(args.func(args))`. Output goes to stdout, errors to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from tasks.data.errors import DataError
from tasks.data.registry import list_datasets


def parse_option(text: str) -> tuple[str, object]:
    """`key=value` -> (key, value) with ints, floats, true/false and none read as such."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"option {text!r} is not key=value (e.g. --option flag=breastmnist)")
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    if lowered == "none":
        return key, None
    for cast in (int, float):
        try:
            return key, cast(raw)
        except ValueError:
            pass
    return key, raw


def _common(parser: argparse.ArgumentParser, names: str) -> None:
    parser.add_argument("name", help=f"dataset name: {names}")
    parser.add_argument("--root", required=True, help="dataset folder or file (download: where to put it)")
    parser.add_argument("--option", "-o", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="adapter option, repeatable, e.g. --option flag=breastmnist --option size=64")


def _run_download(args: argparse.Namespace) -> int:
    from tasks.data.download import ManualDownloadRequired, download_dataset

    try:
        path = download_dataset(args.name, args.root, keep_archive=args.keep_archive, **dict(args.option))
    except ManualDownloadRequired as exc:
        print(exc.instructions, file=sys.stderr)
        return 2
    print(f"{args.name} is ready: use --data-root {path}")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from tasks.data.verify import verify

    report = verify(args.name, args.root, workers=args.workers, **dict(args.option))
    print(report.to_text())
    if not report.ok or (args.strict and report.warnings):
        return 1
    return 0


def _run_describe(args: argparse.Namespace) -> int:
    from tasks.data.describe import describe

    print(describe(args.name, args.root, sample=args.sample, seed=args.seed, **dict(args.option)).to_text())
    return 0


def _add_download(sub) -> None:
    parser = sub.add_parser("download", help="download and unpack a dataset, or print how to get it by hand")
    from tasks.data.download import download_catalogue

    _common(parser, ", ".join(n for n in sorted(download_catalogue()) if ":" not in n) + ", medmnist (--option flag=...)")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .zip/.tar after unpacking")
    parser.set_defaults(func=_guarded(_run_download))


def _add_verify(sub) -> None:
    parser = sub.add_parser("verify", help="decode every image, find duplicates, compare published counts")
    _common(parser, ", ".join(list_datasets()))
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    parser.add_argument("--strict", action="store_true", help="fail on warnings (duplicates) too")
    parser.set_defaults(func=_guarded(_run_verify))


def _add_describe(sub) -> None:
    parser = sub.add_parser("describe", help="class histogram, splits, groups and image sizes")
    _common(parser, ", ".join(list_datasets()))
    parser.add_argument("--sample", type=int, default=500, help="images whose size is read (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of that sample")
    parser.set_defaults(func=_guarded(_run_describe))


def _run_audit(args: argparse.Namespace) -> int:
    from tasks.data import load_task
    from tasks.data.audit import audit
    from tasks.data.splits import assign_folds

    task = load_task(args.name, args.root, **dict(args.option))
    # The official split when the dataset has one, else the k-fold assignment cells would use.
    assignment = None if task.has_official_split and not args.folds else assign_folds(task, args.folds or 5, args.seed)
    other = load_task(args.against, args.against_root, **dict(args.against_option)) if args.against else None
    report = audit(task, assignment, other, threshold=args.threshold)
    print(report.summary())
    for title, frame in (("Near-duplicates per pair of splits", report.duplicates), ("Against the other dataset", report.cross),
                         ("Groups on both sides of a split", report.group_leaks)):
        if len(frame):
            print(f"\n{title}:\n{frame.head(20).to_markdown(index=False)}")
    return 0 if report.ok else 1


def _add_audit(sub) -> None:
    parser = sub.add_parser("audit", help="near-duplicates across splits (and against a source), groups split across folds")
    _common(parser, ", ".join(list_datasets()))
    parser.add_argument("--folds", type=int, default=0, help="audit a k-fold assignment instead of the official split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-fold assignment")
    parser.add_argument("--against", help="a source dataset to compare with (e.g. the pretraining source)")
    parser.add_argument("--against-root", help="its folder or file")
    parser.add_argument("--against-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE")
    parser.add_argument("--threshold", type=int, default=4, help="max Hamming distance of 64-bit perceptual hashes (default 4)")
    parser.set_defaults(func=_guarded(_run_audit))


# One entry per subcommand, in help order.
DATA_COMMANDS: list[tuple[str, Callable]] = [
    ("download", _add_download),
    ("verify", _add_verify),
    ("describe", _add_describe),
    ("audit", _add_audit),
]


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A DataError is the user's data or input, not a bug: print it (no traceback) and exit 2."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return guarded


def add_data_commands(subparsers) -> argparse.ArgumentParser:
    """Add `data {download,verify,describe}` to `subparsers` (from `parser.add_subparsers()`)."""
    data = subparsers.add_parser("data", help="download, verify and describe datasets",
                                 description="Download, verify and describe datasets.")
    sub = data.add_subparsers(dest="data_command", required=True)
    for _, add in DATA_COMMANDS:
        add(sub)
    return data


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmark.data_cli verify NAME --root DIR` (the leading `data` is optional)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["data"]:
        argv = ["data", *argv]
    parser = argparse.ArgumentParser(prog="medtl")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    # The downloader reports progress and recorded checksums through logging.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
