"""Optuna studies over a suite's rows; a trial is a cell (`benchmark.cell.route`) with a pruning hook and no test pass."""
