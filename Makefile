# medtl: make install, make test, make benchmark, make ui.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUITE ?= benchmark/suites/smoke.yaml
MLFLOW_PORT ?= 5000

.PHONY: install test test-durations test-fast benchmark tune probes real-cpu report pipeline perf ui server lint-imports constraints clean

install:  ## create .venv and install medtl with its test extras, pinned by constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/medtl list

test:  ## the whole test suite (offline, CPU), plus the import-layering contract
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

test-durations:  ## the whole test suite, recording each file's seconds in tests/durations.json (make test runs long files first)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --record-durations

test-fast:  ## everything but the tests that train several models (slow), on 2 workers
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile --no-loadscope-reorder

benchmark:  ## run a suite (default: the smoke suite on generated data) and print its leaderboard
	$(BIN)/medtl benchmark $(SUITE)

tune:  ## a small Optuna study on generated data (storage sqlite:///optuna.db; optuna-dashboard sqlite:///optuna.db)
	$(BIN)/medtl tune benchmark/suites/tune-smoke.yaml --n-trials 6

medmnist-baseline:  ## MedMNIST v2's baseline protocol on BreastMNIST from scratch (override DATA=...)
	$(BIN)/medtl benchmark benchmark/suites/medmnist-baseline.yaml --data-root $(or $(DATA),../shared/data)

probes:  ## frozen-feature probes (svm, knn, few-shot, linear) on BreastMNIST (override DATA=...)
	$(BIN)/medtl benchmark benchmark/suites/probes-breastmnist.yaml --data-root $(or $(DATA),../shared/data)

real-cpu:  ## the real-data CPU profile on ../shared/data (override DATA=...)
	$(BIN)/medtl benchmark benchmark/suites/real-cpu.yaml --data-root $(or $(DATA),../shared/data)

report:  ## leaderboard of what has finished so far
	$(BIN)/medtl report $(SUITE)

pipeline:  ## training-pipeline efficiency, both paths (SIZES=32,64,224 on a GPU); CSV reports/throughput/pipeline_*.csv
	$(BIN)/python -m benchmark.speed.pipeline_bench --pipeline cpu,device $(if $(SIZES),--sizes $(SIZES))

perf:  ## medtl vs timm inference img/s, alternating (MODELS=resnet18,...); CSV reports/throughput/perf_*.csv
	$(BIN)/python -m benchmark.speed.perf $(if $(MODELS),--models $(MODELS))

ui:  ## browse runs: prints the links to the suite's runs tables (cells, studies), then serves the UI
	@$(BIN)/medtl report $(SUITE) --ui-link http://127.0.0.1:$(MLFLOW_PORT) | sed 's/^/Runs of $(notdir $(SUITE)), /' || true
	@echo "All experiments: http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning (open these links: MLflow's home page is its GenAI view)"
	@echo "The suite's report: its parent run's artifacts, folder report/ (report.html)."
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db --default-artifact-root ./mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

server:  ## a team's MLflow server: PostgreSQL (DB=postgresql+psycopg2://USER@HOST:5432/mlflow) + served ./mlartifacts, on 127.0.0.1:$(MLFLOW_PORT)
	$(BIN)/medtl server --backend-store-uri $(or $(DB),$(MEDTL_SERVER_DB),postgresql+psycopg2://$(or $(USER),$(shell whoami))@127.0.0.1:5432/mlflow) --port $(MLFLOW_PORT)

lint-imports:
	$(BIN)/lint-imports

constraints:  ## re-pin the tested set from the current .venv
	{ head -2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^medtl' | sort -f; } > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf reports .medtl_cache .medtl_jobs lightning_logs .pytest_cache
