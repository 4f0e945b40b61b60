"""The `medtl` command.

    medtl benchmark benchmark/suites/smoke.yaml     # run a suite (resumes: finished cells are skipped)
    medtl report benchmark/suites/smoke.yaml        # the report (tests, plots, report.html) of what has finished so far
    medtl report PARENT_RUN_ID --out DIR            # the same from a suite's parent run, without the suite file
    medtl list                                      # backbones, datasets, strategies, built-in suites
    medtl migrate                                   # re-tag an older store's finished cells (after an upgrade)
    medtl throughput --backbones resnet18,vgg16     # inference FPS per backbone (make perf)
    medtl data ...                                  # download / verify / describe datasets
    medtl server --backend-store-uri postgresql+psycopg2://USER@HOST/DB   # a team's MLflow server (make server)

Imports inside the commands on purpose: `import benchmark.cli` takes 0.04 s, while torch, MLflow and
Lightning take 4.7, 3.9 and 10 s to import here (2 busy cores), so `medtl --help`, `medtl list` and a
refused argument answer at once and each command pays only for what it uses.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

SUITES_DIR = Path(__file__).parent / "suites"
# Exit codes (README, "Errors and exit codes"): 0 ok, 1 failed cells or findings, 2 bad input
# (suite, data, store: nothing ran), 130 SIGINT / 143 SIGTERM (cell and suite recorded KILLED).
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
UI_BASE_URL = "http://127.0.0.1:5000"  # tracking.store.UI_BASE_URL, without importing MLflow for --help


def list_suites() -> list[str]:
    """The built-in suites' names (benchmark/suites/*.yaml, and papers/*.yaml as `papers/<name>`): what `medtl list`
    and every help text show."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml")) + sorted(f"papers/{p.stem}" for p in (SUITES_DIR / "papers").glob("*.yaml"))


def add_tracking_uri(parser, help: str = "MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)") -> None:
    """The one `--tracking-uri` option of every subcommand that reads or writes runs."""
    parser.add_argument("--tracking-uri", help=help)


def add_accelerator(parser) -> None:
    """`--accelerator`, the same default for cells and trials: a row's cells and its study run on one device."""
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)")


def _suite_path(value: str) -> Path:
    path = Path(value)
    if not path.exists() and (SUITES_DIR / f"{value}.yaml").exists():
        return SUITES_DIR / f"{value}.yaml"  # `medtl benchmark smoke` works from anywhere
    return path


def _data_root(value: str | None) -> Path | None:
    from tracking import settings
    value = value or settings.read("MEDTL_DATA")
    return Path(value) if value else None


def cmd_benchmark(args) -> int:
    from benchmark.run.preflight import check_accelerator, check_output_folder
    from benchmark.run.runner import run_suite

    if args.stand_in:  # the same protocol on generated images (benchmark/plan/standin.py), a suite of its own
        from benchmark.plan.standin import write_standin

        args.suite = str(write_standin(_suite_path(args.suite)))
        print(f"Stand-in suite written to {args.suite} (generated images; imagenet weights -> scratch).")
    if args.dry_run:  # validate and expand only: no image is read, no run is created
        from benchmark.plan.suite import cell_table, load_suite

        print(cell_table(load_suite(_suite_path(args.suite))))
        return 0
    check_accelerator(args.accelerator)  # before the first cell, not once per cell
    for folder, flag in ((args.report_dir, "--report-dir"), (args.launcher and args.jobs_folder, "--jobs-folder")):
        folder and check_output_folder(folder, flag)
    if args.launcher:
        return _launch(args)
    if args.workers is not None:
        print(f"medtl: error: --workers {args.workers} applies to a launcher, and none was given. Fix: add "
              "--launcher local (worker processes here) or --launcher slurm (job arrays).", file=sys.stderr)
        return EXIT_BAD_INPUT
    outcome = run_suite(_suite_path(args.suite), data_root=_data_root(args.data_root), uri=args.tracking_uri,
                        report_dir=Path(args.report_dir) if args.report_dir else None, accelerator=args.accelerator)
    print(f"Done in {outcome.seconds:.1f} s: {len(outcome.ran)} ran, {len(outcome.skipped)} skipped, {len(outcome.failed)} failed.")
    return outcome.exit_code


