"""A designed multi-label task for the tests: label j is a bright band in third j of the image."""

import numpy as np
import pandas as pd

from tasks.data import Task, TaskMeta
from tasks.data.images import ArrayStore


def bands_task(n: int = 60, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    labels = [tuple(sorted({i % 3, (i // 3) % 3})) for i in range(n)]
    images = np.zeros((n, 32, 32, 3), np.uint8)
    for i, present in enumerate(labels):
        images[i] = rng.integers(0, 60, (32, 32, 3))
        for j in present:
            images[i, :, 10 * j:10 * j + 10] += 150
    index = pd.DataFrame({"item": pd.Series(range(n), dtype=object), "labels": labels,
                          "group": [str(i) for i in range(n)], "split": [""] * n})
    return Task(TaskMeta("bands", ("left", "middle", "right"), "multilabel"), index, ArrayStore(images))
