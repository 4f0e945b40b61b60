"""Benchmark: RunSpec, suites, the runner, throughput, reports and the `medtl` CLI.

    medtl benchmark benchmark/suites/smoke.yaml
"""
