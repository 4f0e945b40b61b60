"""Planning a suite: the suite file (one schema), its expansion into cells (RunSpec), ensembles, store migration.

Nothing here trains or reads images; `medtl benchmark SUITE --dry-run` stops after this room.
"""
