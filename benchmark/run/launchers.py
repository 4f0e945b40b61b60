"""Spread a suite's cells over workers: N processes on this machine, or SLURM job arrays. Both through submitit.

    medtl benchmark SUITE --launcher local --workers 2        # 2 worker processes here; the report when they end
    medtl benchmark SUITE --launcher slurm --workers 8 --slurm-partition gpu --timeout-min 240 \\
        --tracking-uri http://mlflow.lab:5000                  # submits and returns; `squeue --me` to follow

Cells run in stages: pretraining cells, then fine-tuning cells, then ensembles (which average
fine-tuning cells' predictions). `slurm` submits one job array per stage with one task per cell
not yet FINISHED, at most `--workers` of them running at once (`--array=0-K%N`), each stage
depending on the one before (`afterany`: a pretraining cell that fails fails only the cells that
need its weights, with that reason), then one job that writes the report. `local` runs each stage
with `--workers` processes here (submitit's LocalExecutor), each walking the stage's cells.

Either way a worker runs a cell through `benchmark.run.runner.run_claimed_cell`: the cell claims in the
shared MLflow store (tracking/claims.py) keep two workers off one cell, and a cell whose worker
died is taken over. A job that SLURM preempts or that reaches its time limit gets submitit's
SIGUSR2: the running cell is recorded KILLED and submitit requeues the job (the worker is
Checkpointable), which skips FINISHED cells and runs the rest again. Each cell gets the suite's
`devices` GPUs (one by default) unless `--accelerator cpu`. Workers on other machines must reach
the same store: for SLURM use a tracking server (`medtl server`, README "Beyond one machine");
SQLite on a shared filesystem is only safe on one node.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from benchmark.run.preflight import check_output_folder
from benchmark.run.runner import SuiteOutcome, prepare_suite, report_keeping_cells, run_claimed_cell
from tracking.naming import suite_experiment
from benchmark.run.signals import ended_with_launcher, stop_on_signals
from benchmark.plan.spec import RunSpec
from benchmark.plan.suite import Suite
from tracking import environment_tags, finished_runs_by_hash, start_run
from tracking.claims import Claims
from tracking.runs import ERROR_TAG, HASH_TAG, PARENT_TAG, search_runs
from tracking.naming import LAUNCHER_TAG, STAGE_TAG, SUITE_TAG


class LauncherError(ValueError):
    """A launch that cannot start (bad option, missing SLURM): the message says what, where and the fix."""


LAUNCHERS: dict[str, type] = {}


def register_launcher(name: str):
    """Decorate a launcher class as `--launcher NAME`: `check(settings)` raises LauncherError before anything is
    recorded; `launch(settings, suite, stages, parent_id, echo)` returns how many worker jobs died."""

    def decorate(cls: type) -> type:
        if name in LAUNCHERS:
            raise ValueError(f"launcher {name!r} is registered twice; pick another name.")
        LAUNCHERS[name] = cls
        return cls

    return decorate


def list_launchers() -> list[str]:
    return sorted(LAUNCHERS)


@dataclass(frozen=True)
class LaunchSettings:
    """What every worker of one launch needs; pickled into each job, so plain values only."""

    suite_path: str  # absolute: jobs may start in another folder
    tracking_uri: str  # resolved, so every worker writes to the same store
    workers: int  # local: processes per stage; slurm: array tasks running at once
    data_root: str | None = None  # --data-root
    accelerator: str = "auto"  # Lightning accelerator of every cell
    report_dir: str | None = None  # where the report is written (default reports/<suite>)
    folder: str = ".medtl_jobs"  # submitit's pickles and logs; on SLURM a folder every node sees
    timeout_min: int = 24 * 60  # per job; a job past it is requeued (its cells resume)
    partition: str | None = None  # SLURM partition (default: the cluster's)
    cpus_per_cell: int | None = None  # SLURM --cpus-per-task (default: the cluster's)
    watch_pid: int | None = None  # local: the launcher's pid; its workers stop when it is gone (SIGKILL included)

    def data_path(self) -> Path | None:
        return Path(self.data_root) if self.data_root else None


# --- stages and workers ---------------------------------------------------------------------------


def stages(suite: Suite, finished: dict) -> list[tuple[str, list[RunSpec]]]:
    """The cells not yet FINISHED, in the stages that must run one after the other (empty stages left out)."""
    from tasks.training import get_strategy

    todo = [c for c in suite.cells if c.hash not in finished]
    pretrain = [c for c in todo if c.stage == "pretrain"]
    ensembles = [c for c in todo if c.stage != "pretrain" and get_strategy(c.strategy).combines]
    finetune = [c for c in todo if c.stage != "pretrain" and c not in ensembles]
    return [(name, cells) for name, cells in (("pretrain", pretrain), ("finetune", finetune), ("ensembles", ensembles))
            if cells]


def run_worker(settings: LaunchSettings, parent_id: str, hashes: list[str], *, exclusive: bool, echo=print) -> dict:
    """Run the cells `hashes` of the suite under the suite's parent run; a summary {ran, failed, skipped, elsewhere}.

    `exclusive` (a SLURM task owns its cell): a cell another live worker holds is waited for, and taken
    over if that worker dies, instead of left to it (a requeued task finds its own earlier, stale claim).
    """
    suite, ctx, experiment_id = prepare_suite(settings.suite_path, data_root=settings.data_path(),
                                              uri=settings.tracking_uri, accelerator=settings.accelerator)
    by_hash = {c.hash: c for c in suite.cells}
    missing = [h for h in hashes if h not in by_hash]
    if missing:
        raise LauncherError(f"{settings.suite_path}: cells {', '.join(missing)} are not in the suite any more (it changed "
                            "after the jobs were submitted). Fix: cancel these jobs and launch the suite again.")
    claims = Claims(ctx.client, experiment_id)
    outcome = SuiteOutcome(suite, parent_id)
    with stop_on_signals(), ended_with_launcher(settings.watch_pid):
        try:
            claims.reap_stale()
            ctx.finished.update(finished_runs_by_hash(ctx.client, experiment_id))
            for spec in (by_hash[h] for h in hashes):
                while spec.hash not in ctx.finished:
                    run_claimed_cell(spec, ctx, claims, experiment_id, parent_id, outcome)
                    if not (exclusive and outcome.elsewhere and outcome.elsewhere[-1] is spec):
                        break
                    outcome.elsewhere.pop()
                    done = claims.wait_finished(spec.hash, on_wait=lambda run: echo(
                        f"{spec.label}: held by {run.data.tags.get('medtl.claim', 'another worker')}; waiting"))
                    if done is not None:
                        ctx.finished[spec.hash] = done
                else:
                    if spec not in outcome.ran:
                        outcome.skipped.append(spec)
        finally:
            claims.close()
    return {"ran": [s.hash for s in outcome.ran], "failed": [(s.hash, e) for s, e in outcome.failed],
            "skipped": [s.hash for s in outcome.skipped], "elsewhere": [s.hash for s in outcome.elsewhere]}


def finish_suite(settings: LaunchSettings, parent_id: str, echo=print) -> str:
    """The report of the launch (every FINISHED cell of the suite), logged to its parent run, which ends
    FINISHED, or FAILED when a cell of this launch failed or did not run; returns that status."""
    suite, ctx, experiment_id = prepare_suite(settings.suite_path, data_root=settings.data_path(),
                                              uri=settings.tracking_uri, accelerator=settings.accelerator, cells=())
    client = ctx.client
    outcome = SuiteOutcome(suite, parent_id)
    by_hash = {c.hash: c for c in suite.cells}
    mine = {}
    for run in search_runs(client, experiment_id, f"tags.`{PARENT_TAG}` = '{parent_id}'"):
        spec = by_hash.get(run.data.tags.get(HASH_TAG, ""))
        if spec is not None and (spec.hash not in mine or run.info.status == "FINISHED"):
            mine[spec.hash] = run
    ctx.finished.update(finished_runs_by_hash(client, experiment_id))
    for spec in suite.cells:
        run = mine.get(spec.hash)
        if run is not None and run.info.status == "FINISHED":
            outcome.ran.append(spec)
        elif spec.hash in ctx.finished:
            outcome.skipped.append(spec)  # finished by an earlier launch or another worker's suite run
        else:
            error = run.data.tags.get(ERROR_TAG, run.info.status) if run is not None else "no worker ran it (see the job logs)"
            outcome.failed.append((spec, error))
    status = report_keeping_cells(outcome, ctx, parent_id, Path(settings.report_dir) if settings.report_dir else None, echo)
    client.set_terminated(parent_id, status)
    return status


class CellWorker(submitit.helpers.Checkpointable):
    """A job's function. Checkpointable: on preemption or time-out submitit requeues the job with the same
    arguments; the cells it had FINISHED are skipped, the one it was running (recorded KILLED) runs again."""

    def __call__(self, settings: LaunchSettings, parent_id: str, hashes: list[str], exclusive: bool) -> dict:
        return run_worker(settings, parent_id, hashes, exclusive=exclusive)


def code_setup() -> list[str]:
    """Shell lines a job runs first: import this very `medtl` (the folder holding `benchmark/`), so a worker runs
    the code that submitted it, also from a source checkout that is not installed."""
    root = Path(__file__).resolve().parents[1]
    return [f'export PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"']


def _devices_per_cell(cells: list[RunSpec]) -> int:
    return max((c.devices for c in cells), default=1)


def _uses_gpus(settings: LaunchSettings) -> bool:
    return settings.accelerator not in ("cpu",)


# --- launchers -------------------------------------------------------------------------------------


@register_launcher("local")
class LocalLauncher:
    """Each stage with `workers` processes on this machine (submitit's LocalExecutor); waits, then the report."""

    @staticmethod
    def check(settings: LaunchSettings) -> None:
        return None

    def launch(self, settings: LaunchSettings, suite: Suite, plan: list, parent_id: str, echo) -> int:
        executor = submitit.LocalExecutor(folder=str(Path(settings.folder) / "%j"))
        settings = dataclasses.replace(settings, watch_pid=os.getpid())  # workers end with this process
        gpus = self._gpus(settings, plan)
        failed_jobs = 0
        for stage, cells in plan:
            n = min(settings.workers, len(cells))
            echo(f"Stage {stage}: {len(cells)} cell(s) over {n} local worker process(es).")
            jobs = []
            try:
                # CPU workers share the cores (torch would give each all of them: n x oversubscribed);
                # a user's own OMP_NUM_THREADS wins.
                threads = [] if gpus else [f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{max(1, (os.cpu_count() or 1) // n)}}}"]
                for i in range(n):
                    mine = gpus[i] if gpus else ()
                    executor.update_parameters(timeout_min=settings.timeout_min, gpus_per_node=len(mine),
                                               visible_gpus=mine, setup=code_setup() + threads)
                    # Worker i starts at the i-th cell, so workers do not all race for the first one.
                    order = [c.hash for c in cells[i:] + cells[:i]]
                    jobs.append(executor.submit(CellWorker(), settings, parent_id, order, False))
                for job in jobs:
                    try:
                        summary = job.result()
                        echo(f"  worker {job.job_id}: ran {len(summary['ran'])}, failed {len(summary['failed'])}, "
                             f"left to others {len(summary['elsewhere'])}")
                    except Exception as exc:  # noqa: BLE001 - a dead worker's cells are reported missing, the others go on
                        failed_jobs += 1
                        echo(f"  worker {job.job_id} died: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r} "
                             f"(log: {job.paths.stderr})")
            except BaseException:
                for job in jobs:
                    job.cancel(check=False)
                raise
        return failed_jobs

    @staticmethod
    def _gpus(settings: LaunchSettings, plan: list) -> list[tuple[int, ...]]:
        """Disjoint CUDA devices per worker (none without CUDA or with --accelerator cpu)."""
        import torch

        count = torch.cuda.device_count() if _uses_gpus(settings) else 0
        if count == 0:
            return []
        per = _devices_per_cell([c for _, cells in plan for c in cells])
        if settings.workers * per > count:
            raise LauncherError(f"--launcher local --workers {settings.workers}: each worker needs {per} GPU(s), "
                                f"{settings.workers * per} in all, and this machine has {count}. "
                                f"Fix: --workers {max(count // per, 1)}.")
        return [tuple(range(i * per, (i + 1) * per)) for i in range(settings.workers)]


# What sbatch says when the cluster's controller cannot be reached (no partition or GPU setting is at fault).
CONTROLLER_DOWN = ("Unable to contact slurm controller", "slurm_load_partitions", "Socket timed out on send/recv",
                   "Unable to establish controller")


@register_launcher("slurm")
class SlurmLauncher:
    """One job array per stage (one task per cell, `workers` at once), chained by dependencies, then a report job."""

    @staticmethod
    def check(settings: LaunchSettings) -> None:
        if shutil.which("sbatch") is None:
            raise LauncherError("--launcher slurm: SLURM's `sbatch` is not on PATH on this machine, so no job can be "
                                "submitted. Fix: run from a SLURM login node (or load your site's slurm module; on "
                                "Debian: apt-get install slurm-wlm), or use --launcher local.")
        if shutil.which("srun") is None:  # submitit starts every job with srun, and refuses to submit without it
            raise LauncherError("--launcher slurm: `sbatch` is on PATH but `srun` is not, and every job starts with srun. "
                                "Fix: load the complete SLURM client tools (your site's slurm module), or use --launcher local.")

    def launch(self, settings: LaunchSettings, suite: Suite, plan: list, parent_id: str, echo) -> int:
        try:
            return self._submit(settings, suite, plan, parent_id, echo)
        except (submitit.core.utils.FailedSubmissionError, submitit.core.utils.FailedJobError) as exc:
            if any(sign in str(exc) for sign in CONTROLLER_DOWN):
                raise LauncherError(f"--launcher slurm: SLURM's controller (slurmctld) does not answer, so sbatch could not "
                                    f"submit anything: {str(exc).strip()[-300:]}. Fix: check that it runs (`scontrol ping` "
                                    "says UP; ask the cluster's admins if not), then rerun the same command; or use "
                                    "--launcher local.") from exc
            raise LauncherError(f"--launcher slurm: sbatch refused the jobs: {str(exc).strip()[-600:]}. Fix: check "
                                "--slurm-partition, --timeout-min and the GPUs asked for against `sinfo -o '%P %l %G'`; "
                                "jobs of earlier stages that were accepted can be cancelled with scancel.") from exc

    def _submit(self, settings: LaunchSettings, suite: Suite, plan: list, parent_id: str, echo) -> int:
        previous = None
        for stage, cells in plan:
            executor = self._executor(settings, f"medtl-{suite.name}-{stage}", previous,
                                      gpus=_devices_per_cell(cells) if _uses_gpus(settings) else 0)
            jobs = executor.map_array(CellWorker(), [settings] * len(cells), [parent_id] * len(cells),
                                      [[c.hash] for c in cells], [True] * len(cells))
            previous = jobs[0].job_id.split("_")[0]
            echo(f"Stage {stage}: job array {previous} ({len(cells)} task(s), at most {settings.workers} at once"
                 f"{', after the stage before' if stage != plan[0][0] else ''}).")
        report = self._executor(settings, f"medtl-{suite.name}-report", previous, gpus=0).submit(finish_suite, settings, parent_id)
        echo(f"Report: job {report.job_id}, after the last stage; it ends parent run {parent_id}. Follow with "
             f"`squeue --me`; logs in {settings.folder}/; `medtl report {settings.suite_path}` shows what has finished.")
        return 0

    @staticmethod
    def _executor(settings: LaunchSettings, name: str, after: str | None, gpus: int):
        executor = submitit.AutoExecutor(folder=str(Path(settings.folder) / "%j"), cluster="slurm")
        params = dict(name=name, timeout_min=settings.timeout_min, nodes=1, tasks_per_node=1,
                      slurm_array_parallelism=settings.workers, slurm_setup=code_setup())
        if gpus:
            params["gpus_per_node"] = gpus
        if settings.cpus_per_cell:
            params["cpus_per_task"] = settings.cpus_per_cell
        if settings.partition:
            params["slurm_partition"] = settings.partition
        if after:
            params["slurm_dependency"] = f"afterany:{after}"
        executor.update_parameters(**params)
        return executor


def launch(name: str, settings: LaunchSettings, echo=print) -> int:
    """Launch the suite with launcher `name`: parent run, stages, workers (see the module docstring). Exit code:
    0 submitted (slurm) or every cell FINISHED (local), 1 some cell failed or did not run."""
    if name not in LAUNCHERS:
        raise LauncherError(f"Unknown launcher {name!r}. Valid launchers: {', '.join(list_launchers())}.")
    if settings.workers < 1:
        raise LauncherError(f"--workers {settings.workers}: a launcher needs at least one worker. Fix: --workers 2 "
                            "(local: worker processes here; slurm: array tasks running at once).")
    launcher = LAUNCHERS[name]()
    launcher.check(settings)
    suite, ctx, experiment_id = prepare_suite(settings.suite_path, data_root=settings.data_path(),
                                              uri=settings.tracking_uri, accelerator=settings.accelerator)
    if suite.tune_budget:
        raise LauncherError(f"{settings.suite_path}: tune_budget tunes inside one `medtl benchmark` process, which a "
                            f"launcher does not have. Fix: run `medtl tune {settings.suite_path} --storage URL --workers N` "
                            "first (studies spread over workers on one RDB storage), then launch the suite with "
                            "`hparams_from: optuna` and no tune_budget.")
    check_output_folder(settings.report_dir or Path("reports") / suite.name, "--report-dir")  # before any cell
    client = ctx.client
    claims = Claims(client, experiment_id)
    for run, reason in claims.reap_stale():  # an earlier launch's suite run and cells left RUNNING by a SIGKILL
        echo(f"Marked stale RUNNING run {run.info.run_id} ({run.info.run_name}) KILLED: {reason}.")
    plan = stages(suite, finished_runs_by_hash(client, experiment_id))
    parent_id = start_run(client, experiment_id, name=f"suite {suite.name} {time.strftime('%Y-%m-%d %H:%M:%S')} ({name})",
                          tags={SUITE_TAG: suite.name, STAGE_TAG: "suite", LAUNCHER_TAG: name,
                                **environment_tags(), **claims.tags()})
    echo(f"Suite {suite.name}: {sum(len(c) for _, c in plan)} of {len(suite.cells)} cells to run, launcher {name}, "
         f"-> MLflow {ctx.tracking_uri}, experiment {suite_experiment(suite.name)}, parent run {parent_id}")
    if name == "slurm":
        # Nobody's process holds the parent while jobs wait in the queue: SCHEDULED (never reaped as a
        # dead RUNNING run) until the report job ends it.
        client.update_run(parent_id, status="SCHEDULED")
        try:
            return launcher.launch(settings, suite, plan, parent_id, echo)
        except BaseException:
            client.set_terminated(parent_id, "FAILED")
            raise
    claims.hold(parent_id)
    status = "KILLED"
    try:
        with stop_on_signals():
            dead = launcher.launch(settings, suite, plan, parent_id, echo)
            status = finish_suite(settings, parent_id, echo)
        return 1 if dead or status != "FINISHED" else 0
    finally:
        claims.close()
        if status == "KILLED":
            client.set_terminated(parent_id, "KILLED")


def settings_from(args, suite_path: Path, tracking: str | None) -> LaunchSettings:
    """LaunchSettings from `medtl benchmark` arguments (paths made absolute for jobs that start elsewhere)."""
    from tracking import tracking_uri

    uri = tracking_uri(tracking)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    from tracking import settings

    data_root = args.data_root or settings.read("MEDTL_DATA")
    folder = Path(args.jobs_folder or Path(".medtl_jobs")).absolute()
    return LaunchSettings(suite_path=str(suite_path.absolute()), tracking_uri=uri, workers=args.workers,
                          data_root=str(Path(data_root).absolute()) if data_root else None,
                          accelerator=args.accelerator, report_dir=str(Path(args.report_dir).absolute()) if args.report_dir else None,
                          folder=str(folder), timeout_min=args.timeout_min, partition=args.slurm_partition,
                          cpus_per_cell=args.cpus_per_cell)