def _launch(args) -> int:
    """medtl benchmark SUITE --launcher local|slurm [--workers N] (benchmark/run/launchers.py)."""
    from benchmark.run.launchers import LauncherError, launch, settings_from

    if args.workers is None:
        args.workers = 2
    try:
        return launch(args.launcher, settings_from(args, _suite_path(args.suite), args.tracking_uri))
    except LauncherError as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_report(args) -> int:
    """medtl report SUITE|PARENT_RUN_ID [--out DIR]: the full report from MLflow alone (see benchmark/report/document.py)."""
    from benchmark.report.document import build_report
    from benchmark.report.leaderboard import to_markdown
    from benchmark.report.results import ReportError, is_run_id, load_results
    from benchmark.plan.suite import load_suite
    from tracking.store import open_store

    from benchmark.run.preflight import check_output_folder
    args.report_dir and not args.ui_link and check_output_folder(args.report_dir, "--out")  # before reading any run
    store = open_store(args.tracking_uri, create=False)  # an absent store: nothing to report, nothing created
    suite = None if is_run_id(args.suite) else load_suite(_suite_path(args.suite))
    if args.ui_link:
        return _print_ui_links(store, suite, args.suite, args.ui_link)
    try:
        results = load_results(store, suite=suite, parent_run_id=None if suite else args.suite)
    except ReportError as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.report_dir) if args.report_dir else Path("reports") / results.name
    report = build_report(results, out_dir)
    print(to_markdown(report.leaderboard, f"Leaderboard: {results.name}", report_dir=out_dir))
    for line in report.winners.itertuples() if len(report.winners) else ():
        print(textwrap.fill(f"{line.question} ({line.within}): {line.best} by {line.margin_mcc:+.3f} MCC over "
                            f"{line.runner_up}, Holm p = {line.p_holm:.3g}: {line.verdict}", width=120, subsequent_indent="  "))
    expected = len(suite.finetune_cells) if suite else len(results.cells) + len(results.missing)
    print(f"{len(results.cells)} of {expected} fine-tuning cells finished; report in {out_dir}/ (report.html, report.md).")
    for row in results.missing.itertuples():
        print(f"  missing: {row.source}/{row.backbone}/{row.strategy} fraction {row.fraction:g} fold {row.fold} seed {row.seed}: "
              f"{row.status}: {row.error}")
    return 0


def _print_ui_links(store, suite, run_id: str, base_url: str) -> int:
    """`medtl report SUITE --ui-link`: the runs table of the suite's cells and of its studies, whichever exist."""
    from tracking import ensure_experiment
    from tracking.naming import suite_experiment, tuning_experiment
    from tracking.store import ui_home_url, ui_runs_url

    if suite is None:
        print(ui_runs_url(store.get_run(run_id).info.experiment_id, base_url))
        return 0
    found = 0
    for what, name in (("cells", suite_experiment(suite.name)), ("studies", tuning_experiment(suite.name))):
        if store.get_experiment_by_name(name) is not None:
            # ensure_experiment tags a store made before the UI's experiment kind
            print(f"{what}: {ui_runs_url(ensure_experiment(store, name), base_url)}")
            found += 1
    if not found:
        print(f"medtl: no runs of suite {suite.name} (cells or studies) in {store.tracking_uri} yet; run `medtl benchmark` "
              f"or `medtl tune` first, or open {ui_home_url(base_url)}", file=sys.stderr)
        return 1
    return 0


def cmd_server(args) -> int:
    """medtl server --backend-store-uri URL [--host 127.0.0.1] [--port 5000] [--auth] (benchmark/run/server.py)."""
    from benchmark.run.server import DB_ENV, ServerError, ServerSettings, serve
    from tracking import settings

    settings = ServerSettings(backend_store_uri=args.backend_store_uri or settings.read(DB_ENV) or "",
                              artifacts_destination=args.artifacts_destination, host=args.host, port=args.port,
                              workers=args.workers, auth=args.auth, allowed_hosts=args.allowed_hosts)
    try:
        serve(settings)  # does not return: the process becomes `mlflow server`
    except ServerError as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def cmd_migrate(args) -> int:
    from benchmark.run.migrate import migrate_store
    from tracking.store import open_store

    outcome = migrate_store(open_store(args.tracking_uri, create=False), data_root=_data_root(args.data_root), dry_run=args.dry_run)
    return 1 if outcome.skipped else 0


def cmd_list(args) -> int:
    from backbones import backbone_families, list_backbones
    from benchmark.plan.catalogue import dataset_table
    from tasks.data import list_datasets
    from tasks.training import list_strategies

    if args.datasets:
        print(dataset_table())
        return 0
    families = ", ".join(f"{f}:<model>" for f in backbone_families())
    print("backbones: ", ", ".join(list_backbones()), f"(and any {families}, e.g. timm:resnet18)")
    print("datasets:  ", ", ".join(list_datasets()))
    print("strategies:", ", ".join(list_strategies()))
    print("suites:    ", ", ".join(list_suites()))
    return 0


