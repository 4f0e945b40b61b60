"""Speed measurement: inference / training throughput, model cost, and the `make perf` / `make pipeline` scripts."""
