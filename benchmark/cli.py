"""The `medtl` command.

    medtl benchmark benchmark/suites/smoke.yaml     # run a suite (resumes: finished cells are skipped)
    medtl report benchmark/suites/smoke.yaml        # the report (tests, plots, report.html) of what has finished so far
    medtl report PARENT_RUN_ID --out DIR            # the same from a suite's parent run, without the suite file
    medtl list                                      # backbones, datasets, strategies, built-in suites
    medtl migrate                                   # re-tag an older store's finished cells (after an upgrade)
    medtl throughput --backbones resnet18,vgg16     # inference FPS per backbone (make perf)
    medtl data ...                                  # download / verify / describe datasets
    medtl server --backend-store-uri postgresql+psycopg2://USER@HOST/DB   # a team's MLflow server (make server)
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

SUITES_DIR = Path(__file__).parent / "suites"
# Exit codes (README, "Errors and exit codes"): 0 ok, 1 failed cells or findings, 2 bad input
# (suite, data, store: nothing ran), 130 SIGINT / 143 SIGTERM (cell and suite recorded KILLED).
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130


def _suite_path(value: str) -> Path:
    path = Path(value)
    if not path.exists() and (SUITES_DIR / f"{value}.yaml").exists():
        return SUITES_DIR / f"{value}.yaml"  # `medtl benchmark smoke` works from anywhere
    return path


def _data_root(value: str | None) -> Path | None:
    value = value or os.environ.get("MEDTL_DATA")
    return Path(value) if value else None


def cmd_benchmark(args) -> int:
    from benchmark.run.runner import run_suite

    if args.dry_run:  # validate and expand only: no image is read, no run is created
        from benchmark.plan.suite import cell_table, load_suite

        print(cell_table(load_suite(_suite_path(args.suite))))
        return 0
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
    from tracking.naming import suite_experiment
    from benchmark.plan.suite import load_suite
    from tracking import ensure_experiment
    from tracking.store import open_store

    store = open_store(args.tracking_uri, create=False)  # an absent store: nothing to report, nothing created
    suite = None if is_run_id(args.suite) else load_suite(_suite_path(args.suite))
    if args.ui_link:
        if suite is not None:
            experiment = store.get_experiment_by_name(suite_experiment(suite.name))
            if experiment is None:
                print(f"medtl: no runs of suite {suite.name} in {store.tracking_uri} yet; open {args.ui_link}", file=sys.stderr)
                return 1
            experiment_id = ensure_experiment(store, experiment.name)  # tags a store made before the UI's experiment kind
        else:
            experiment_id = store.get_run(args.suite).info.experiment_id
        print(f"{args.ui_link.rstrip('/')}/#/experiments/{experiment_id}/runs")
        return 0
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


def cmd_throughput(args) -> int:
    import pandas as pd
    import torch

    from backbones import create_backbone, list_backbones
    from benchmark.speed.cost import flops_per_image
    from benchmark.speed.throughput import device_peak, fraction_of_peak, measure_fps, measure_latency, measure_training, write_results
    from tasks.training.speed import warn_precision
    from tracking.environment import environment_tags

    names = args.backbones.split(",") if args.backbones else list_backbones()
    sweep = [int(b) for b in (args.batch_sizes or str(args.batch_size)).split(",")]
    warn_precision(args.precision, "cpu" if (args.device or "").startswith("cpu") else "auto")
    common = dict(precision=args.precision, device=args.device, memory_format=args.memory_format)
    rows = []
    for name in names:
        net = create_backbone(name, "scratch")  # weights do not change speed
        size = max(args.image_size, net.input_config.min_size)
        flops = flops_per_image(net, size)
        for batch in sweep:
            r = measure_fps(net, image_size=size, batch_size=batch, warmup=args.warmup, batches=args.batches,
                            compile=args.compile, **common)
            peak = device_peak(r.device, args.precision, r.threads)
            rows.append({"backbone": name, "mode": "inference", "batch_size": batch, "img_s": round(r.fps, 2),
                         "flops_per_image": flops, "fraction_of_peak": fraction_of_peak(flops, r.fps, peak),
                         "peak_flops": peak.flops, "peak_source": peak.source,
                         **{k.split(".", 1)[1]: v for k, v in r.params().items() if k != "throughput.batch_size"}})
            print(f"{name:>16} inference bs{batch:<4}: {r.fps:9.1f} img/s  ({rows[-1]['fraction_of_peak']:.1%} of peak, "
                  f"{peak.source})", flush=True)
        base = {k: v for k, v in rows[-1].items() if k not in ("mode", "batch_size", "img_s", "fraction_of_peak")}
        lat = measure_latency(net, image_size=size, warmup=args.warmup, repeats=max(args.batches, 10), **common)
        rows.append({**base, "mode": "latency", "batch_size": 1, **{k: round(v, 3) for k, v in lat.items()}})
        print(f"{name:>16} latency bs1   : p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms", flush=True)
        if not args.no_training:
            fps = measure_training(net, image_size=size, batch_size=max(sweep), warmup=args.warmup, batches=args.batches,
                                   compile=args.compile, **common)
            rows.append({**base, "mode": "training", "batch_size": max(sweep), "img_s": round(fps, 2), "compiled": args.compile,
                         "fraction_of_peak": fraction_of_peak(3 * flops, fps, peak)})
            print(f"{name:>16} training bs{max(sweep):<5}: {fps:9.1f} img/s (forward + backward + Adam step)", flush=True)
    table = pd.DataFrame(rows)
    tags = environment_tags()
    table["torch"] = tags["medtl.version.torch"]
    table["git_sha"] = tags["medtl.git_sha"]
    table["load_avg_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).replace(":", "")
    layout = table["memory_format"].iloc[0] if args.memory_format == "auto" and len(table) else args.memory_format
    # The file name carries the conditions, so results from different settings never overwrite each other.
    out = write_results(table, args.out_dir, f"throughput_{device}_{args.image_size}px_{args.precision}_{layout}"
                                             f"{'_compiled' if args.compile else ''}_t{torch.get_num_threads()}.csv")
    if args.tracking_uri:
        _log_throughput(table, args.tracking_uri)
    print(table.drop(columns=["peak_source", "git_sha"]).to_markdown(index=False))
    print(f"Written to {out}. Model work only, random input, after {args.warmup} warm-up batches; training FLOPs "
          "taken as 3x inference.")
    return 0


def _log_throughput(table, uri: str) -> None:
    """One MLflow run per (backbone, mode, batch) in experiment `throughput`: numbers as metrics, conditions as tags."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("throughput")
    experiment = found.experiment_id if found else client.create_experiment("throughput")
    measures = ("img_s", "p50_ms", "p95_ms", "fraction_of_peak", "flops_per_image")
    for row in table.to_dict("records"):
        tags = {f"throughput.{k}": str(v) for k, v in row.items() if k not in measures}
        run = client.create_run(experiment, run_name=f"{row['backbone']} {row['mode']} bs{row['batch_size']}", tags=tags)
        for k in measures:
            if k in row and row[k] == row[k]:
                client.log_metric(run.info.run_id, k, float(row[k]))
        client.set_terminated(run.info.run_id)


