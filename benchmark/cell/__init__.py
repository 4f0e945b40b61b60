"""One cell: the single route that pretraining, fine-tuning, feature strategies, ensembles and Optuna trials take.

`route.run_cell(spec, machine, run, hooks)` builds the backbone and data, trains through
`tasks.training` (or scores an ensemble), and logs what the cell produced to its MLflow run.
"""
