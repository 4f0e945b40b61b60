"""The documentation stays true: a short README, live local links, and every module on the map.

    .venv/bin/python -m pytest tests/test_docs.py -q

A new module under backbones/, tasks/, pretrain/, tracking/ or benchmark/ gets its line in
docs/architecture.md (by its path, e.g. `benchmark/run/runner.py`) in the same commit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("backbones", "tasks", "pretrain", "tracking", "benchmark")
README_MAX_LINES = 400
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
# A repository path in backticks: `benchmark/run/runner.py`, `benchmark/suites/smoke.yaml` (no globs).
REPO_PATH = re.compile(r"`((?:backbones|tasks|pretrain|tracking|benchmark|tests|docs)/[\w./-]+\.(?:py|yaml|md|toml))`")
MODULE_RUN = re.compile(r"python -m ((?:backbones|tasks|pretrain|tracking|benchmark)(?:\.\w+)+)")


def _prose(text: str) -> str:
    """`text` without its fenced code blocks (a `# comment` there is not a heading, a path there may be a placeholder)."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(_prose(page.read_text())):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")  # GitHub numbers repeated headings
        seen[slug] = count + 1
    return anchors


def _modules() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for package in PACKAGES for p in (REPO / package).rglob("*.py")
                  if p.name != "__init__.py")


def test_slug_follows_github():
    assert _slug("Launchers: one worker against two (`benchmark/speed/launch_bench.py`)") == \
        "launchers-one-worker-against-two-benchmarkspeedlaunch_benchpy"
    assert _slug("MedMNIST v2's baseline protocol") == "medmnist-v2s-baseline-protocol"


def test_readme_is_a_short_guide():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, more than {README_MAX_LINES}: move detail to docs/ and link it")


def test_every_module_is_on_the_architecture_map():
    assert len(_modules()) > 80  # the walk found the packages
    text = (REPO / "docs" / "architecture.md").read_text()
    missing = [path for path in _modules() if f"`{path}`" not in text]
    assert not missing, ("docs/architecture.md does not name these modules; add one line each to its module map "
                         f"(what the module is for, from its docstring): {', '.join(missing)}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_local_links_point_to_files_and_headings(page):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(REPO) if file.is_relative_to(REPO) else file})")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no heading with anchor #{anchor} in {file.name})")
    assert not broken, f"{page.relative_to(REPO)}: broken local links: {'; '.join(broken)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_repository_files_exist(page):
    named = set(REPO_PATH.findall(page.read_text()))
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, f"{page.relative_to(REPO)} names files that do not exist (moved or renamed?): {missing}"


@pytest.mark.parametrize("page", [*PAGES, REPO / "Makefile"], ids=lambda p: str(p.relative_to(REPO)))
def test_python_m_commands_name_existing_modules(page):
    modules = set(MODULE_RUN.findall(page.read_text()))
    missing = sorted(m for m in modules if not (REPO / (m.replace(".", "/") + ".py")).is_file())
    assert not missing, f"{page.relative_to(REPO)} runs modules that do not exist: {missing}"


def test_readme_example_suite_loads(tmp_path):
    # The README's commented suite is what a user copies first: it must be a valid suite, and
    # expand into the cell counts the README states (2 pretraining + 360 fine-tuning).
    from benchmark.plan.suite import load_suite

    readme = (REPO / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "my-endoscopy.yaml"
    path.write_text(example)
    suite = load_suite(path)
    assert suite.name == "my-endoscopy"
    assert len(suite.cells) - len(suite.finetune_cells) == 2 and len(suite.finetune_cells) == 360
    assert "2 pretraining cells and 360 fine-tuning cells" in " ".join(readme.split())
