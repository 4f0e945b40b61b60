"""Lightning's epoch bars, made transient: they vanish when their loop ends and sit under a caller's bar.

Lightning's `TQDMProgressBar` opens its training, test and predict bars with `leave=True` on stdout
whatever its own `leave` says, so every cell of a suite left "Epoch 4: 100%" and "Testing" lines
behind, on another stream than the suite's bar (stderr), and the suite bar was redrawn among them.
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class TransientProgressBar(TQDMProgressBar):
    """Every bar on stderr with `leave=False`, at line `position` (the epoch bar) and below it (validation)."""

    def __init__(self, position: int = 0, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=position, leave=False)

    def _bar(self, desc: str, offset: int = 0) -> Tqdm:
        # stderr, like tqdm's default and a suite's bar, so both streams never interleave mid-line.
        return Tqdm(desc=desc, position=self.process_position + offset, disable=self.is_disabled, leave=False,
                    dynamic_ncols=True, file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT)

    def init_sanity_tqdm(self) -> Tqdm:
        return self._bar(self.sanity_check_description)

    def init_train_tqdm(self) -> Tqdm:
        return self._bar(self.train_description)

    def init_validation_tqdm(self) -> Tqdm:
        has_main_bar = self.trainer.state.fn != "validate"
        return self._bar(self.validation_description, offset=int(has_main_bar))

    def init_test_tqdm(self) -> Tqdm:
        return self._bar(self.test_description)

    def init_predict_tqdm(self) -> Tqdm:
        return self._bar(self.predict_description)
