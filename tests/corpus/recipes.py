"""Training recipes and overrides with a wrong key, type or value (`simpo train`)."""

from __future__ import annotations

from . import REMOVE, TRAIN, Case, recipe_text, train_case

NAN, INF = float("nan"), float("inf")

CASES = [
    # Types: a value that does not convert to the key's declared type names the key, the value and the type.
    train_case("learning-rate-word", "learning_rate", {"learning_rate": "fast"}),
    train_case("max-steps-word", "max_steps", {"max_steps": "abc"}),
    train_case("seed-word", "seed", {"seed": "abc"}),
    train_case("model-path-number", "model_name_or_path", {"model_name_or_path": 123}),
    train_case("chat-template-number", "chat_template", {"chat_template": 5}),
    train_case("bf16-maybe", "bf16", {"bf16": "maybe"}),
    train_case("batch-size-fraction", "per_device_train_batch_size", {"per_device_train_batch_size": 2.5}),
    train_case("dataset-splits-string", "dataset_splits", {"dataset_splits": "train"}),
    train_case("mixer-list", "dataset_mixer", {"dataset_mixer": ["{repo}/data/verifiable-prefs"]}),
    train_case("beta-list", "beta", {"beta": [1, 2]}),
    train_case("override-word", "learning_rate", args=("--learning_rate", "fast")),
    # Limits, checked before anything loads.
    train_case("learning-rate-negative", "learning_rate", {"learning_rate": -1e-5}),
    train_case("batch-size-zero", "per_device_train_batch_size", {"per_device_train_batch_size": 0}),
    train_case("batch-size-negative", "per_device_train_batch_size", {"per_device_train_batch_size": -2}),
    train_case("accumulation-zero", "gradient_accumulation_steps", {"gradient_accumulation_steps": 0}),
    train_case("max-steps-negative", "max_steps", {"max_steps": -5}),
    train_case("epochs-negative", "num_train_epochs", {"num_train_epochs": -1, "max_steps": REMOVE}),
    train_case("save-steps-zero", "save_steps", {"save_steps": 0, "save_strategy": "steps"}),
    train_case("workers-negative", "preprocessing_num_workers", {"preprocessing_num_workers": -3}),
    train_case("seed-negative", "seed", {"seed": -1}),
    train_case("warmup-negative", "warmup_steps", {"warmup_steps": -10}),
    train_case("adam-beta-one", "adam_beta2", {"adam_beta2": 1.5}),
    train_case("report-to-unknown", "report_to", {"report_to": "nonexistent"}),
    train_case("attention-unknown", "attn_implementation", {"attn_implementation": "flashy"}),
    train_case("save-strategy-unknown", "save_strategy", {"save_strategy": "sometimes"}),
    train_case("scheduler-unknown", "lr_scheduler_type", {"lr_scheduler_type": "cosinus"}),
    train_case("optimizer-unknown", "optim", {"optim": "adamw_fast"}),
    # NaN and infinity pass every `<` check unless refused by name.
    train_case("beta-nan", "beta", {"beta": NAN}),
    train_case("beta-inf-override", "beta", args=("--beta", ".inf")),
    train_case("sft-weight-nan", "sft_weight", {"sft_weight": NAN}),
    train_case("learning-rate-inf", "learning_rate", {"learning_rate": INF}),
    train_case("gamma-nan", "gamma_beta_ratio", {"gamma_beta_ratio": NAN}),
    train_case("weight-decay-nan", "weight_decay", {"weight_decay": NAN}),
    train_case("mixer-fraction-nan", "dataset_mixer", {"dataset_mixer": {"{repo}/data/verifiable-prefs": NAN}}),
    # Paths: checked before the model or the data load.
    train_case("model-folder-missing", "model_name_or_path", {"model_name_or_path": "./no-such-model"}),
    train_case("model-name-malformed", "model_name_or_path", {"model_name_or_path": "a/b/c/d"}),
    train_case("resume-missing", "resume_from_checkpoint", {"resume_from_checkpoint": "out/checkpoint-7"}),
    train_case("output-dir-is-a-file", "output_dir", {"output_dir": "taken"}, files={"taken": "a file"}),
    train_case("data-missing", "no-such-pairs.jsonl", {"dataset_mixer": {"./no-such-pairs.jsonl": 1.0}}),
    # Keys.
    train_case("unknown-key", "learning_rat", {"learning_rat": 1e-5}),
    train_case("pipeline-section-in-train", "simpo pipeline", args=("--generate.seeds", "[1, 2]")),
    train_case("dotted-unknown", "generatee", args=("--generatee.seeds", "[1, 2]")),
    train_case("two-names-of-one-key", "warmup_ratio", {"warmup_ratio": 0.1, "warmup_steps": 5}),
    train_case("loss-key-of-another-loss", "tau", {"tau": 0.1}),
    train_case("prompt-longer-than-max", "max_prompt_length", {"max_prompt_length": 512, "max_length": 128}),
    # The file itself.
    Case("duplicate-key", ("train", "recipe.yaml"), "learning_rate",
         {"recipe.yaml": recipe_text(TRAIN) + "learning_rate: 1.0e-3\n"}),
    Case("binary-recipe", ("train", "recipe.yaml"), "recipe.yaml", {"recipe.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"}),
    Case("recipe-not-a-mapping", ("train", "recipe.yaml"), "recipe.yaml", {"recipe.yaml": "- a\n- b\n"}),
    Case("recipe-bad-yaml", ("train", "recipe.yaml"), "recipe.yaml", {"recipe.yaml": "beta: [1, 2\n"}),
    Case("recipe-missing", ("train", "no-such.yaml"), "no-such.yaml"),
    Case("override-unclosed", ("train", "recipe.yaml", "--beta", "[1, 2"), "--beta", {"recipe.yaml": recipe_text(TRAIN)}),
    Case("override-without-dashes", ("train", "recipe.yaml", "beta", "2"), "beta", {"recipe.yaml": recipe_text(TRAIN)}),
]

