"""The training side of a task: the classifier, strategies, metrics, fit/test and evaluation.

    >>> from tasks.training import train_and_test, list_strategies

`ClassifierModule` (an injected backbone + a new head, Medico metrics), the hyperparameter table
(`hparams.py`), strategies (`strategies/`, Lightning callbacks declaring their own
hyperparameters), `train_and_test` (the fit/test routine pretraining and fine-tuning share) and
pure evaluation functions on predictions. Imports `tasks.data` and `backbones`.
"""

from tasks.training.fit import TrainResult, train_and_test
from tasks.training.hparams import SHARED, HParam
from tasks.training.module import ClassifierModule
from tasks.training.setup import Machine, TrainPlan
from tasks.training.strategies import STRATEGIES, Strategy, UnknownStrategyError, all_hparams, get_strategy, list_strategies, register_strategy

__all__ = [
    "SHARED",
    "STRATEGIES",
    "ClassifierModule",
    "HParam",
    "Machine",
    "Strategy",
    "TrainPlan",
    "TrainResult",
    "UnknownStrategyError",
    "all_hparams",
    "get_strategy",
    "list_strategies",
    "register_strategy",
    "train_and_test",
]
