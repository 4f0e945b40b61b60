"""Dataset adapters, one module per dataset family; importing this package registers them all.

A new dataset is one module here: an adapter function decorated with
`@register_dataset(name, card=DatasetCard(...))`. Modules whose names start with `_` are helpers.
"""

from backbones import import_submodules

import_submodules(__name__)
