"""Run a suite: expand cells, skip finished ones, run the rest under one parent MLflow run, report.

    medtl benchmark benchmark/suites/smoke.yaml [--data-root DIR] [--tracking-uri URI]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from benchmark.cell.quiet import quiet_libraries
from benchmark.cell.route import CellContext, run_cell
from benchmark.cell.preflight import check_suite_data
from benchmark.cell.transferability import suite_transferability
from benchmark.report.leaderboard import cell_results, leaderboard, to_markdown, write_report
from benchmark.plan.spec import FORMAT, RunSpec
from benchmark.plan.suite import Suite, load_suite
from benchmark.plan.tuning import scope_tags
from benchmark.run.signals import stop_on_signals
from tracking import CellRun, ensure_experiment, environment_tags, finished_runs_by_hash, flatten, log_text, runs_frame, start_run, tracking_uri
from tracking.claims import Claims
from tracking.runs import HASH_TAG, STOPPED, search_runs
from tracking.store import open_store, ui_hint
from tracking.naming import FORMAT_TAG, SOURCE_TAG, STAGE_SUITE, STANDIN_TAG, STAGE_TAG, SUITE_TAG, TUNE_BUDGET_TAG, suite_experiment


SUITE_BAR = "{desc}: {n_fmt}/{total_fmt} cells |{bar}| {elapsed}<{remaining}{postfix}"  # ETA from the cells done


@dataclass
class SuiteOutcome:
    suite: Suite
    parent_run_id: str
    ran: list[RunSpec] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    elsewhere: list[RunSpec] = field(default_factory=list)  # claimed by another live worker (or finished meanwhile)
    report_error: str = ""  # why the report could not be written (the cells stay FINISHED; `medtl report` retries)
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)
    report_paths: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.report_error else 0


def cell_tags(spec: RunSpec, suite: Suite) -> dict[str, str]:
    return {
        HASH_TAG: spec.hash,
        FORMAT_TAG: str(FORMAT),
        SUITE_TAG: suite.name,
        STAGE_TAG: spec.stage,
        SOURCE_TAG: spec.source,
        **scope_tags(suite, spec),  # medtl.tune_scope of a tuned cell: nested | shared (optimistic) | official
        **environment_tags(),
        **({STANDIN_TAG: suite.model.stand_in} if suite.model.stand_in else {}),  # generated data, never a result
    }


def run_name(spec: RunSpec) -> str:
    """A cell's name in MLflow's runs table: short, and distinct within the suite (row, fold, seed)."""
    where = "official" if spec.fold < 0 else f"f{spec.fold}"
    if spec.stage == "pretrain":
        return f"pretrain {spec.source}/{spec.backbone} {where}"
    return f"{spec.source}/{spec.backbone}/{spec.strategy} {where} s{spec.seed}" + ("" if spec.fraction == 1.0 else f" x{spec.fraction:g}")


def prepare_suite(suite_path: Path | str, *, data_root: Path | None = None, uri: str | None = None,
                  accelerator: str = "auto", cells=None) -> tuple[Suite, CellContext, str]:
    """Load and check what a suite's cells need (suite, store, the data of `cells`, default all) before any run:
    (suite, the cells' shared context, the suite's experiment id). Raises SuiteError, StoreError or DataError."""
    quiet_libraries()
    suite = load_suite(suite_path)
    uri = tracking_uri(uri)
    client = open_store(uri)
    ctx = CellContext(client, uri, data_root, Path(".medtl_cache"), {}, suite.throughput, accelerator, suite.num_workers,
                      suite.save_checkpoints)
    check_suite_data(suite.cells if cells is None else cells, data_root, ctx.tasks)
    experiment_id = ensure_experiment(client, suite_experiment(suite.name))
    if suite.model.stand_in:  # the report's protocol line reads it (benchmark/report/protocol.py)
        client.set_experiment_tag(experiment_id, STANDIN_TAG, suite.model.stand_in)
    return suite, ctx, experiment_id


def run_suite(
    suite_path: Path | str,
    *,
    data_root: Path | None = None,
    uri: str | None = None,
    report_dir: Path | None = None,
    accelerator: str = "auto",
    echo=print,
) -> SuiteOutcome:
    """Run every cell of the suite that has no FINISHED run yet; see the module docstring.

    Before any MLflow run exists: the suite is validated (SuiteError), the store checked
    (StoreError) and every dataset loaded and checked (DataError). SIGINT / SIGTERM raise
    `Interrupted`: the running cell and the parent run end KILLED.
    """
    from benchmark.run.preflight import check_output_folder

    started = time.perf_counter()
    suite, ctx, experiment_id = prepare_suite(suite_path, data_root=data_root, uri=uri, accelerator=accelerator)
    # Before the first cell: a report folder that cannot be written would fail only after the last one.
    check_output_folder(report_dir or Path("reports") / suite.name, "--report-dir")
    client = ctx.client
    claims = Claims(client, experiment_id)
    with stop_on_signals():
        try:
            for run, reason in claims.reap_stale():
                echo(f"Marked stale RUNNING run {run.info.run_id} ({run.info.run_name}) KILLED: {reason}.")
            ctx.finished.update(finished_runs_by_hash(client, experiment_id))
            if not suite.tune_budget and all(c.hash in ctx.finished for c in suite.cells):
                return _report_only(suite, ctx, experiment_id, report_dir, echo, started)
            parent_id = start_run(client, experiment_id, name=f"suite {suite.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                  tags={SUITE_TAG: suite.name, STAGE_TAG: "suite", **environment_tags(), **claims.tags()})
            claims.hold(parent_id)
            return _run_cells(suite, ctx, claims, experiment_id, parent_id, report_dir, echo, started)
        finally:
            claims.close()


def _report_only(suite: Suite, ctx: CellContext, experiment_id: str, report_dir: Path | None, echo,
                 started: float) -> SuiteOutcome:
    """Every cell has a FINISHED run: no new parent run (it would hold no cell, atop the runs table); the
    report goes to the suite's latest parent run, whose own summary (cells ran, failed) stays as it was."""
    last = search_runs(ctx.client, experiment_id, f"tags.`{STAGE_TAG}` = '{STAGE_SUITE}'")
    parent_id = max(last, key=lambda r: r.info.start_time).info.run_id if last else ""
    outcome = SuiteOutcome(suite, parent_id, skipped=list(suite.cells))
    echo(f"Suite {suite.name}: all {len(suite.cells)} cells have a FINISHED run already; nothing to run"
         f"{f', the report goes to parent run {parent_id}' if parent_id else ''}.")
    write_suite_report(outcome, ctx, parent_id, report_dir, echo, summary=False)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _run_cells(suite: Suite, ctx: CellContext, claims: Claims, experiment_id: str, parent_id: str, report_dir: Path | None,
               echo, started: float) -> SuiteOutcome:
    client, finished = ctx.client, ctx.finished
    outcome = SuiteOutcome(suite, parent_id)
    echo(f"Suite {suite.name}: {len(suite.cells)} cells ({len(suite.cells) - len(suite.finetune_cells)} pretraining) "
         f"-> MLflow {ctx.tracking_uri}, experiment {suite_experiment(suite.name)}")
    from benchmark.run.audit import audit_suite

    audit_suite(suite, ctx, parent_id, echo)  # near-duplicates of the folds, for the report's leakage section
    try:
        # The one bar that stays: cells done / total, ETA, the current cell (Lightning's sit under it, transient).
        with tqdm(total=len(suite.cells), desc=f"suite {suite.name}", unit="cell", position=0, dynamic_ncols=True,
                  bar_format=SUITE_BAR) as bar:
            for spec in _cells_in_order(outcome, ctx, parent_id, echo):
                if spec.hash in finished:
                    outcome.skipped.append(spec)
                    bar.update(1)
                    continue
                bar.set_postfix_str(spec.label, refresh=True)
                run_claimed_cell(spec, ctx, claims, experiment_id, parent_id, outcome)
                bar.update(1)
        if outcome.suite.repeats:  # seeds in rounds until the top rows' comparison is decided
            from benchmark.run.repeats import run_rounds

            run_rounds(outcome, ctx, parent_id, lambda spec: run_claimed_cell(spec, ctx, claims, experiment_id, parent_id, outcome),
                       echo=tqdm.write)
        status = report_keeping_cells(outcome, ctx, parent_id, report_dir, echo)
    except BaseException:
        status = "KILLED"
        raise
    finally:
        outcome.seconds = time.perf_counter() - started
        claims.release(parent_id)
        client.set_terminated(parent_id, status)
    return outcome