CASES += [
    train_case("optimizer-not-installed", "bitsandbytes", {"optim": "adamw_bnb_8bit"}),
    train_case("optimizer-args-malformed", "optim_args", {"optim": "adafactor", "optim_args": "scale_parameter"}),
    train_case("report-to-not-installed", "wandb", {"report_to": "wandb"}),
    train_case("eval-without-test-split", "eval_strategy needs a test split", {"eval_strategy": "steps", "dataset_splits": ["train"]}),
    train_case("best-model-without-eval", "load_best_model_at_end", {"load_best_model_at_end": True}),
    train_case("bf16-and-fp16", "fp16", {"bf16": True, "fp16": True}),
    train_case("on-nonfinite-unknown", "on_nonfinite must be one of stop, skip", {"on_nonfinite": "ignore"}),
    train_case("on-nonfinite-skip-under-deepspeed", "on_nonfinite: skip cannot skip an update under deepspeed",
               {"on_nonfinite": "skip", "deepspeed": "ds.json"}, files={"ds.json": "{}"}),
    train_case("overwrite-and-resume", "overwrite_output_dir: true starts over, resume_from_checkpoint: true continues",
               {"overwrite_output_dir": True, "resume_from_checkpoint": True}),
    # output_dir holds a run of another recipe: refused before anything loads, naming each difference.
    train_case("output-dir-of-another-recipe", "holds a run made with another recipe (learning_rate: 0.001 -> 1.0e-05)", files={
        "out/recipe.yaml": recipe_text({**TRAIN, "learning_rate": 1e-3}), "out/checkpoint-1/trainer_state.json": "{}"}),
    train_case("output-dir-of-an-unknown-recipe", "holds a run without a readable recipe.yaml",
               files={"out/trainer_state.json": "{}"}),
]

# LoRA: ranges, keys without use_peft, and a target name the model lacks (checked on the model's
# config before any weights load), named with the model's linear layers.
CASES += [
    train_case("lora-rank-zero", "lora_r must be >= 1, got 0", {"use_peft": True, "lora_r": 0}),
    train_case("lora-alpha-zero", "lora_alpha must be > 0, got 0", {"use_peft": True, "lora_alpha": 0}),
    train_case("lora-dropout-one", "lora_dropout must be in [0, 1), got 1.0", {"use_peft": True, "lora_dropout": 1.0}),
    train_case("lora-key-without-peft", "lora_r applies to LoRA only; add use_peft: true", {"lora_r": 8}),
    train_case("lora-target-unknown", "lora_target_modules: 'qkv_proj' matches no linear layer of the model; its linear layers are "
               "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj",
               {"use_peft": True, "lora_target_modules": ["q_proj", "qkv_proj"]}),
]


