"""Tasks: the target side of transfer learning, in two layers.

    tasks.data       datasets, splits, images, transforms, the shared DataModule, dataset tools
    tasks.training   the classifier (LightningModule), strategies, metrics, fit/test, evaluation

`tasks.training` imports `tasks.data`, never the reverse; both import `backbones`.
"""
