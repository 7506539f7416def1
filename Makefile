# The two entry points of the README's quick start. Both create .venv from the pinned
# requirements first (CPU torch; see docs/running.md for GPU hosts) and install TeX Live for the paper.
VENV  ?= .venv
CORES ?= 2
PY    := $(VENV)/bin/python

.PHONY: run test lint bench tex

run: $(VENV)/.installed tex      ## run (or resume) the workflow on the embedded default (config.yaml)
	$(VENV)/bin/snakemake --cores $(CORES) --rerun-incomplete

test: $(VENV)/.installed tex     ## the whole test suite (unit + end-to-end workflow)
	$(PY) -m pytest

lint: $(VENV)/.installed          ## ruff, snakefmt and snakemake --lint, all clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint

bench: $(VENV)/.installed        ## speed and memory: prepare, generation, judging, entropy, study DAG
	$(PY) benchmarks/bench_prepare.py
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_judge.py
	$(PY) benchmarks/bench_entropy.py
	$(PY) benchmarks/bench_dag.py

tex:                             ## TeX Live and latexmk for the paper (Debian packages, once)
	bash .ci/install-tex

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@
