"""The paper suites (benchmark/suites/papers/): each expands (`--dry-run`), is documented, and its `--stand-in`
run (generated images, benchmark/plan/standin.py) finishes with every row of the real suite in its leaderboard.

    .venv/bin/python -m pytest tests/benchmark/test_paper_suites.py -q            # dry runs and stand-in plans
    .venv/bin/python -m pytest tests/benchmark/test_paper_suites.py -q -m slow    # the stand-in runs
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import SUITES_DIR, list_suites, main
from benchmark.plan.standin import standin_backbone, standin_suite
from benchmark.plan.suite import load_suite, read_suite

REPO = Path(__file__).resolve().parents[2]
PAPERS = sorted(p.stem for p in (SUITES_DIR / "papers").glob("*.yaml"))


def _rows(suite) -> set[tuple]:
    """(source, backbone, row strategy) of every fine-tuning and ensemble cell: a leaderboard row, fractions apart."""
    return {(c.source, c.backbone, c.row_strategy) for c in suite.finetune_cells}


def test_the_five_papers_have_suites_listed_as_builtin():
    assert {"hicks2018", "sinha2019", "farhat_sicre", "rahman", "cheplygina"} <= set(PAPERS)
    assert {f"papers/{name}" for name in PAPERS} <= set(list_suites())


@pytest.mark.parametrize("name", PAPERS)
def test_paper_suite_dry_run_and_readme(name, capsys):
    assert main(["benchmark", f"papers/{name}", "--dry-run"]) == 0
    suite = load_suite(SUITES_DIR / "papers" / f"{name}.yaml")
    assert suite.name == name
    assert f"Suite {name} " in capsys.readouterr().out
    assert f"papers/{name}" in (REPO / "README.md").read_text()
    header = (SUITES_DIR / "papers" / f"{name}.yaml").read_text().split("\nname:")[0]
    assert "Reproduced" in header and "Reported" in header and "--stand-in" in header


@pytest.mark.parametrize("name", PAPERS)
def test_standin_plan_keeps_every_row(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = load_suite(SUITES_DIR / "papers" / f"{name}.yaml")
    path = tmp_path / "standin.yaml"
    import yaml

    path.write_text(yaml.safe_dump(standin_suite(read_suite(real.path))))
    stand = load_suite(path)
    assert stand.name == f"{name}-standin" and stand.model.stand_in
    mapped = {(s, standin_backbone(b) if "+" not in b else "+".join(sorted(standin_backbone(x) for x in b.split("+"))), st)
              for s, b, st in _rows(real)}
    if real.model.grid:  # grid values are rescaled: compare the number of rows per (source, backbone, strategy)
        assert len(_rows(stand)) == len(_rows(real))
    else:
        assert _rows(stand) == mapped
    assert len({c.fraction for c in stand.finetune_cells}) == len({c.fraction for c in real.finetune_cells})
    assert all(c.task in ("gen-standin", "union") or c.task.startswith("gen-") for c in stand.cells)
    assert all(not c.weights.startswith(("imagenet", "file:", "run:")) for c in stand.cells)


def test_standin_keeps_class_names_kind_and_layout():
    stand = standin_suite(read_suite(SUITES_DIR / "papers" / "rahman.yaml"))
    assert stand["target"]["options"]["classes"] == ["NORMAL", "PNEUMONIA"]
    assert stand["target"]["options"]["official_split"] is True and stand["target"]["positive_class"] == "PNEUMONIA"
    sinha = standin_suite(read_suite(SUITES_DIR / "papers" / "sinha2019.yaml"))
    assert sinha["target"]["options"]["kind"] == "multilabel" and len(sinha["target"]["options"]["classes"]) == 25
    assert "placeholder" in sinha["stand_in"]
    hicks = standin_suite(read_suite(SUITES_DIR / "papers" / "hicks2018.yaml"))
    assert len(hicks["target"]["options"]["classes"]) == 16 and hicks["target"]["external"][0]["name"] == "medico-test"
    assert hicks["fractions"] == [1.0, 32] and "imagenet -> scratch" in hicks["stand_in"]
    farhat = standin_suite(read_suite(SUITES_DIR / "papers" / "farhat_sicre.yaml"))
    assert farhat["grid"] == {"scales": ["32", "48", "64"], "vlad_k": [2, 4]}


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPERS)
def test_standin_run_has_every_row_in_the_leaderboard(name, tmp_path, monkeypatch, mlflow_uri):
    from benchmark.plan.standin import write_standin
    from benchmark.run.runner import run_suite

    monkeypatch.chdir(tmp_path)
    path = write_standin(SUITES_DIR / "papers" / f"{name}.yaml")
    outcome = run_suite(path, uri=mlflow_uri, report_dir=tmp_path / "report", echo=lambda *a: None)
    assert not outcome.failed, outcome.failed
    board = outcome.leaderboard
    # One fraction in the suite: the leaderboard drops its column (it would say nothing).
    shown = {(r.source, r.backbone, r.strategy, float(getattr(r, "fraction", outcome.suite.model.fractions[0])))
             for r in board.itertuples()}
    expected = {(c.source, c.backbone, c.row_strategy, float(c.fraction)) for c in outcome.suite.finetune_cells}
    assert expected <= shown, sorted(expected - shown)
    strategies = {s for _, _, s, _ in shown}
    if name == "hicks2018":
        assert "ensemble-folds" in strategies and {f for *_, f in shown} == {1.0, 32.0}  # 657 -> 32 images
    if name == "sinha2019":
        assert "layerwise-sequential" in strategies
    if name.startswith("farhat_sicre"):
        assert sum(s.startswith("svm[") for s in strategies) == 3 and sum(s.startswith("vlad[") for s in strategies) == 6
    report = (tmp_path / "report" / "report.md").read_text()
    assert "STAND-IN RUN" in report


@pytest.mark.slow
def test_foundation_standin_runs_every_source_and_probe_offline(tmp_path, monkeypatch, mlflow_uri):
    # foundation.yaml names two hub models that are never in CI's cache: its stand-in runs without them, every
    # (source, backbone) pair it allows and every probe present, and the report says it is a stand-in.
    from benchmark.plan.standin import write_standin
    from benchmark.run.runner import run_suite

    monkeypatch.chdir(tmp_path)
    path = write_standin(SUITES_DIR / "foundation.yaml")
    outcome = run_suite(path, uri=mlflow_uri, report_dir=tmp_path / "report", echo=lambda *a: None)
    assert not outcome.failed, outcome.failed
    shown = {(r.source, r.backbone, r.strategy) for r in outcome.leaderboard.itertuples()}
    real = read_suite(SUITES_DIR / "foundation.yaml", check=False)
    expected = {(source, standin_backbone(b), s) for source, d in real.sources.items() for b in d.backbones
                for s in real.strategies}
    assert expected == shown and len(shown) == 5 * 4  # 5 (source, backbone) pairs x linear, knn, fewshot, full
    assert "STAND-IN RUN" in (tmp_path / "report" / "report.md").read_text()
