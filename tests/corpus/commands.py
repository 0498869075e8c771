"""Command lines a user can get wrong: a missing recipe, an unknown command or option."""

from __future__ import annotations

from . import PIPELINE, TRAIN, Case, pipeline_case, recipe_text

CASES = [
    Case("no-command-option", ("--verbose",), "--verbose"),
    Case("unknown-command", ("foo",), "foo"),
    Case("command-typo", ("trian", "recipe.yaml"), "did you mean 'train'"),
    Case("train-no-recipe", ("train",), "simpo train RECIPE.yaml"),
    Case("pipeline-no-recipe", ("pipeline",), "simpo pipeline RECIPE.yaml"),
    Case("pipeline-dry-run-typo", ("pipeline", "recipe.yaml", "--dryrun"), "dryrun", {"recipe.yaml": recipe_text(PIPELINE)}),
    Case("prepare-model-unknown", ("prepare-model", "gpt-5"), "smollm2-135m-instruct"),
    Case("eval-no-model", ("eval",), "MODEL"),
    Case("eval-unknown-option", ("eval", "smollm2-135m-instruct", "--judg", "x"), "--judg"),
    Case("card-no-run", ("card", "no-such-run"), "no-such-run"),
    Case("chat-no-model", ("chat", "./no-such-model", "--prompt", "hi"), "no-such-model"),
]

CASES += [
    Case("eval-limit-zero", ("eval", "smollm2-135m-instruct", "--limit", "0"), "limit"),
    Case("eval-limit-word", ("eval", "smollm2-135m-instruct", "--limit", "all"), "limit"),
    Case("eval-option-benchmark-unknown", ("eval", "smollm2-135m-instruct", "--benchmarks", "bbh"), "bbh"),
    Case("eval-dtype-unknown", ("eval", "smollm2-135m-instruct", "--dtype", "fp8"), "fp8"),
    Case("eval-data-unknown", ("eval", "smollm2-135m-instruct", "--data", "web"), "web"),
    Case("eval-judge-malformed", ("eval", "smollm2-135m-instruct", "--judge", "gpt-4"), "judge"),
    Case("eval-model-missing", ("eval", "./no-such-model"), "no-such-model"),
    Case("eval-names-mismatch", ("eval", "smollm2-135m-instruct", "--names", "a,b"), "--names"),
    Case("eval-max-new-tokens-negative", ("eval", "smollm2-135m-instruct", "--max-new-tokens", "-5"), "max-new-tokens"),
    Case("chat-temperature-negative", ("chat", "smollm2-135m-instruct", "--temperature", "-1", "--prompt", "hi"), "temperature"),
    Case("chat-top-p-nan", ("chat", "smollm2-135m-instruct", "--top-p", "nan", "--prompt", "hi"), "top-p"),
    Case("chat-max-new-tokens-zero", ("chat", "smollm2-135m-instruct", "--max-new-tokens", "0", "--prompt", "hi"), "max-new-tokens"),
    Case("card-folder-without-model", ("card", "empty-run"), "empty-run", {"empty-run/notes.txt": "nothing here"}),
    Case("train-two-recipes", ("train", "recipe.yaml", "other.yaml"), "other.yaml", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("prepare-model-two", ("prepare-model", "smollm2-135m-instruct", "extra"), "prepare-model"),
]

CASES += [
    Case("inspect-no-recipe", ("inspect",), "recipe"),
    Case("inspect-rows-zero", ("inspect", "recipe.yaml", "--rows", "0"), "--rows", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("inspect-unknown-key", ("inspect", "recipe.yaml", "--rowz", "2"), "rowz", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("inspect-tokenization-unknown", ("inspect", "recipe.yaml", "--tokenization", "handbook"), "tokenization",
         {"recipe.yaml": recipe_text(TRAIN)}),
]

# simpo plan: its options, the model's config (a hub name not on disk, a bad --config), what it cannot size
CASES += [
    Case("plan-no-recipe", ("plan", "--gpus", "8", "--gpu-memory", "80"), "recipe"),
    Case("plan-no-gpus", ("plan", "recipe.yaml", "--gpu-memory", "80"), "--gpus", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-gpus-zero", ("plan", "recipe.yaml", "--gpus", "0", "--gpu-memory", "80"), "--gpus", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-gpus-word", ("plan", "recipe.yaml", "--gpus", "eight", "--gpu-memory", "80"), "--gpus", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-gpu-memory-nan", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "nan"), "--gpu-memory", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-gpu-memory-negative", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "-80"), "--gpu-memory",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-zero-stage-4", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--zero", "4"), "--zero",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-zero-and-fsdp", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--zero", "3", "--fsdp"), "--fsdp",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-option-typo", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--zeros", "3"), "zeros",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-hub-model-not-on-disk", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80"), "--config",
         {"recipe.yaml": recipe_text({**TRAIN, "model_name_or_path": "nobody/no-such-model"})}),
    Case("plan-config-missing", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--config", "none.json"), "none.json",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-config-not-json", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--config", "config.json"), "config.json",
         {"recipe.yaml": recipe_text(TRAIN), "config.json": "model_type: llama"}),
    Case("plan-config-unknown-layout", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--config", "config.json"), "gpt2",
         {"recipe.yaml": recipe_text(TRAIN), "config.json": '{"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4}'}),
    Case("plan-sft-recipe", ("plan", "{repo}/recipes/smollm2-135m-sft.yaml", "--gpus", "1", "--gpu-memory", "24"), "SFT recipe"),
    Case("plan-optimizer-unknown", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--optim", "adagrad"), "adagrad",
         {"recipe.yaml": recipe_text(TRAIN)}),
]

