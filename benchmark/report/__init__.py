"""The suite's report: results read back from MLflow, statistics, comparisons, plots, HTML / Markdown rendering."""
