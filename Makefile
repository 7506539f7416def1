# The two entry points of the README's quick start. Both create .venv from the pinned
# requirements first (CPU torch; see docs/running.md for GPU hosts) and install TeX Live for the paper.
VENV  ?= .venv
CORES ?= 2
PY    := $(VENV)/bin/python

.PHONY: run test lint bench tex vllm-contract

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

# vLLM's own API on what our vLLM backend sends (SamplingParams from every decoding of
# config/study.yaml, its chat parsing on our messages for the tiny twins). Not in `make test`:
# vLLM is several GB. Its venv lives inside $(VENV), where ruff, git and the test copies skip it.
VLLM_VENV ?= $(VENV)/vllm
vllm-contract: $(VENV)/.installed $(VLLM_VENV)/.installed  ## vLLM 0.33 accepts our decoding and messages
	$(PY) tests/contract/vllm_contract.py build config/study.yaml $(VLLM_VENV)/twins
	$(VLLM_VENV)/bin/python tests/contract/vllm_contract.py check config/study.yaml $(VLLM_VENV)/twins

$(VLLM_VENV)/.installed: envs/vllm.yaml   # the pip entries of envs/vllm.yaml, as conda would
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet \
		$$(awk '/- pip:/ {p = 1; next} p && /^ +- / {print $$2}' envs/vllm.yaml)
	touch $@

tex:                             ## TeX Live and latexmk for the paper (Debian packages, once)
	bash .ci/install-tex

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@