# simpo merge: what is not a LoRA run folder, and an adapter whose base model is gone.
CASES += [
    Case("merge-no-run", ("merge",), "run_dir"),
    Case("merge-missing-folder", ("merge", "no-such-run"), "no-such-run: no such folder"),
    Case("merge-full-model", ("merge", "run"), "run holds a full model, not a LoRA adapter (no adapter_config.json): it needs no merge",
         {"run/config.json": "{}", "run/model.safetensors": "weights"}),
    Case("merge-not-a-run", ("merge", "run"), "run is not a LoRA run folder (no adapter_config.json)", {"run/notes.txt": "nothing"}),
    Case("merge-base-missing", ("merge", "run"), "was trained on /no/such/base-model, which is not here",
         {"run/adapter_config.json": '{"base_model_name_or_path": "/no/such/base-model", "peft_type": "LORA"}'}),
]

# --nproc N: a number of processes, once.
CASES += [
    Case("train-nproc-zero", ("train", "recipe.yaml", "--nproc", "0"), "--nproc takes a number of processes, 1 or more; got '0'",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("train-nproc-word", ("train", "recipe.yaml", "--nproc", "two"), "--nproc takes a number of processes, 1 or more; got 'two'",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("train-nproc-missing", ("train", "recipe.yaml", "--nproc"), "--nproc takes a number of processes, 1 or more; got ''",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("sft-nproc-twice", ("sft", "recipe.yaml", "--nproc", "2", "--nproc=2"), "--nproc is given twice", {"recipe.yaml": "max_steps: 1\n"}),
    Case("generate-nproc-zero", ("generate", "--generate.prompts", "p.jsonl", "--nproc", "0"), "--nproc takes a number of processes, 1 or more; got '0'",
         {"p.jsonl": '{"prompt": "hi"}\n'}),
    Case("annotate-nproc", ("annotate", "--nproc", "2"), "simpo annotate runs in one process: --nproc is for simpo train, sft and generate"),
    Case("pipeline-nproc", ("pipeline", "recipe.yaml", "--nproc", "2"), "simpo pipeline runs in one process: --nproc is for simpo train, sft and generate",
         {"recipe.yaml": "max_steps: 1\n"}),
]

# Code that must not run without trust, and labels that must not become paths. A custom-code model
# folder whose code, if it ran, would write `code-ran` into the case's folder (the test sees every file).
CUSTOM_CODE = {
    "custom/config.json": '{"model_type": "simpo-custom", "auto_map": {"AutoConfig": "custom.CustomConfig"}, '
                          '"hidden_size": 64, "num_hidden_layers": 2}',
    "custom/custom.py": "open('code-ran', 'w').close()\nfrom transformers import PretrainedConfig\n\n\n"
                        "class CustomConfig(PretrainedConfig):\n    model_type = 'simpo-custom'\n",
}
CASES += [
    Case("plan-custom-code-untrusted", ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80", "--config", "custom"),
         "trust_remote_code: true", {"recipe.yaml": recipe_text(TRAIN), **CUSTOM_CODE}),
    Case("eval-names-parent", ("eval", "smollm2-135m-instruct", "--names", "../../x"), "row label"),
    Case("eval-names-absolute", ("eval", "smollm2-135m-instruct", "--names", "/tmp/x"), "row label"),
    Case("eval-names-dotdot", ("eval", "smollm2-135m-instruct", "--names", ".."), "row label"),
    Case("eval-model-path-dotdot", ("eval", "/"), "row label"),
]

# Folders a command must not trust or overwrite: a README.md the user wrote (simpo card replaces only
# its own), a model folder whose save simpo began and never finished (INCOMPLETE in it).
TRAINING_RUN = {"run/recipe.yaml": recipe_text(TRAIN), "run/trainer_state.json": '{"log_history": []}', "run/config.json": "{}"}
CASES += [
    Case("card-readme-the-user-wrote", ("card", "run"), "run/README.md was not written by simpo card",
         {**TRAINING_RUN, "run/README.md": "# My model\n\nNotes I wrote.\n"}),
]

# overwrite_output_dir moves a run aside, never the current folder nor the user's own files with it.
A_RUN = {"checkpoint-2/trainer_state.json": '{"global_step": 2}', "recipe.yaml": recipe_text(TRAIN)}
CASES += [
    Case("train-overwrite-the-current-folder", ("train", "recipe.yaml"),
         "output_dir . is the current folder: overwrite_output_dir would move it aside with everything in it; give the run a "
         "folder of its own", {**A_RUN, "recipe.yaml": recipe_text({**TRAIN, "output_dir": ".", "overwrite_output_dir": True}),
                               "notes.txt": "my notes"}),
    Case("train-overwrite-a-folder-with-notes", ("train", "recipe.yaml", "--overwrite_output_dir", "true"),
         "output_dir out holds files that no training run writes (data/, notes.txt), which overwrite_output_dir would move aside",
         {"recipe.yaml": recipe_text(TRAIN), **{f"out/{name}": text for name, text in A_RUN.items()},
          "out/notes.txt": "my notes", "out/data/train.jsonl": "{}\n"}),
]

# A model folder whose save simpo began and never finished (a full disk, a kill): every command that
# takes a model refuses it.
NEVER_FINISHED = {"model/config.json": '{"model_type": "llama"}', "model/tokenizer.json": '{"version": "1.0", "trunc',
                  "model/INCOMPLETE": "simpo began saving the model into this folder and has not finished\n"}
CASES += [
    Case("chat-model-save-never-finished", ("chat", "./model", "--prompt", "hi"), "model is not a whole model: simpo began "
         "saving it and never finished", NEVER_FINISHED),
    Case("card-model-save-never-finished", ("card", "run"), "run is not a whole model: simpo began saving it and never finished",
         {**TRAINING_RUN, "run/INCOMPLETE": ""}),
    Case("train-model-save-never-finished", ("train", "recipe.yaml"), "model is not a whole model: simpo began saving it",
         {"recipe.yaml": recipe_text({**TRAIN, "model_name_or_path": "./model"}), **NEVER_FINISHED}),
]

# An option given twice is refused by every verb's parser (errors.OptionParser), as --nproc is.
PLAN = ("plan", "recipe.yaml", "--gpus", "8", "--gpu-memory", "80")
CASES += [
    Case("plan-gpus-twice", (*PLAN, "--gpus", "4"), "--gpus is given twice", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("plan-override-twice", (*PLAN, "--max_length", "64", "--max_length", "128"), "--max_length is given twice",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("chat-temperature-twice", ("chat", "smollm2-135m-instruct", "--temperature", "0.5", "--temperature=0.7", "--prompt", "hi"),
         "--temperature is given twice"),
    Case("chat-prompt-abbreviated-twice", ("chat", "smollm2-135m-instruct", "--prompt", "hi", "--prom", "ho"), "--prompt is given twice"),
    Case("eval-limit-twice", ("eval", "smollm2-135m-instruct", "--limit", "4", "--limit", "8"), "--limit is given twice"),
    Case("inspect-rows-twice", ("inspect", "recipe.yaml", "--rows", "2", "--rows", "3"), "--rows is given twice",
         {"recipe.yaml": recipe_text(TRAIN)}),
    Case("card-output-twice", ("card", "run", "--output", "a.md", "--output", "b.md"), "--output is given twice"),
    Case("merge-output-twice", ("merge", "run", "--output", "a", "--output=b"), "--output is given twice"),
]

# simpo chat with a message that is not UTF-8 (bytes Python keeps as lone surrogates).
CASES += [
    Case("chat-prompt-not-utf8", ("chat", "smollm2-135m-instruct", "--prompt", "caf\udce9"), "--prompt is not UTF-8 text"),
]


# simpo plan on a config whose sizes are zero, negative or not numbers: one line naming the key.
def _plan_config(**changes) -> str:
    import json

    config = {"model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2}
    return json.dumps({**config, **changes})


CASES += [
    Case(f"plan-config-{name}", (*PLAN, "--config", "config.json"), expect, {"recipe.yaml": recipe_text(TRAIN), "config.json": config})
    for name, expect, config in (
        ("hidden-size-zero", "hidden_size", _plan_config(hidden_size=0)),
        ("layers-negative", "num_hidden_layers", _plan_config(num_hidden_layers=-2)),
        ("heads-zero", "config.json", _plan_config(num_attention_heads=0)),
        ("vocab-word", "vocab_size", _plan_config(vocab_size="many")),
        ("intermediate-fraction", "intermediate_size", _plan_config(intermediate_size=1.5)),
        ("kv-heads-not-dividing", "num_key_value_heads", _plan_config(num_key_value_heads=3)),
        ("head-dim-zero", "head_dim", _plan_config(head_dim=0)),
        ("hidden-not-dividing", "config.json", _plan_config(hidden_size=66)),
        ("a-list", "config.json", "[1, 2]"),
    )
]

# simpo card on a run folder whose files are not what they claim: the file named, nothing written.
RUN = {"run/recipe.yaml": recipe_text(TRAIN), "run/trainer_state.json": '{"log_history": []}', "run/config.json": "{}"}
CASES += [
    Case("card-recipe-binary", ("card", "run"), "run/recipe.yaml is not a text file", {**RUN, "run/recipe.yaml": b"\x89PNG\r\n\xff\xfe"}),
    Case("card-recipe-not-a-mapping", ("card", "run"), "run/recipe.yaml must be a mapping", {**RUN, "run/recipe.yaml": "- a\n"}),
    Case("card-recipe-mixer-a-list", ("card", "run"), "run/recipe.yaml: dataset_mixer is not a mapping",
         {**RUN, "run/recipe.yaml": recipe_text({**TRAIN, "dataset_mixer": ["pairs"]})}),
    Case("card-state-not-json", ("card", "run"), "run/trainer_state.json (a file of the run folder): not valid JSON",
         {**RUN, "run/trainer_state.json": '{"log_history": ['}),
    Case("card-state-history-a-number", ("card", "run"), "run/trainer_state.json: log_history is not a list",
         {**RUN, "run/trainer_state.json": '{"log_history": 5}'}),
    Case("card-run-info-a-list", ("card", "run"), "run/run_info.json (a file of the run folder): holds a JSON array",
         {**RUN, "run/run_info.json": "[]"}),
]
CASES += [
    Case("eval-openai-judge-without-key", ("eval", "smollm2-135m-instruct", "--benchmarks", "alpaca_eval", "--judge", "openai:gpt-4"),
         "set OPENAI_API_KEY, or set --judge-base-url", env={"OPENAI_API_KEY": None}),
    Case("eval-judge-base-url-not-a-url", ("eval", "smollm2-135m-instruct", "--judge", "openai:m", "--judge-base-url", "not a url"),
         "--judge-base-url 'not a url' is not an endpoint URL"),
    Case("eval-judge-base-url-for-local", ("eval", "smollm2-135m-instruct", "--judge-base-url", "http://127.0.0.1:9/v1"),
         "--judge-base-url is for openai:MODEL judges only"),
    Case("eval-judge-max-tokens-for-local", ("eval", "smollm2-135m-instruct", "--judge-max-tokens", "64"),
         "--judge-max-tokens is for openai:MODEL judges only"),
]

def _sweep(name: str, expect: str, args: tuple, files: dict | None = None) -> Case:
    """`simpo sweep recipe.yaml ARGS` on the working training recipe."""
    return Case(name, ("sweep", "recipe.yaml", *args), expect, {"recipe.yaml": recipe_text(TRAIN), **(files or {})})


# simpo sweep: value lists it cannot take, nothing to sweep, a folder it cannot use
CASES += [
    Case("sweep-no-recipe", ("sweep", "--beta", "1,2"), "simpo sweep RECIPE.yaml"),
    _sweep("sweep-unknown-key", "unknown recipe key 'betta' in --betta; did you mean 'beta'?", args=("--betta", "1,2")),
    _sweep("sweep-empty-value", "--learning_rate '1e-6,,2e-6' has an empty value", args=("--learning_rate", "1e-6,,2e-6")),
    _sweep("sweep-value-not-a-number", "beta must be a finite number or none, got 'ten' (--beta)", args=("--beta", "2.5,ten")),
    _sweep("sweep-value-out-of-range", "beta must be > 0, got -1.0", args=("--beta", "-1,2")),
    _sweep("sweep-same-value-twice", "2.5 and 2.50 are the same value of beta", args=("--beta", "2.5,2.50")),
    _sweep("sweep-nothing-swept", "nothing to sweep (zero combinations)", args=("--beta", "2.5")),
    _sweep("sweep-output-dir-swept", "output_dir cannot be swept", args=("--output_dir", "a,b", "--beta", "1,2")),
    _sweep("sweep-processes-negative", "--processes takes a number", args=("--beta", "1,2", "--processes", "-1")),
    _sweep("sweep-folder-holds-a-run", "output_dir out holds a training run", args=("--beta", "1,2"),
           files={"out/trainer_state.json": "{}"}),
    pipeline_case("sweep-pipeline-section-swept", "generate.seeds cannot be swept", args=("--generate.seeds", "1,2"), command="sweep"),
    pipeline_case("sweep-pipeline-without-pairs", "run/pairs is not complete: run simpo pipeline", args=("--beta", "1,2"), command="sweep"),
]
