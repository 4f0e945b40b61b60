"""A trial: the row's cell trained with the trial's values, scored by its best per-epoch validation MCC.

The trial ends when its fit ends (StopBeforeTest), before the test pass, so the outer test fold never
enters tuning.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tracking.naming import CELL_TAG, ERROR_TAG, STAGE_TAG, STUDY_TAG, TRIAL_NUMBER_TAG, TRIAL_STATE_TAG, suite_experiment

OBJECTIVE = "val/mcc"  # the model-selection metric (hparams `select: mcc`), maximised
# Fault injection for tests/benchmark/test_tuning.py: "<trial number>:<file>" makes that trial write the file after
# its first epoch is logged, then wait until it is killed, so a test can SIGKILL a trial known to be mid-run.
HOLD_ENV = "MEDTL_TEST_HOLD_TRIAL"


class Objective:
    """Train the row's cell with the trial's values; the best per-epoch validation MCC is the score."""

    def __init__(self, row, settings, parent_id: str, experiment_id: str, space: dict) -> None:
        """`row`: a StudyRow; `settings`: TuneSettings (benchmark.tune.study); `space`: name -> Optuna space."""
        from tracking.store import open_store

        self.row, self.settings = row, settings
        self.parent_id, self.experiment_id = parent_id, experiment_id
        self.client = open_store(settings.tracking_uri)
        self.space = space
        self.task = None

    def __call__(self, trial) -> float:
        import optuna
        import torch
        from optuna_integration import PyTorchLightningPruningCallback

        from backbones import create_backbone
        from benchmark.cell.route import load_cell_task
        from benchmark.cell.weights import MlflowWeights
        from tasks.training import get_strategy, train_and_test
        from tracking import finished_runs_by_hash, start_run
        from tracking.runs import log_params

        spec = self.row.spec
        run_id = start_run(self.client, self.experiment_id, name=f"trial {trial.number}", parent_id=self.parent_id,
                           tags={STUDY_TAG: self.row.name, STAGE_TAG: "trial", TRIAL_NUMBER_TAG: str(trial.number),
                                 CELL_TAG: spec.label})
        try:
            values = {name: space(trial, name) for name, space in self.space.items()}
            hp = get_strategy(spec.strategy).resolve(spec.hp, values)
            log_params(self.client, run_id, {**{f"hparams.{k}": v for k, v in hp.items()}, "trial_number": trial.number})
            if self.task is None:
                self.task = load_cell_task(spec, self.settings.data_root)
            finished = finished_runs_by_hash(self.client, self._cells_experiment()) if spec.weights.startswith("cell:") else {}
            torch.manual_seed(spec.seed)
            backbone = create_backbone(spec.backbone, spec.weights,
                                       resolve=MlflowWeights(self.client, finished, Path(".medtl_cache")).resolve)
            history = ValidationHistory(self.client, run_id, trial.number)
            callbacks = [history, PyTorchLightningPruningCallback(trial, monitor=OBJECTIVE), *self.settings.callbacks,
                         StopBeforeTest()]
            try:
                train_and_test(self.task, backbone, fold=spec.fold, k=spec.folds, seed=spec.seed, hp=hp, size=spec.image_size,
                               strategy=spec.strategy, fraction=spec.fraction, accelerator=self.settings.accelerator,
                               callbacks=callbacks)
                raise RuntimeError(f"{spec.label}: training returned without ending its fit; nothing to score.")
            except Trained:
                pass  # the fit ended and the test pass never started: no test-fold row reached this trial
            finally:
                trial.set_user_attr("epochs_trained", len(history.scores))
            if not history.scores:
                raise RuntimeError(f"{spec.label}: no {OBJECTIVE} was logged (no validation rows?); nothing to tune on.")
            value = max(history.scores)  # a validation number by construction
        except optuna.TrialPruned:
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


class Trained(Exception):
    """A trial's fit has ended (raised by StopBeforeTest)."""


class StopBeforeTest(_validation_history_base()):
    """Ends a trial when its fit ends. `train_and_test` (the cells' own routine, which trials reuse unchanged) goes on to
    test on the outer test fold; a trial must never see those rows, so it stops here, as the pruner stops a fit."""

    def on_fit_end(self, trainer, pl_module) -> None:
        raise Trained


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

