"""The README's tables, generated from the registries so the documentation cannot drift.

    medtl list --datasets        # the "Datasets and their expected layouts" table, from the dataset cards

A test compares the README with these tables.
"""

from __future__ import annotations


def dataset_table() -> str:
    """Markdown: name, what it is, layout, split, how to get it; one row per registered dataset."""
    from tasks.data import DATASETS

    rows = ["| name | what | layout | split | get it |", "|---|---|---|---|---|"]
    for name, entry in DATASETS.items():
        card = entry.card
        if card.obtain:
            get = card.obtain
        elif card.source is not None and card.source.manual:
            get = f"by hand ([page]({card.source.page}))"
        elif card.source is not None or card.variants is not None:
            get = f"`medtl data download {name}`"
        else:
            get = "generated" if name.startswith("gen-") else "your own files"
        rows.append(f"| `{name}` | {card.summary} | {card.layout} | {card.split} | {get} |")
    return "\n".join(rows)