def cmd_server(args) -> int:
    """medtl server --backend-store-uri URL [--host 127.0.0.1] [--port 5000] [--auth] (benchmark/run/server.py)."""
    from benchmark.run.server import DB_ENV, ServerError, ServerSettings, serve

    settings = ServerSettings(backend_store_uri=args.backend_store_uri or os.environ.get(DB_ENV, ""),
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
    print("suites:    ", ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))))
    return 0


def cmd_tune(args) -> int:
    """medtl tune SUITE [--n-trials N] [--storage URL|FILE] [--workers N] [--timeout S] (benchmark/tune/study.py)."""
    from benchmark.plan.suite import load_suite
    from benchmark.tune.study import TuneSettings, TuningFailed, tune_suite
    from tracking.studies import storage_url

    suite = load_suite(_suite_path(args.suite))
    budget = args.n_trials or suite.tune_budget or 20
    settings = TuneSettings(storage=storage_url(args.storage), n_trials=budget, timeout=args.timeout, workers=args.workers,
                            pruner=args.pruner, seed=args.seed, tracking_uri=args.tracking_uri,
                            data_root=_data_root(args.data_root), accelerator=args.accelerator)
    try:
        studies = tune_suite(suite, settings)
    except TuningFailed as exc:  # the study's parent run is recorded FAILED with the same message
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 1
    return 0 if all(any(t.state.name == "COMPLETE" for t in s.trials) for s in studies) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="Transfer-learning benchmark for medical image classification.")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("benchmark", help="run a suite of cells (resumable)")
    bench.add_argument("suite", help="suite YAML, or the name of a built-in suite (smoke, real-cpu)")
    bench.add_argument("--data-root", help="folder holding the datasets (default $MEDTL_DATA)")
    bench.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns.db)")
    bench.add_argument("--report-dir", help="where to write the leaderboard (default reports/<suite>)")
    bench.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)")
    bench.add_argument("--dry-run", action="store_true", help="validate the suite and print its cells (count and table); "
                       "read no image, create no run")
    scale = bench.add_argument_group("launchers", "spread the cells over workers that share the MLflow store "
                                     "(benchmark/run/launchers.py; README, 'Beyond one machine')")
    scale.add_argument("--launcher", help="local: worker processes here, then the report; slurm: submit job arrays (submitit) and return")
    scale.add_argument("--workers", type=int, help="local: worker processes; slurm: array tasks running at once (default 2)")
    scale.add_argument("--jobs-folder", help="submitit's job files and logs (default .medtl_jobs; on SLURM a shared folder)")
    scale.add_argument("--timeout-min", type=int, default=24 * 60, help="time limit per job, minutes (default 1440); a "
                       "job past it is requeued and resumes")
    scale.add_argument("--slurm-partition", help="SLURM partition (default: the cluster's default)")
    scale.add_argument("--cpus-per-cell", type=int, help="SLURM --cpus-per-task (default: the cluster's default)")
    bench.set_defaults(func=cmd_benchmark)

    report = sub.add_parser("report", help="rebuild a suite's report (leaderboard, tests, plots, report.html) from MLflow")
    report.add_argument("suite", help="suite YAML or built-in name, or the suite's parent run id (no suite file needed)")
    report.add_argument("--tracking-uri")
    report.add_argument("--out", "--report-dir", dest="report_dir", help="output folder (default reports/<suite>)")
    report.add_argument("--ui-link", metavar="BASE_URL", help="only print the MLflow UI link to the suite's runs table")
    report.set_defaults(func=cmd_report)

    perf = sub.add_parser("throughput", help="inference img/s over a batch sweep, latency, training img/s, FLOPs and "
                          "fraction of peak per backbone, with their conditions (make perf)")
    perf.add_argument("--backbones", help="comma-separated names (default: all)")
    perf.add_argument("--image-size", type=int, default=224)
    perf.add_argument("--batch-size", type=int, default=16, help="one batch size (see --batch-sizes)")
    perf.add_argument("--batch-sizes", help="inference sweep, e.g. 1,8,32 (default: --batch-size); training uses the largest")
    perf.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed")
    perf.add_argument("--memory-format", default="auto", choices=["auto", "channels_last", "contiguous"],
                      help="auto: channels_last for convnets")
    perf.add_argument("--compile", action="store_true", help="torch.compile the inference forward and the training step (off by default)")
    perf.add_argument("--no-training", action="store_true", help="skip the training img/s measurement")
    perf.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    perf.add_argument("--warmup", type=int, default=2)
    perf.add_argument("--batches", type=int, default=5)
    perf.add_argument("--tracking-uri", help="also log each row as an MLflow run (experiment 'throughput')")
    perf.add_argument("--out-dir", default="reports/throughput")
    perf.set_defaults(func=cmd_throughput)

    tune = sub.add_parser("tune", help="Optuna studies: tune every row of a suite on validation rows (resumable)")
    tune.add_argument("suite", help="suite YAML, or the name of a built-in suite (tune-smoke)")
    tune.add_argument("--n-trials", type=int, help="each study's total budget, counting trials already in the storage "
                                                     "(default: the suite's tune_budget, else 20)")
    tune.add_argument("--storage", help="Optuna RDB URL (sqlite:///optuna.db, postgresql+psycopg2://user@host/db) or a journal "
                                        "file path (no '://') (default $MEDTL_OPTUNA_STORAGE or sqlite:///optuna.db)")
    tune.add_argument("--workers", type=int, default=1, help="worker processes per study (default 1)")
    tune.add_argument("--timeout", type=float, help="seconds after which a worker takes no new trial")
    tune.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"))
    tune.add_argument("--seed", type=int, default=0, help="TPE sampler seed (worker i uses seed + i)")
    tune.add_argument("--data-root", help="folder holding the datasets (default $MEDTL_DATA)")
    tune.add_argument("--tracking-uri")
    tune.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)")
    tune.set_defaults(func=cmd_tune)

    server = sub.add_parser("server", help="a team's MLflow tracking server: PostgreSQL backend, served artifacts, "
                            "127.0.0.1 by default (README, 'Beyond one machine')")
    server.add_argument("--backend-store-uri", help="database of the runs, e.g. postgresql+psycopg2://USER@HOST:5432/DB "
                        "(default $MEDTL_SERVER_DB)")
    server.add_argument("--artifacts-destination", default="./mlartifacts", help="where the server keeps artifacts "
                        "(a folder or s3://...; default ./mlartifacts)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=int, default=4, help="server worker processes (default 4)")
    server.add_argument("--auth", action="store_true", help="MLflow's basic-auth app (needs mlflow[auth] and "
                        "MLFLOW_FLASK_SERVER_SECRET_KEY)")
    server.add_argument("--allowed-hosts", help="Host headers to accept, e.g. mlflow.lab:5000 (default: localhost and "
                        "private addresses)")
    server.set_defaults(func=cmd_server)

    migrate = sub.add_parser("migrate", help="re-tag finished cells of an older store with the current cell identity")
    migrate.add_argument("--tracking-uri")
    migrate.add_argument("--data-root", help="where pretraining sources live (to tell which split an old cell held out)")
    migrate.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    migrate.set_defaults(func=cmd_migrate)

    listing = sub.add_parser("list", help="list registered backbones, datasets, strategies and suites")
    listing.add_argument("--datasets", action="store_true", help="print the README's dataset table, from the dataset cards")
    listing.set_defaults(func=cmd_list)

    from benchmark.data_cli import add_data_commands
    from benchmark.score_cli import add_score_command

    add_data_commands(sub)
    add_score_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from backbones import BackboneError
    from benchmark.plan.suite import SuiteError
    from benchmark.tune.study import TuningFailed  # optuna itself is imported only when a study runs
    from tasks.data import DataError
    from tracking.preflight import StoreError
    from tracking.runs import Interrupted

    try:
        return int(args.func(args) or 0)
    except (SuiteError, DataError, BackboneError, StoreError) as exc:
        print(f"medtl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TuningFailed as exc:  # a suite's tune_budget study whose trials keep failing (its run is FAILED)
        print(f"medtl: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        name = "SIGTERM" if isinstance(exc, Interrupted) and exc.exit_code == 143 else "interrupted (SIGINT)"
        print(f"medtl: {name}; the running cell and the suite run are recorded KILLED. Rerun the same command to "
              "resume (finished cells are skipped).", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