def cmd_tune(args) -> int:
    """medtl tune SUITE [--n-trials N] [--storage URL|FILE] [--workers N] [--timeout S] (benchmark/tune/study.py)."""
    from benchmark.plan.suite import load_suite
    from benchmark.run.preflight import check_accelerator
    from benchmark.run.signals import stop_on_signals
    from benchmark.tune.study import TuneSettings, TuningFailed, interrupted_message, tune_suite
    from tracking.runs import Interrupted
    from tracking.studies import check_storage

    check_accelerator(args.accelerator)
    storage = check_storage(args.storage)  # seconds, before the suite (hparams_from: optuna) or any run reads it
    suite = load_suite(_suite_path(args.suite))
    budget = args.n_trials if args.n_trials is not None else suite.tune_budget or 20
    settings = TuneSettings(storage=storage, n_trials=budget, timeout=args.timeout, workers=args.workers,
                            pruner=args.pruner, seed=args.seed, tracking_uri=args.tracking_uri,
                            data_root=_data_root(args.data_root), accelerator=args.accelerator)
    try:
        with stop_on_signals():  # Lightning would turn Ctrl-C into exit 1 and leave the trial RUNNING
            studies = tune_suite(suite, settings)
    except TuningFailed as exc:  # the study's parent run is recorded FAILED with the same message
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(interrupted_message(exc, budget), file=sys.stderr)
        return exc.exit_code
    return 0 if all(any(t.state.name == "COMPLETE" for t in s.trials) for s in studies) else 1


