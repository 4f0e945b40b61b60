"""The `medtl score` command: score a predictions table the way cells are scored.

    medtl score mlartifacts/.../test/predictions.csv               # macro and micro (Medico 2018) rows
    medtl score submission.csv --json                              # {"macro": {...}, "micro": {...}}
    medtl score chest_xray.csv --positive-class PNEUMONIA          # plus that class's REC / PREC / F1
    medtl score ids.csv --classes normal,benign,malignant          # names for ids 0..K-1
    python -m benchmark.score_cli submission.csv --json            # same, without `medtl`

The table is a cell's `test/predictions.csv`, or any CSV with `target` and `predicted` columns
(class names or ids) and optional `p:<class>` probability columns (AUC). Scoring is
`tasks.training.scoring.score_table`, i.e. the cells' own metric code.

Exit codes: 0 scored; 2 the table cannot be scored (a one-line message on stderr: what, where,
how to fix).

Contract for `benchmark/cli.py`: `add_score_command(subparsers)` adds the `score` parser to the
main parser's subparsers and sets `func`; the main CLI runs `sys.exit(args.func(args))`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

ROW_LABELS = {"macro": "macro (MCC = R_K)", "micro": "micro (Medico 2018)", "positive": "positive class"}
COLUMNS = ("mcc", "f1", "rec", "prec", "spec", "acc", "auc")


def format_scores(scores: dict[str, dict[str, float]], title: str, positive_class: str | None = None) -> str:
    """A plain-text table, one line per row of `scores`, at most 100 columns wide."""
    lines = [title, f"{'':<22}" + "".join(f"{c.upper():>8}" for c in COLUMNS)]
    for row, values in scores.items():
        label = f"positive: {positive_class}"[:21] if row == "positive" and positive_class else ROW_LABELS.get(row, row)
        lines.append(f"{label:<22}" + "".join(f"{values[c]:>8.3f}" if c in values else f"{'-':>8}" for c in COLUMNS))
    lines.append("MCC: macro row = multiclass R_K (whole confusion matrix); micro row = MCC of pooled counts.")
    return "\n".join(line[:100] for line in lines)


def _error(message: str) -> int:
    print(f"medtl score: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def run_score(args: argparse.Namespace) -> int:
    """Read `args.predictions`, score it and print the table (or JSON); 2 with one line on bad input."""
    import pandas as pd

    from tasks.training.scoring import ScoringError, score_table

    try:
        frame = pd.read_csv(args.predictions)
    except FileNotFoundError:
        return _error(f"{args.predictions}: no such file. Fix: give the path of a predictions CSV.")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, IsADirectoryError) as exc:
        return _error(f"{args.predictions}: not a readable CSV table ({exc}). Fix: give a comma-separated table with a "
                      "header row.")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    positive = args.positive_class
    if positive is not None and positive.isdigit() and positive not in (classes or ()) and f"p:{positive}" not in frame:
        positive = int(positive)  # an id, unless a class is literally named so
    try:
        with warnings.catch_warnings():  # torchmetrics warns about classes absent from a table; the scores say so
            warnings.simplefilter("ignore")
            scores = score_table(frame, class_names=classes, positive_class=positive)
    except ScoringError as exc:
        return _error(f"{args.predictions}: {exc}")
    if args.json:
        print(json.dumps(scores))
    else:
        print(format_scores(scores, f"{args.predictions}: {len(frame)} predictions", args.positive_class))
    return 0


def add_score_command(subparsers) -> argparse.ArgumentParser:
    """Add `score PREDICTIONS.csv [--json] [--positive-class NAME] [--classes A,B,..]` to `subparsers`."""
    parser = subparsers.add_parser("score", help="score a predictions table (macro and micro/Medico rows)",
                                   description="Score a predictions table the way medtl scores its cells.")
    parser.add_argument("predictions", help="CSV with target and predicted columns (names or ids), optional p:<class>")
    parser.add_argument("--json", action="store_true", help='print {"macro": {...}, "micro": {...}} instead of a table')
    parser.add_argument("--positive-class", metavar="NAME", help="also score this class (name or id) against the rest")
    parser.add_argument("--classes", metavar="A,B,..", help="class names in id order (default: from p:<class> "
                        "columns, else the names in the table, else ids 0..max)")
    parser.set_defaults(func=run_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmark.score_cli PREDICTIONS.csv [--json]` (the leading `score` is optional)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["score"]:
        argv = ["score", *argv]
    parser = argparse.ArgumentParser(prog="medtl")
    add_score_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