def _generated() -> list[Case]:
    """For every numeric or boolean key (transformers' included): a word where a value belongs, and
    NaN for each number; each must be refused by name."""
    from simpo.config.recipe import FIELD_TYPES

    cases, taken = [], {case.name for case in CASES}
    for key, kind in sorted(FIELD_TYPES.items()):
        arms = set(getattr(kind, "__args__", (kind,)))
        if str in arms or key in TRAIN or key == "bf16":  # text keys take a word; bf16 has its own case
            continue
        if arms & {int, float, bool}:
            cases.append(train_case(f"{key}-word", key, {key: "some-word"}))
        if float in arms:
            cases.append(train_case(f"{key}-nan", key, {key: NAN}))
    return [case for case in cases if case.name not in taken]


CASES += _generated()

# Files that are not what they claim: a checkpoint to resume, a run folder's recipe.yaml, a model
# folder's JSON files; each named in one line, never a traceback.
CHECKPOINT = {"ck/model.safetensors": "weights"}
CASES += [
    train_case("resume-not-a-checkpoint", "ck is not a checkpoint (no trainer_state.json)", {"resume_from_checkpoint": "ck"},
               files=CHECKPOINT),
    train_case("resume-state-not-json", "ck/trainer_state.json (a trainer state of transformers): not valid JSON",
               {"resume_from_checkpoint": "ck"}, files={**CHECKPOINT, "ck/trainer_state.json": '{"global_step": 1'}),
    train_case("resume-state-a-list", "ck/trainer_state.json (a trainer state of transformers): holds a JSON array, not a JSON object",
               {"resume_from_checkpoint": "ck"}, files={**CHECKPOINT, "ck/trainer_state.json": "[1]"}),
    train_case("resume-state-binary", "ck/trainer_state.json (a trainer state of transformers): not UTF-8 text",
               {"resume_from_checkpoint": "ck"}, files={**CHECKPOINT, "ck/trainer_state.json": b"\xff\xfe\x00{"}),
    train_case("resume-state-unknown-keys", "ck/trainer_state.json: not a trainer state (unknown keys 'steps')",
               {"resume_from_checkpoint": "ck"}, files={**CHECKPOINT, "ck/trainer_state.json": '{"steps": 1}'}),
    train_case("resume-state-step-word", "ck/trainer_state.json: global_step or log_history is not what transformers writes",
               {"resume_from_checkpoint": "ck"}, files={**CHECKPOINT, "ck/trainer_state.json": '{"global_step": "one"}'}),
    train_case("resume-without-weights", "ck holds no model weights", {"resume_from_checkpoint": "ck"},
               files={"ck/trainer_state.json": '{"global_step": 1}'}),
    train_case("resume-empty-file", "ck/optimizer.pt is empty", {"resume_from_checkpoint": "ck"},
               files={**CHECKPOINT, "ck/trainer_state.json": '{"global_step": 1}', "ck/optimizer.pt": ""}),
    train_case("output-dir-recipe-binary", "holds a run without a readable recipe.yaml",
               files={"out/recipe.yaml": b"\x89PNG\r\n\x1a\n\xff\xfe", "out/trainer_state.json": "{}"}),
    train_case("model-config-not-json", "m/config.json (a file of the model folder): not valid JSON", {"model_name_or_path": "./m"},
               files={"m/config.json": '{"model_type": "llama",'}),
    train_case("model-tokenizer-config-a-list", "m/tokenizer_config.json (a file of the model folder): holds a JSON array",
               {"model_name_or_path": "./m"}, files={"m/config.json": "{}", "m/tokenizer_config.json": "[]"}),
    train_case("adapter-config-a-list", "m/adapter_config.json (a file of the model folder): holds a JSON array",
               {"model_name_or_path": "./m"}, files={"m/adapter_config.json": "[]"}),
]

