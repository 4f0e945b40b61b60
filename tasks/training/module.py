"""ClassifierModule: an injected backbone, a new linear head, and the Medico metrics."""

from __future__ import annotations

import lightning.pytorch as L
import torch
from torch import Tensor, nn

from tasks.data.index import TaskMeta
from tasks.training.metrics import DEFAULT_THRESHOLD, choose_threshold, classification_metrics, confusion_matrix_metric
from tasks.training.schedules import OPTIMIZERS, build_optimizer, build_schedule
from tasks.training.speed import to_format


class ClassifierModule(L.LightningModule):
    """Backbone features -> dropout -> linear head; CE (or BCE for multilabel) with class weights.

    `class_weights` are CE's per-class weights for single-label tasks and BCE's `pos_weight` (one
    factor on each label's positive term) for multi-label tasks
    (`tasks.data.datamodule.TaskDataModule.class_weights` computes either from the training rows).
    `positive_class` (a class name or id, single-label only) adds that class's `val|test/pos/*` row.

    L1/L2 penalties apply to the head only (Hicks et al. regularised the new layers, not the
    pretrained ones). Strategies that freeze or unfreeze the backbone are callbacks
    (`tasks.training.strategies`); `configure_optimizers` takes whatever is trainable when fit starts.
    A multi-label module tests at the decision threshold that maximises sample F1 on the validation
    rows, chosen with the weights being tested (`threshold`; 0.5 when there are no validation rows).
    """

    def __init__(
        self,
        backbone: nn.Module,
        meta: TaskMeta,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        head_l1: float = 0.0,
        head_l2: float = 0.0,
        dropout: float = 0.0,
        schedule: str = "none",
        warmup_epochs: int = 0,
        class_weights: Tensor | None = None,
        positive_class: str | int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {optimizer!r}. Valid optimizers: {', '.join(OPTIMIZERS)}.")
        self.save_hyperparameters(ignore=["backbone", "class_weights", "meta"])
        self.meta = meta
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.num_features, meta.num_classes))
        self.multilabel = meta.kind == "multilabel"
        # All ones = unweighted: CE's weight and BCE's pos_weight then leave the loss as it is.
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(meta.num_classes))
        self.positive_class = positive_class
        self.val_metrics = classification_metrics(meta, positive_class=positive_class).clone(prefix="val/")
        self.test_metrics = classification_metrics(meta, positive_class=positive_class).clone(prefix="test/")
        self.test_confmat = confusion_matrix_metric(meta)
        self.test_outputs: list[tuple[Tensor, Tensor]] = []
        self.threshold = DEFAULT_THRESHOLD  # multi-label decision threshold used by the last test
        self.input_memory_format: str | None = None  # set by tasks.training.speed.MemoryFormat
        self.compiled_forward = None  # torch.compile'd forward during a fit (tasks.training.speed.Compile)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Images in the layout the weights were put in (channels_last for convnets): a mismatch
        # makes every convolution convert, losing the layout's speed.
        trainer = getattr(self, "_trainer", None)
        transform = getattr(getattr(trainer, "datamodule", None), "device_transform", None)
        if transform is not None:  # the device pipeline augments and normalises here (tasks.data.device_pipeline)
            batch = transform(batch, training=bool(trainer.training))
        if self.input_memory_format is None or not isinstance(batch, (list, tuple)):
            return batch
        return type(batch)([to_format(batch[0], self.input_memory_format), *batch[1:]])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.multilabel:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=self.class_weights)
        else:
            loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        weight = self.head[1].weight
        if self.hparams.head_l1:
            loss = loss + self.hparams.head_l1 * weight.abs().sum()
        if self.hparams.head_l2:
            loss = loss + self.hparams.head_l2 * weight.pow(2).sum()
        return loss

    def on_train_epoch_start(self) -> None:
        # The learning rate this epoch trains with (of the head's group), so schedules can be read back.
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y = batch
        loss = self._loss((self.compiled_forward or self)(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", self._loss(logits, y), on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        self.val_metrics.update(self.probabilities(logits), y.int() if self.multilabel else y)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=False)
        self.val_metrics.reset()

    def on_test_start(self) -> None:
        # The selected epoch's weights are loaded by now (ckpt_path), so the threshold fits them.
        if self.multilabel:
            self.threshold = self.choose_threshold()
            self.test_metrics = classification_metrics(self.meta, self.threshold).clone(prefix="test/").to(self.device)

    def choose_threshold(self) -> float:
        """Best sample-F1 threshold on the datamodule's validation rows (never the test rows)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        fold = getattr(datamodule, "fold", None)
        if fold is None or len(fold.val) == 0:
            return DEFAULT_THRESHOLD
        probs, targets = [], []
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                x, y = self.on_after_batch_transfer([batch[0].to(self.device), batch[1]], 0)
                probs.append(self.probabilities(self(x)).float().cpu())
                targets.append(y)
        self.train(was_training)
        return choose_threshold(torch.cat(probs).numpy(), torch.cat(targets).numpy())

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []
        if self.test_confmat is not None:
            self.test_confmat.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        probs = self.probabilities(self(x))
        target = y.int() if self.multilabel else y
        self.test_metrics.update(probs, target)
        if self.test_confmat is not None:
            self.test_confmat.update(probs.argmax(dim=1), y)
        # float32: under bf16/16-mixed the probabilities come out of autocast in half precision, which numpy cannot hold.
        self.test_outputs.append((probs.detach().float().cpu(), y.detach().cpu()))

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def test_predictions(self) -> tuple[Tensor, Tensor]:
        """(probabilities, targets) of the last test run, in loader order."""
        probs, targets = zip(*self.test_outputs)
        return torch.cat(probs), torch.cat(targets)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(hp.optimizer, [p for p in self.parameters() if p.requires_grad], lr=hp.lr,
                                    weight_decay=hp.weight_decay)
        schedule = build_schedule(hp.schedule, optimizer, epochs=self.trainer.max_epochs, warmup_epochs=hp.warmup_epochs)
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}