def run_claimed_cell(spec: RunSpec, ctx: CellContext, claims: Claims, experiment_id: str, parent_id: str,
                     outcome: SuiteOutcome) -> None:
    """Claim `spec` and run it in its own run under `parent_id`; the result goes into `outcome` (ran, failed or
    elsewhere: FINISHED meanwhile, or another live worker holds it). Used by the runner and by launchers' workers."""
    client = ctx.client
    _await_pretraining(spec, ctx, claims)
    run_id = claims.claim(spec.hash, name=run_name(spec), tags=cell_tags(spec, outcome.suite), parent_id=parent_id)
    if run_id is None:
        outcome.elsewhere.append(spec)
        return
    try:
        with CellRun(client, experiment_id, name=run_name(spec), tags={}, run_id=run_id,
                     params={"spec_hash": spec.hash, **flatten(spec.to_dict())}) as run:
            run_cell(spec, ctx, run)
        ctx.finished[spec.hash] = client.get_run(run.run_id)
        outcome.ran.append(spec)
    except STOPPED:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded FAILED by CellRun; the suite goes on
        outcome.failed.append((spec, f"{type(exc).__name__}: {exc}"))
        tqdm.write(f"FAILED {spec.label} [{spec.hash}]: {type(exc).__name__}: {exc}")
    finally:
        claims.release(run_id)