# What the real run would refuse before training, the recipe build refuses, so `--dry-run` does too:
# empty values, keys of the wrong shape.
CASES += [
    train_case("lora-targets-empty", "lora_target_modules [] names no layer", {"use_peft": True, "lora_target_modules": []}),
    train_case("lora-targets-empty-dry-run", "lora_target_modules [] names no layer", {"use_peft": True, "lora_target_modules": []},
               args=("--dry-run",)),
    train_case("lora-target-blank", "lora_target_modules [''] names no layer", {"use_peft": True, "lora_target_modules": [""]}),
    train_case("dataset-splits-empty", "dataset_splits is empty", {"dataset_splits": []}),
    train_case("dataset-splits-empty-dry-run", "dataset_splits is empty", {"dataset_splits": []}, args=("--dry-run",)),
    train_case("dataset-splits-no-train", "dataset_splits ['test'] has no training split", {"dataset_splits": ["test"]}),
    train_case("dataset-splits-repeated", "dataset_splits names 'train' twice", {"dataset_splits": ["train", "test", "train"]}),
    train_case("dataset-split-neither", "dataset split 'validation' must contain 'train' or 'test'", {"dataset_splits": ["train", "validation"]}),
    train_case("output-dir-empty", "output_dir must name a folder, got ''", {"output_dir": ""}),
    train_case("output-dir-empty-dry-run", "output_dir must name a folder, got ''", {"output_dir": ""}, args=("--dry-run",)),
    train_case("output-dir-null", "output_dir must name a folder, got None", {"output_dir": None}),
    train_case("output-dir-blank-override", "output_dir must name a folder", args=("--output_dir", " ")),
    train_case("checkpointing-kwargs-word", "gradient_checkpointing_kwargs must be a mapping",
               {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": "yes"}),
    train_case("checkpointing-kwargs-list", "gradient_checkpointing_kwargs must be", {"gradient_checkpointing_kwargs": [1]}),
    train_case("checkpointing-kwargs-bad-json", "gradient_checkpointing_kwargs '{use_reentrant' is not a JSON object",
               {"gradient_checkpointing_kwargs": "{use_reentrant"}),
    train_case("checkpointing-kwargs-unknown", "gradient_checkpointing_kwargs: unknown key 'bogus'",
               {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"bogus": 1}}),
    train_case("checkpointing-kwargs-reentrant-word", "gradient_checkpointing_kwargs.use_reentrant must be true or false",
               {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": "maybe"}}),
    train_case("checkpointing-kwargs-layers-zero", "gradient_checkpointing_kwargs.every_n_layers must be 1 or more",
               {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"every_n_layers": 0}}),
    train_case("scheduler-kwargs-word", "lr_scheduler_kwargs must be a mapping", {"lr_scheduler_kwargs": "x"}),
    train_case("scheduler-kwargs-unknown", "lr_scheduler_kwargs: 'bogus' is not an option of lr_scheduler_type linear",
               {"lr_scheduler_kwargs": {"bogus": 1}}),
    train_case("scheduler-kwargs-word-value", "lr_scheduler_kwargs.num_cycles must be a finite number",
               {"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"num_cycles": "many"}}),
    train_case("scheduler-kwargs-of-constant", "'num_cycles' is not an option of lr_scheduler_type constant; it takes none",
               {"lr_scheduler_type": "constant", "lr_scheduler_kwargs": {"num_cycles": 1}}),
    train_case("save-best-without-metric", "save_strategy: best needs metric_for_best_model", {"save_strategy": "best"}),
    train_case("model-revision-empty", "model_revision is empty", {"model_revision": ""}),
    train_case("chat-template-empty", "chat_template is empty", {"chat_template": ""}),
    train_case("chat-template-not-jinja", "chat_template is not a valid Jinja template", {"chat_template": "{% for %}"}),
    train_case("reference-model-empty", "ref_model_name_or_path is empty", {"loss_type": "dpo", "ref_model_name_or_path": ""}),
    train_case("resume-empty", "resume_from_checkpoint: no checkpoint folder ''", {"resume_from_checkpoint": ""}),
]

# An override given twice is refused, as --nproc is.
CASES += [
    train_case("override-twice", "--learning_rate is given twice", args=("--learning_rate", "1e-5", "--learning_rate=2e-5")),
    train_case("override-twice-dry-run", "--beta is given twice", args=("--beta", "2", "--dry-run", "--beta", "3")),
]

# An evaluation asked for with no test split among dataset_splits: refused by the build (before, the
# run found it after loading the data, and do_eval was silently off).
CASES += [
    train_case("do-eval-without-test-split", "do_eval needs a test split, and dataset_splits ['train'] has none",
               {"do_eval": True, "dataset_splits": ["train"]}),
    train_case("eval-on-start-without-test-split", "eval_on_start needs a test split", {"eval_on_start": True, "dataset_splits": ["train_prefs"]}),
    train_case("eval-without-test-split-dry-run", "eval_strategy needs a test split", {"eval_strategy": "steps", "dataset_splits": ["train"]},
               args=("--dry-run",)),
]
