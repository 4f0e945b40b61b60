"""Resume a killed fit from its last completed epoch, so the resumed cell ends where an uninterrupted one ends.

    callbacks = resume_callbacks(folder)                 # epoch-end checkpoint + random state, into `folder`
    trainer.fit(module, datamodule, ckpt_path=last_checkpoint(folder))   # None: start from epoch 0

A trained cell (`tasks.training.train_and_test` with `Machine.resume_dir`) writes, at the end of every
epoch, one full Lightning checkpoint (`EpochCheckpoint`, Lightning's ModelCheckpoint: weights,
optimizer, LR schedulers, loops, every callback's state_dict: EarlyStopping's counters, the
selection checkpoint's best path and score, BaseFinetuning's unfrozen groups). Lightning's checkpoint
holds no random state, so `RandomState` adds it: the global torch / CUDA / numpy / Python generators,
the training loader's sampler generator and the albumentations pipeline's own generators (it keeps
them apart from `seed_everything`). It captures them when the checkpoint is written (the end of epoch
e, after validation, when nothing else draws before epoch e+1's loader is iterated) and puts them back
when the resumed fit builds its training loader, just before Lightning iterates it. On the same machine the resumed fit
then draws the same batches and augmentations and computes the same numbers (a test kills a cell
with SIGKILL and compares). Not covered: CPU DataLoader workers (`num_workers` > 0) keep their
augmentation state in their processes, and DDP ranks their own generators; those fits resume from
the checkpoint with fresh workers, so their later epochs differ in the draws (not in the protocol).

Checkpoints are written to a temporary name and renamed, so a kill during the write leaves the
previous epoch's checkpoint whole.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

LAST = "last"  # the epoch checkpoint's file stem: <folder>/last.ckpt
# Fault injection for tests/benchmark/test_kill_resume.py: "<epoch>:<file>" makes a fit that did not resume write the
# file at the start of that epoch (0-based: after that many epochs and their checkpoint) and wait until it is killed.
HOLD_ENV = "MEDTL_TEST_HOLD_EPOCH"


def last_checkpoint(folder: Path | None) -> Path | None:
    """The checkpoint a fit resumes from, if a killed fit left one in `folder`."""
    if folder is None:
        return None
    path = Path(folder) / f"{LAST}.ckpt"
    return path if path.is_file() else None


def checkpoint_progress(path: Path) -> tuple[int, int]:
    """(epochs completed, optimizer steps taken) by the checkpoint at `path`: a resumed fit starts at that epoch."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(checkpoint["epoch"]) + 1, int(checkpoint["global_step"])


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint writing the full state to `<folder>/last.ckpt` at every epoch end, atomically."""

    def __init__(self, folder: Path) -> None:
        # monitor None + save_top_k 1: the newest epoch replaces the previous one under the same name.
        super().__init__(dirpath=folder, filename=LAST, monitor=None, save_top_k=1, save_last=False,
                         save_on_train_epoch_end=True, enable_version_counter=False, save_weights_only=False)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        part = f"{filepath}.part"
        super()._save_checkpoint(trainer, part)
        if trainer.is_global_zero:
            os.replace(part, filepath)  # a kill mid-write leaves the previous checkpoint as it was
        self._last_checkpoint_saved = filepath


class RandomState(Callback):
    """Saves in each checkpoint the random state the next epoch starts from; puts it back when a fit resumes.

    After the fit, `resumed_from` is the epoch the fit resumed at (-1: it started from epoch 0)."""

    def __init__(self) -> None:
        self._trainer = None
        self._pending: dict | None = None
        self.resumed_from = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict:
        loader = _train_loader(self._trainer)
        generator = getattr(loader, "generator", None)
        transform = getattr(getattr(loader, "dataset", None), "transform", None)
        state = {"global": _collect_rng_states(), "sampler": generator.get_state() if generator is not None else None}
        state["augment"] = [(t.random_generator.bit_generator.state, t.py_random.getstate()) for t in _seeded(transform)]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        # Lightning restores callbacks before it builds the training loader, and a resumed fit iterates that loader
        # (drawing the epoch's order) as soon as it is built, before any epoch hook. So the state goes back in the
        # moment the datamodule returns the loader: the same point of the draws an uninterrupted fit is at.
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None:
            raise RuntimeError("a resumable fit needs a LightningDataModule (its train_dataloader rebuilds the loader)")
        build = datamodule.train_dataloader

        def train_dataloader():
            del datamodule.train_dataloader  # back to the class's method: later epochs build as usual
            loader = build()
            _restore(state_dict, loader)
            return loader

        datamodule.train_dataloader = train_dataloader
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        # A fit that early stopping had ended, killed before its cell finished: Lightning does not checkpoint
        # `should_stop`, so without this the resumed fit would train one epoch more than the uninterrupted one.
        if self._pending is not None and any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks):
            trainer.should_stop = True

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            self._pending, self.resumed_from = None, trainer.current_epoch
            return
        _hold_if_asked(trainer.current_epoch, resumed=self.resumed_from >= 0)


def _restore(state: dict, loader) -> None:
    """Put back the global generators, the loader's sampler generator and its augmentations' generators."""
    _set_rng_states(state["global"])
    if state.get("sampler") is not None and getattr(loader, "generator", None) is not None:
        loader.generator.set_state(state["sampler"])
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    for step, (numpy_state, python_state) in zip(_seeded(transform), state.get("augment", [])):
        step.random_generator.bit_generator.state = numpy_state
        step.py_random.setstate(python_state)


def _seeded(transform) -> list:
    """An albumentations pipeline and each of its steps, in order: each keeps its own numpy and Python generators."""
    if transform is None or not hasattr(transform, "random_generator") or not hasattr(transform, "py_random"):
        return []
    return [transform, *(step for child in getattr(transform, "transforms", []) for step in _seeded(child))]


def _train_loader(trainer):
    loader = getattr(trainer, "train_dataloader", None) if trainer is not None else None
    return loader[0] if isinstance(loader, (list, tuple)) else loader


def _hold_if_asked(epoch: int, *, resumed: bool) -> None:
    wanted, _, marker = os.environ.get(HOLD_ENV, "").partition(":")
    if marker and not resumed and wanted == str(epoch) and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        threading.Event().wait()  # until killed: the test SIGKILLs this cell at a known epoch


def resume_callbacks(folder: Path) -> list[Callback]:
    """The callbacks that make a fit resumable from `folder` (see the module docstring)."""
    return [RandomState(), EpochCheckpoint(folder)]