def write_suite_report(outcome: SuiteOutcome, ctx: CellContext, parent_id: str, report_dir: Path | None, echo,
                       summary: bool = True) -> str:
    """The suite's report from every FINISHED cell (any worker's), logged to the parent run (none: `parent_id` "");
    `summary`: also log this invocation's counts (cells ran, skipped, failed) to it. Returns its final status."""
    client, finished = ctx.client, ctx.finished
    experiment_id = client.get_experiment_by_name(suite_experiment(outcome.suite.name)).experiment_id
    suite, status = outcome.suite, "FINISHED"  # with tune_budget: reloaded after tuning, its cells carry the best trials' values
    if outcome.skipped:
        echo(f"Skipped {len(outcome.skipped)} of {len(suite.cells)} cells that already have a FINISHED run with the same spec hash.")
    if outcome.elsewhere:
        echo(f"Left {len(outcome.elsewhere)} cell(s) to other workers that claimed them first (their runs show in "
             "`medtl report` once FINISHED).")
    finished.update(finished_runs_by_hash(client, experiment_id))  # other workers' cells count too
    outcome.leaderboard, cells = suite_leaderboard(suite, client, finished)
    out_dir = report_dir or Path("reports") / suite.name
    outcome.report_paths = write_report(outcome.leaderboard, cells, out_dir, f"medtl {suite.name}")
    outcome.report_paths = _full_report(client, suite, out_dir, outcome.report_paths, echo)
    for path in outcome.report_paths if parent_id else ():
        client.log_artifact(parent_id, str(path), "report" + ("/confusion_matrices" if path.parent.name == "confusion_matrices" else ""))
    if summary and parent_id:
        _log_suite_summary(client, parent_id, outcome)
    echo(to_markdown(outcome.leaderboard, f"Leaderboard: {suite.name}", report_dir=out_dir))
    echo(f"Report written to {out_dir}/ (report.html, report.md, leaderboard.csv, ...)"
         f"{f' and logged to parent run {parent_id}' if parent_id else ''}.")
    echo(f"Runs in MLflow: {ui_hint(ctx.tracking_uri, experiment_id)}")
    if outcome.failed:
        status = "FAILED"
        echo(f"{len(outcome.failed)} cell(s) FAILED (rerun the suite to retry them):")
        for spec, error in outcome.failed:
            echo(f"  {spec.label} [{spec.hash}]: {error}")
    return status