def build_parser() -> argparse.ArgumentParser:
    from benchmark.run.preflight import number  # flags with a valid range: refused with it, exit 2

    parser = argparse.ArgumentParser(prog="medtl", description="Transfer-learning benchmark for medical image classification.")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("benchmark", help="run a suite of cells (resumable)")
    bench.add_argument("suite", help=f"suite YAML, or the name of a built-in suite ({', '.join(list_suites())})")
    bench.add_argument("--data-root", help="folder holding the datasets (default $MEDTL_DATA)")
    add_tracking_uri(bench)
    bench.add_argument("--report-dir", help="where to write the leaderboard (default reports/<suite>)")
    add_accelerator(bench)
    bench.add_argument("--dry-run", action="store_true", help="validate the suite and print its cells (count and table); "
                       "read no image, create no run")
    bench.add_argument("--stand-in", action="store_true", help="run the suite's protocol on generated images with the same "
                       "classes and layout, tiny, as suite <name>-standin (ImageNet weights become scratch): a check in "
                       "seconds to minutes before the real data")
    scale = bench.add_argument_group("launchers", "spread the cells over workers that share the MLflow store "
                                     "(benchmark/run/launchers.py; README, 'Beyond one machine')")
    scale.add_argument("--launcher", help="local: worker processes here, then the report; slurm: submit job arrays (submitit) and return")
    scale.add_argument("--workers", type=number(int, 1, fix="--workers 2"), help="local: worker processes; slurm: array tasks running at once (default 2)")
    scale.add_argument("--jobs-folder", help="submitit's job files and logs (default .medtl_jobs; on SLURM a shared folder)")
    scale.add_argument("--timeout-min", type=number(int, 1, fix="--timeout-min 240 (4 h)"), default=24 * 60, help="time limit per job, minutes (default 1440); a "
                       "job past it is requeued and resumes")
    scale.add_argument("--slurm-partition", help="SLURM partition (default: the cluster's default)")
    scale.add_argument("--cpus-per-cell", type=number(int, 1, fix="--cpus-per-cell 8, or leave it out"), help="SLURM --cpus-per-task (default: the cluster's default)")
    bench.set_defaults(func=cmd_benchmark)

    report = sub.add_parser("report", help="rebuild a suite's report (leaderboard, tests, plots, report.html) from MLflow")
    report.add_argument("suite", help=f"suite YAML or built-in name ({', '.join(list_suites())}), or the suite's parent run id "
                        "(no suite file needed)")
    add_tracking_uri(report)
    report.add_argument("--out", "--report-dir", dest="report_dir", help="output folder (default reports/<suite>)")
    report.add_argument("--ui-link", metavar="BASE_URL", nargs="?", const=UI_BASE_URL, help="only print the MLflow UI links "
                        f"to the suite's runs table and its studies' (BASE_URL default {UI_BASE_URL})")
    report.set_defaults(func=cmd_report)


    tune = sub.add_parser("tune", help="Optuna studies: tune every row of a suite on validation rows (resumable)")
    tune.add_argument("suite", help=f"suite YAML, or the name of a built-in suite ({', '.join(list_suites())}); rows of "
                      "feature (svm, vlad) and combining (ensemble) strategies are not tuned")
    tune.add_argument("--n-trials", type=number(int, 1, fix="--n-trials 20, or leave it out for the suite's tune_budget"),
                      help="each study's total budget, counting trials already in the storage "
                                                     "(default: the suite's tune_budget, else 20)")
    tune.add_argument("--storage", help="Optuna RDB URL (sqlite:///optuna.db, postgresql+psycopg2://user@host/db) or a journal "
                                        "file path (no '://') (default $MEDTL_OPTUNA_STORAGE or sqlite:///optuna.db)")
    tune.add_argument("--workers", type=number(int, 1, fix="--workers 2"), default=1, help="worker processes per study (default 1)")
    tune.add_argument("--timeout", type=number(float, 0, above=True, fix="--timeout 3600, or leave it out (no limit)"), help="seconds after which a worker takes no new trial")
    tune.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"))
    tune.add_argument("--seed", type=number(int, 0, maximum=2**32 - 1, fix="--seed 0"), default=0, help="TPE sampler seed (worker i uses seed + i)")
    tune.add_argument("--data-root", help="folder holding the datasets (default $MEDTL_DATA)")
    add_tracking_uri(tune)
    add_accelerator(tune)
    tune.set_defaults(func=cmd_tune)

    server = sub.add_parser("server", help="a team's MLflow tracking server: PostgreSQL backend, served artifacts, "
                            "127.0.0.1 by default (README, 'Beyond one machine')")
    server.add_argument("--backend-store-uri", help="database of the runs, e.g. postgresql+psycopg2://USER@HOST:5432/DB "
                        "(default $MEDTL_SERVER_DB)")
    server.add_argument("--artifacts-destination", default="./mlartifacts", help="where the server keeps artifacts "
                        "(a folder or s3://...; default ./mlartifacts)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=number(int, 1, maximum=65535, fix="--port 5000"), default=5000)
    server.add_argument("--workers", type=number(int, 1, fix="--workers 4"), default=4, help="server worker processes (default 4)")
    server.add_argument("--auth", action="store_true", help="MLflow's basic-auth app (needs mlflow[auth] and "
                        "MLFLOW_FLASK_SERVER_SECRET_KEY)")
    server.add_argument("--allowed-hosts", help="Host headers to accept, e.g. mlflow.lab:5000 (default: localhost and "
                        "private addresses)")
    server.set_defaults(func=cmd_server)

    migrate = sub.add_parser("migrate", help="re-tag finished cells of an older store with the current cell identity")
    add_tracking_uri(migrate)
    migrate.add_argument("--data-root", help="where pretraining sources live (to tell which split an old cell held out)")
    migrate.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    migrate.set_defaults(func=cmd_migrate)

    listing = sub.add_parser("list", help="list registered backbones, datasets, strategies and suites")
    listing.add_argument("--datasets", action="store_true", help="print the README's dataset table, from the dataset cards")
    listing.set_defaults(func=cmd_list)

    from benchmark.data_cli import add_data_commands
    from benchmark.score_cli import add_score_command
    from benchmark.throughput_cli import add_throughput_command

    add_throughput_command(sub)
    add_data_commands(sub)
    add_score_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a refused argument (2, message printed); a code, not an exit
        return int(exc.code or 0)
    from backbones import BackboneError
    from benchmark.plan.suite import SuiteError
    from benchmark.tune.study import TuningFailed  # optuna itself is imported only when a study runs
    from tasks.data import DataError
    from tracking.preflight import StoreError
    from benchmark.run.preflight import PreflightError
    from tracking.preflight import bound_service_clients, lost_store
    from tracking.store import tracking_uri
    from tracking.runs import Interrupted

    from tracking.settings import SettingError, check_all

    bound_service_clients()  # no client of MLflow or a database waits without limit
    try:
        check_all()  # every MEDTL_* / MLFLOW_TRACKING_URI value, before anything reads one deep inside
        return int(args.func(args) or 0)
    except (SuiteError, DataError, BackboneError, StoreError, PreflightError, SettingError) as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TuningFailed as exc:  # a suite's tune_budget study whose trials keep failing (its run is FAILED)
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a lost tracking store gets one message; anything else is a bug to show
        if (message := lost_store(exc, tracking_uri(getattr(args, "tracking_uri", None)))) is None:
            raise
        print(f"medtl: error: {message}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        name = "SIGTERM" if isinstance(exc, Interrupted) and exc.exit_code == 143 else "interrupted (SIGINT)"
        print(f"medtl: {name}; the running cell and the suite run are recorded KILLED. Rerun the same command to "
              "resume (finished cells are skipped).", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
