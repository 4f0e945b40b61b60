"""Running a suite: the runner (claims, skip-if-finished, the parent run, the report), launchers, signals, server."""
