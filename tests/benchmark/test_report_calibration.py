"""The report's calibration section on a fabricated store: table values are the cells' logged means, diagrams exist."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from benchmark.plan.suite import load_suite
from benchmark.report.calibration import CALIBRATION_BINS, pooled_reliability
from benchmark.report.document import build_report
from benchmark.report.results import load_results
from tasks.training.calibration import brier, ece, nll, reliability_table
from tests.benchmark.report_store import CLASSES, fabricate
from tests.benchmark.suites import write_suite

TEMPERATURE = {"plain": 1.0, "better": 1.7}  # planted per source: every cell of a source reports it


def _log_calibration(client: MlflowClient, results) -> dict[str, dict[str, float]]:
    """What a cell would log, computed on its fabricated test predictions (the scaled ones from softmax(log p / T))."""
    logged = {}
    for cell in results.cells.itertuples():
        frame = results.predictions(cell.run_id)
        probs = frame[[f"p:{c}" for c in CLASSES]].to_numpy(float)
        probs = probs / probs.sum(1, keepdims=True)
        y = frame["target"].to_numpy(int)
        t = TEMPERATURE[cell.source]
        scaled = np.exp(np.log(probs) / t)
        scaled /= scaled.sum(1, keepdims=True)
        metrics = {"test/ece": ece(probs, y), "test/brier": brier(probs, y), "test/nll": nll(probs, y),
                   "test/ece_ts": ece(scaled, y), "test/brier_ts": brier(scaled, y), "test/nll_ts": nll(scaled, y),
                   "calibration/temperature": t}
        for key, value in metrics.items():
            client.log_metric(cell.run_id, key, value)
        logged[cell.run_id] = metrics
    return logged


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    work = tmp_path_factory.mktemp("calibration")
    suite = load_suite(write_suite(work, name="calib", folds=3, sources={"plain": {"weights": "scratch"},
                                                                        "better": {"weights": "scratch"}}))
    uri = f"sqlite:///{work / 'mlruns.db'}"
    fabricate(uri, suite, {"plain": 0.4, "better": 0.9}, rows=80)
    client = MlflowClient(uri)
    logged = _log_calibration(client, load_results(client, suite=suite))
    results = load_results(client, suite=suite)
    return {"results": results, "logged": logged, "report": build_report(results, work / "out")}


def test_table_values_are_the_means_of_the_cells_logged_metrics(calibrated):
    table = pd.read_csv(calibrated["report"].out_dir / "calibration.csv").set_index("row")
    cells, logged = calibrated["results"].cells, calibrated["logged"]
    for source in ("plain", "better"):
        runs = cells[cells["source"] == source]["run_id"]
        row = table.loc[f"{source}/smallcnn/full"]
        assert row["n"] == 3
        for column, metric in (("ece", "test/ece"), ("brier", "test/brier"), ("nll", "test/nll"), ("ece_ts", "test/ece_ts"),
                               ("brier_ts", "test/brier_ts"), ("nll_ts", "test/nll_ts")):
            values = [logged[r][metric] for r in runs]
            assert row[f"{column}_mean"] == pytest.approx(np.mean(values), rel=1e-9)
            assert row[f"{column}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
        assert row["temperature_mean"] == pytest.approx(TEMPERATURE[source])


def test_reliability_diagram_is_the_pooled_predictions_table_and_its_png_exists(calibrated):
    results, report = calibrated["results"], calibrated["report"]
    cells = results.cells[results.cells["source"] == "better"]
    before, after = pooled_reliability(results, cells)
    frames = [results.predictions(r) for r in cells["run_id"]]
    pooled = pd.concat(frames, ignore_index=True)
    expected = reliability_table(pooled[[f"p:{c}" for c in CLASSES]].to_numpy(float), pooled["target"], CALIBRATION_BINS)
    pd.testing.assert_frame_equal(before, expected)
    assert before["count"].sum() == 3 * 80 and len(before) == CALIBRATION_BINS
    # Scaling with T > 1 lowers confidence and leaves each image's decision (and so the bins' accuracy total) alone.
    assert after["confidence"].mean() < before["confidence"].mean()
    assert (after["accuracy"] * after["count"]).sum() == pytest.approx((before["accuracy"] * before["count"]).sum())
    assert (report.out_dir / "reliability_better_smallcnn_full.png").stat().st_size > 1000
    assert "## Calibration" in report.markdown and "ECE after T" in report.markdown
    assert "reliability_better_smallcnn_full.png" in report.markdown
