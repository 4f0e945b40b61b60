"""The report's sections as Markdown and as one self-contained HTML page (images inline, no network).

    medtl report benchmark/suites/smoke.yaml     # writes report.md and report.html
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)  # plain text, one paragraph each
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG beside the report)


# Column headers as a reader says them; the CSVs keep the snake_case names (machine-friendly, stable for scripts).
HEADERS = {
    "row": "row", "note": "note", "n": "n", "missing": "missing", "fit_seconds": "fit time (s)", "train_ips": "training img/s",
    "fps": "inference img/s", "params": "parameters", "flops_per_image": "FLOPs per image", "mcc": "MCC",
    "family": "family", "a": "row a", "b": "row b", "test": "test", "difference": "difference (a − b)", "low": "95 % CI low",
    "high": "95 % CI high", "effect_name": "effect size", "effect": "effect", "p_value": "p", "p_holm": "p (Holm)",
    "significant": "significant", "question": "question", "within": "within", "best": "best", "runner_up": "runner-up",
    "margin_mcc": "MCC margin", "ci_low": "95 % CI low", "ci_high": "95 % CI high", "significantly_better_than":
    "significantly better than", "verdict": "verdict", "class": "class", "support": "support", "precision": "precision",
    "recall": "recall", "f1": "F1", "specificity": "specificity", "source": "source", "backbone": "backbone",
    "strategy": "strategy", "fraction": "fraction", "fold": "fold", "seed": "seed", "stage": "stage", "status": "status",
    "error": "reason", "average rank": "average rank",
}
# Columns printed in their own format: counts in SI units ("11.2 M", never "1.12e+07"), speeds whole.
SI_COLUMNS = ("params", "flops_per_image")
WHOLE_COLUMNS = ("fps", "train_ips")


def file_slug(label: str) -> str:
    """A row or backbone label as a file name: anything but letters, digits, '.', '-' and '_' becomes '_'
    (`hub:timm/vit_small...` would otherwise name a folder that does not exist)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label.replace("@", "_f")).strip("_") or "row"


def human_header(column: str) -> str:
    """A table column's header for Markdown / HTML: HEADERS, else the snake_case name with spaces."""
    return HEADERS.get(column, column.replace("_", " "))


def si(value: float) -> str:
    """A count in SI units with 3 significant digits: 74.5 M, 1.23 G, 950."""
    for factor, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value:.3g}"


UNDEFINED = "—"  # a value that does not exist (precision of a class never predicted, the CI of a test without one)


def _fmt(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            if column in SI_COLUMNS:
                out[column] = [(UNDEFINED if pd.isna(v) else si(v)) for v in out[column]]
            elif column in WHOLE_COLUMNS:
                out[column] = [(UNDEFINED if pd.isna(v) else f"{v:.0f}") for v in out[column]]
            else:
                out[column] = [(UNDEFINED if pd.isna(v) else f"{v:.4g}") for v in out[column]]
    return out.rename(columns=lambda c: human_header(str(c)))


def _is_numeric(values) -> bool:
    """A column of numbers (possibly "0.9 ± 0.1 [..]", "4 M", "n/a"): right-aligned; text reads better left-aligned."""
    shown = [str(v) for v in values if str(v) not in ("", UNDEFINED, "n/a", "nan")]
    return bool(shown) and all(re.match(r"^[-+]?(\d|\.\d)", v) for v in shown)


def _html_table(frame: pd.DataFrame) -> str:
    shown = _fmt(frame)
    align = ["num" if _is_numeric(shown[c]) else "text" for c in shown.columns]
    head = "".join(f'<th class="{a}">{html.escape(str(c))}</th>' for c, a in zip(shown.columns, align))
    rows = ["<tr>" + "".join(f'<td class="{a}">{html.escape("" if pd.isna(v) else str(v))}</td>' for v, a in zip(row, align)) + "</tr>"
            for row in shown.itertuples(index=False)]
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"


def to_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        parts.extend(f"{p}\n" for p in section.paragraphs)
        for caption, table in section.tables:
            if caption:
                parts.append(f"**{caption}**\n")
            parts.append((_fmt(table).to_markdown(index=False, disable_numparse=True) if len(table) else "(none)") + "\n")
        for caption, path in section.images:
            parts.append(f"![{caption}]({path.name})\n")
    return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { border-bottom: 2px solid #4C72B0; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef2f8; } .num { text-align: right; }
.wide { overflow-x: auto; }
tr:nth-child(even) { background: #f8f8f8; }
figure { display: inline-block; margin: 0.5em; } figcaption { font-size: 12px; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
nav a { margin-right: 1em; font-size: 13px; }
"""


def to_html(title: str, sections: list[Section]) -> str:
    """One page that needs nothing else: CSS inline, PNGs as base64 data URIs."""
    anchors = [f"s{i}" for i in range(len(sections))]
    body = [f"<h1>{html.escape(title)}</h1>", "<nav>" + "".join(
        f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections)) + "</nav>"]
    for anchor, section in zip(anchors, sections):
        body.append(f'<h2 id="{anchor}">{html.escape(section.title)}</h2>')
        body.extend(f"<p>{html.escape(p)}</p>" for p in section.paragraphs)
        for caption, table in section.tables:
            if caption:
                body.append(f"<p><b>{html.escape(caption)}</b></p>")
            body.append(_html_table(table) if len(table) else "<p>(none)</p>")
        for caption, path in section.images:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