def report_keeping_cells(outcome: SuiteOutcome, ctx: CellContext, parent_id: str, report_dir: Path | None, echo) -> str:
    """`write_suite_report`, where a failure to write the report costs no finished cell: the cells stay FINISHED,
    the suite run ends FAILED with the reason, and the message says how to write the report again."""
    try:
        return write_suite_report(outcome, ctx, parent_id, report_dir, echo)
    except Exception as exc:  # noqa: BLE001 - disk full, a folder gone read-only, a plot library error
        out_dir = report_dir or Path("reports") / outcome.suite.name
        outcome.report_error = f"{type(exc).__name__}: {exc}"
        echo(f"The report could not be written to {out_dir}/ ({outcome.report_error}). The {len(outcome.ran)} cell(s) "
             f"that ran are FINISHED in MLflow and kept (a rerun skips them). Fix: `medtl report {outcome.suite.path} "
             "--out DIR` with a folder you can write to.")
        return "FAILED"


def _cells_in_order(outcome: SuiteOutcome, ctx: CellContext, parent_id: str, echo):
    """Pretraining cells; then, with `tune_budget`, every row's study (benchmark/tune/study.py), after which the
    suite is reloaded so `hparams_from: optuna` gives its cells the best trials' values; then the other cells."""
    suite = outcome.suite
    yield from (c for c in suite.cells if c.stage == "pretrain")
    suite_transferability(suite, ctx, parent_id, echo)  # LogME / H-score from frozen features; never fails the suite
    if suite.tune_budget:
        from benchmark.tune.study import TuneSettings, tune_suite
        from tracking.studies import storage_url

        ctx.client.set_tag(parent_id, TUNE_BUDGET_TAG, str(suite.tune_budget))
        tune_suite(suite, TuneSettings(storage=storage_url(), n_trials=suite.tune_budget, tracking_uri=ctx.tracking_uri,
                                       data_root=ctx.data_root, accelerator=ctx.accelerator), echo=tqdm.write)
        outcome.suite = suite = load_suite(suite.path)
    yield from (c for c in suite.cells if c.stage != "pretrain")


def _await_pretraining(spec: RunSpec, ctx: CellContext, claims: Claims) -> None:
    """A fine-tuning cell whose pretraining cell another worker is running waits for its weights."""
    if not spec.weights.startswith("cell:") or spec.weights[5:] in ctx.finished:
        return
    ref = spec.weights[5:]
    run = claims.wait_finished(ref, on_wait=lambda holder: tqdm.write(
        f"waiting for pretraining cell {ref}, running in {holder.data.tags.get('medtl.claim', 'another worker')}"))
    if run is not None:
        ctx.finished[ref] = run


def _full_report(client, suite: Suite, out_dir: Path, quick: list[Path], echo) -> list[Path]:
    """The full report (benchmark.report.document); a report that fails to build never fails the suite's cells."""
    from benchmark.report.document import report_suite

    try:
        return report_suite(client, suite, out_dir).paths
    except Exception as exc:  # noqa: BLE001 - the quick tables are written already; `medtl report` can retry
        echo(f"The full report could not be built ({type(exc).__name__}: {exc}); rerun `medtl report {suite.path}`.")
        return quick


def _log_suite_summary(client, parent_id: str, outcome: SuiteOutcome) -> None:
    from tracking.runs import log_metrics

    log_metrics(client, parent_id, {"cells_ran": len(outcome.ran), "cells_skipped": len(outcome.skipped), "cells_failed": len(outcome.failed)})
    if outcome.failed:
        log_text(client, parent_id, "\n".join(f"{s.label} [{s.hash}]: {e}" for s, e in outcome.failed), "failed_cells.txt")


def suite_leaderboard(suite: Suite, client, finished: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leaderboard of the suite's fine-tuning cells that have FINISHED runs (from any invocation)."""
    if finished is None:
        experiment = client.get_experiment_by_name(suite_experiment(suite.name))
        finished = finished_runs_by_hash(client, experiment.experiment_id) if experiment else {}
    runs = [finished[c.hash] for c in suite.finetune_cells if c.hash in finished]
    cells = cell_results(runs_frame(runs))
    return leaderboard(cells), cells
