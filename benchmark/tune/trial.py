"""A trial: the row's cell trained with the trial's values, scored by its best per-epoch validation MCC.

A trial is a cell (`benchmark.cell.route.run_cell`) with two hooks: the pruner and score history as Lightning
callbacks, and no test pass (`CellHooks.test=False`), so the outer test fold never enters tuning.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tracking.naming import CELL_TAG, ERROR_TAG, STAGE_TAG, STAGE_TRIAL, STUDY_TAG, TRIAL_NUMBER_TAG, TRIAL_STATE_TAG, suite_experiment

OBJECTIVE = "val/mcc"  # the model-selection metric (hparams `select: mcc`), maximised
# Fault injection for tests/benchmark/test_tuning.py: "<trial number>:<file>" makes that trial write the file after
# its first epoch is logged, then wait until it is killed, so a test can SIGKILL a trial known to be mid-run.
HOLD_ENV = "MEDTL_TEST_HOLD_TRIAL"


class Objective:
    """Train the row's cell with the trial's values through the one cell route; the best per-epoch validation MCC
    is the score. The trial's machine (precision, devices, memory format, pipeline, compile, workers) is the
    row's cells' machine (`benchmark.cell.route.machine_for`), so the values it picks belong to that setting."""

    def __init__(self, row, settings, parent_id: str, experiment_id: str, space: dict) -> None:
        """`row`: a StudyRow; `settings`: TuneSettings (benchmark.tune.study); `space`: name -> Optuna space."""
        from benchmark.cell.route import CellContext
        from tracking import tracking_uri
        from tracking.store import open_store

        self.row, self.settings = row, settings
        self.parent_id, self.experiment_id = parent_id, experiment_id
        self.client = open_store(settings.tracking_uri)
        self.space = space
        self.ctx = CellContext(self.client, tracking_uri(settings.tracking_uri), settings.data_root, Path(".medtl_cache"),
                               {}, dict(row.throughput), settings.accelerator, row.num_workers)

    def __call__(self, trial) -> float:
        import optuna
        from optuna_integration import PyTorchLightningPruningCallback

        from benchmark.cell.route import CellHooks, run_cell
        from tasks.training import get_strategy
        from tracking import CellRun, finished_runs_by_hash, start_run
        from tracking.runs import log_params

        spec = self.row.spec
        run_id = start_run(self.client, self.experiment_id, name=self.run_name(trial.number), parent_id=self.parent_id,
                           tags={STUDY_TAG: self.row.name, STAGE_TAG: STAGE_TRIAL, TRIAL_NUMBER_TAG: str(trial.number),
                                 CELL_TAG: spec.label})
        history = ValidationHistory(self.client, run_id, trial.number)
        try:
            values = {name: space(trial, name) for name, space in self.space.items()}
            hp = get_strategy(spec.strategy).resolve(spec.hp, values)
            log_params(self.client, run_id, {**{f"hparams.{k}": v for k, v in hp.items()}, "trial_number": trial.number})
            if spec.weights.startswith("cell:") and not self.ctx.finished:
                self.ctx.finished.update(finished_runs_by_hash(self.client, self._cells_experiment()))
            hooks = CellHooks(callbacks=(history, PyTorchLightningPruningCallback(trial, monitor=OBJECTIVE),
                                         *self.settings.callbacks), hp=hp, test=False, epoch_logger=False)
            try:
                # test=False: the fit ends before the test pass, so no outer test-fold row reaches this trial.
                run_cell(spec, self.ctx, CellRun(self.client, self.experiment_id, name="", tags={}, params={}, run_id=run_id),
                         hooks)
            finally:
                trial.set_user_attr("epochs_trained", len(history.scores))
            if not history.scores:
                raise RuntimeError(f"{spec.label}: no {OBJECTIVE} was logged (no validation rows?); nothing to tune on.")
            value = max(history.scores)  # a validation number by construction
        except optuna.TrialPruned:
            # MLflow has no PRUNED status: FINISHED (green) alone reads as a complete trial, so the name says it.
            self.client.update_run(run_id, name=f"{self.run_name(trial.number)} (pruned)")
            self._end(run_id, "PRUNED", "FINISHED")
            raise
        except Exception as exc:
            self.client.set_tag(run_id, ERROR_TAG, f"{type(exc).__name__}: {exc}"[:4000])
            self._end(run_id, "FAIL", "FAILED")
            raise
        except BaseException:
            self._end(run_id, "FAIL", "KILLED")
            raise
        self.client.log_metric(run_id, "objective", value)
        self._end(run_id, "COMPLETE", "FINISHED")
        return value

    def run_name(self, number: int) -> str:
        """The trial's name in MLflow's runs table: its row and number, distinct across the suite's studies."""
        return f"{self.row.short} / trial {number}"

    def _end(self, run_id: str, state: str, status: str) -> None:
        self.client.set_tag(run_id, TRIAL_STATE_TAG, state)
        self.client.set_terminated(run_id, status)

    def _cells_experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(suite_experiment(self.row.suite))
        if experiment is None:
            raise RuntimeError(f"{self.row.spec.label}: its weights come from a pretraining cell of suite {self.row.suite}; "
                               f"run `medtl benchmark` on the suite first (tune_budget does this in order).")
        return experiment.experiment_id


def _validation_history_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class ValidationHistory(_validation_history_base()):
    """Records the per-epoch objective (and logs every val/* metric to the trial's run)."""

    def __init__(self, client, run_id: str, trial_number: int = -1) -> None:
        self.client, self.run_id, self.trial_number = client, run_id, trial_number
        self.scores: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if OBJECTIVE in metrics:
            self.scores.append(metrics[OBJECTIVE])
        from tracking.runs import log_metrics

        log_metrics(self.client, self.run_id, metrics, step=pl_module.current_epoch)
        number, _, marker = os.environ.get(HOLD_ENV, "").partition(":")
        if number == str(self.trial_number) and marker:
            Path(marker).write_text(str(os.getpid()))
            threading.Event().wait()  # until killed: the test SIGKILLs this trial mid-run

