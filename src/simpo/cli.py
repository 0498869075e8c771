"""`simpo` on the command line: a verb, its recipe and overrides -> its stage; `--help` per verb."""

from __future__ import annotations

import difflib
import logging
import os
import sys

from .config.recipe import load_recipe
from .errors import DataError, RecipeError, TrainingError
from .ops.allocator import keep_freed_memory

COMMANDS = {  # verb: (usage, what it does)
    "train": ("simpo train RECIPE.yaml [--key value ...] [--nproc N] [--dry-run]",
              "SimPO (or a baseline) on preference pairs; --nproc N: as N processes under accelerate launch"),
    "sweep": ("simpo sweep RECIPE.yaml --key v1,v2[,...] [--key v1,v2 ...] [--key value ...] [--processes N] [--dry-run]",
              "train every combination of the values on the same pairs, as simpo train would, and compare them in one table"),
    "sft": ("simpo sft RECIPE.yaml [--key value ...] [--nproc N] [--dry-run]",
            "supervised fine-tuning on conversations (loss on the assistant's turns), packed; the base-model route's first step"),
    "generate": ("simpo generate [RECIPE.yaml] [--key value ...] [--nproc N]",
                 "sample N responses per prompt from the policy; --nproc N: the shards shared among N processes"),
    "annotate": ("simpo annotate [RECIPE.yaml] [--key value ...]", "score every response with the recipe's rewards"),
    "binarize": ("simpo binarize [RECIPE.yaml] [--key value ...]", "best vs worst response as a preference pair, train/test split"),
    "evaluate": ("simpo evaluate [RECIPE.yaml] [--key value ...]", "greedy held-out accuracy of model_name_or_path"),
    "eval": ("simpo eval MODEL [MODEL ...] [--benchmarks ...] [--limit N] [--judge ...]",
             "AlpacaEval 2, Arena-Hard, GSM and MMLU as the SimPO model cards report them, and their table"),
    "pipeline": ("simpo pipeline RECIPE.yaml [--key value ...] [--dry-run]", "all of the above in order, then train; finished stages are skipped"),
    "card": ("simpo card RUN_DIR [--eval FOLDER] [--output PATH]", "the trained model's README.md: a model card with its evaluation table"),
    "merge": ("simpo merge RUN_DIR [--output PATH]", "a LoRA run's adapter merged into its base model, saved as a full model folder"),
    "chat": ("simpo chat MODEL [--prompt TEXT] [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-p P] [--dtype D]",
             "talk to a model in the terminal, with its chat template and stop tokens"),
    "inspect": ("simpo inspect RECIPE.yaml [--split train] [--rows N] [--json] [--key value ...]",
                "the first training rows as the trainer scores them: prompt and scored response tokens"),
    "plan": ("simpo plan RECIPE.yaml --gpus N --gpu-memory GB [--zero 0-3 | --fsdp] [--json] [--key value ...]",
             "per-device memory of training the recipe, the arithmetic shown, and whether it fits"),
    "prepare-model": ("simpo prepare-model [ALIAS]", "convert a bundled model into the cache once"),
}


def usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: simpo COMMAND [RECIPE.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}{what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "simpo COMMAND --help (or simpo help COMMAND) lists the command's recipe keys. Keys of a pipeline",
              "stage are set as --section.key value, e.g. --generate.seeds [1,2]. --dry-run prints the settings",
              "as the command will use them, converted and checked, and runs nothing. simpo --version: the version."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    """A command's usage and its recipe keys, from the configuration fields' metadata."""
    from transformers import TrainingArguments

    from .config.keys import key_rows, text_table
    from .config.pipeline import PIPELINE_KEY_ROWS, SECTIONS
    from .config.recipe import OWN_TRAINING_KEYS, DataConfig, ModelConfig, SimPOConfig
    from .stages.card import OPTION_ROWS as CARD_OPTIONS
    from .stages.chat import OPTION_ROWS as CHAT_OPTIONS
    from .stages.inspect import OPTION_ROWS as INSPECT_OPTIONS
    from .stages.merge import OPTION_ROWS as MERGE_OPTIONS
    from .stages.plan import OPTION_ROWS as PLAN_OPTIONS
    from .stages.sweep import OPTION_ROWS as SWEEP_OPTIONS

    synopsis, what = COMMANDS[name]
    if name == "eval":
        from .stages.eval import parser

        return parser().format_help()
    parts = [f"usage: {synopsis}", "", what + "."]
    model_keys = key_rows(ModelConfig, names=["model_name_or_path", "model_revision", "torch_dtype", "trust_remote_code", "chat_template"])
    sections = {
        "train": [("model", key_rows(ModelConfig)), ("data", key_rows(DataConfig)),
                  ("loss and data path", key_rows(SimPOConfig, names=OWN_TRAINING_KEYS)),
                  ("transformers.TrainingArguments", key_rows(TrainingArguments))],
        "sweep": [("sweep", SWEEP_OPTIONS), ("training: every key of `simpo train --help`", [])],
        "sft": _sft_sections(key_rows, TrainingArguments),
        "generate": [("model", model_keys), ("generate", key_rows(SECTIONS["generate"], "generate."))],
        "annotate": [("annotate", key_rows(SECTIONS["annotate"], "annotate."))],
        "binarize": [("binarize", key_rows(SECTIONS["binarize"], "binarize."))],
        "evaluate": [("model", model_keys), ("evaluate", key_rows(SECTIONS["evaluate"], "evaluate.")),
                     ("rewards (programmatic ones score the answers)", key_rows(SECTIONS["annotate"], "annotate.", ["rewards"]))],
        "pipeline": [("pipeline", PIPELINE_KEY_ROWS)]
                    + [(section, key_rows(cls, f"{section}.")) for section, cls in SECTIONS.items()]
                    + [("training: every key of `simpo train --help`", [])],
        "card": [("card", CARD_OPTIONS)],
        "merge": [("merge", MERGE_OPTIONS)],
        "chat": [("chat", CHAT_OPTIONS)],
        "inspect": [("inspect", INSPECT_OPTIONS)],
        "plan": [("plan", PLAN_OPTIONS)],
        "prepare-model": [],
    }[name]
    for title, rows in sections:
        parts += ["", f"{title} keys:" if rows else title + "."] + ([text_table(rows)] if rows else [])
    return "\n".join(parts)


def _sft_sections(key_rows, training_arguments) -> list:
    from .config.sft import MODEL_KEYS, OWN_SFT_KEYS, SFTConfig, SFTDataConfig, SFTModelConfig

    return [("model", key_rows(SFTModelConfig, names=MODEL_KEYS)), ("data", key_rows(SFTDataConfig)),
            ("SFT", key_rows(SFTConfig, names=OWN_SFT_KEYS)), ("transformers.TrainingArguments", key_rows(training_arguments))]


def _split(tokens: list[str]) -> tuple[str | None, list[str]]:
    """The recipe path (the first token, unless it is an option) and the overrides after it."""
    if tokens and not tokens[0].startswith("--"):
        return tokens[0], tokens[1:]
    return None, tokens


def _train(tokens: list[str]) -> int | None:
    from .training.launch import prepare_launched_process, relaunch, split_nproc

    processes, tokens = split_nproc(tokens)
    prepare_launched_process()
    path, overrides = _split(tokens)
    if path is None:
        raise RecipeError("simpo train needs a recipe file: simpo train RECIPE.yaml [--key value ...]")
    dry_run = "--dry-run" in overrides
    recipe = load_recipe(path, [token for token in overrides if token != "--dry-run"])  # checked once, before launching
    if dry_run:
        print(recipe.to_json())
        return None
    if processes and processes > 1:
        from .training.run_folder import check_output_dir

        # Refused once, here, rather than by every process.
        check_output_dir(recipe.training.output_dir, recipe.raw, recipe.training.overwrite_output_dir)
        return relaunch("train", processes, tokens)
    from .stages.train import run_training

    run_training(recipe)


def _sweep(tokens: list[str]) -> None:
    from .stages.sweep import describe, parse_sweep, run_sweep

    sweep = parse_sweep([token for token in tokens if token != "--dry-run"])
    if "--dry-run" in tokens:
        print(describe(sweep))
    else:
        run_sweep(sweep)


def _sft(tokens: list[str]) -> int | None:
    from .config.sft import load_sft_recipe
    from .training.launch import prepare_launched_process, relaunch, split_nproc

    processes, tokens = split_nproc(tokens)
    prepare_launched_process()
    path, overrides = _split(tokens)
    if path is None:
        raise RecipeError("simpo sft needs a recipe file: simpo sft RECIPE.yaml [--key value ...]")
    recipe = load_sft_recipe(path, [token for token in overrides if token != "--dry-run"])
    if "--dry-run" in overrides:
        print(recipe.to_json())
        return None
    if processes and processes > 1:
        return relaunch("sft", processes, tokens)
    from .stages.sft import run_sft

    run_sft(recipe)


def _stage(name: str):
    def run(tokens: list[str]) -> None:
        from .config.pipeline import load_pipeline
        from .training.launch import split_nproc

        processes, tokens = split_nproc(tokens)
        if processes is not None and name != "generate":
            raise RecipeError(f"simpo {name} runs in one process: --nproc is for simpo train, sft and generate")
        path, overrides = _split(tokens)
        if name == "pipeline" and path is None:
            raise RecipeError("simpo pipeline needs a recipe file: simpo pipeline RECIPE.yaml [--key value ...]")
        pipeline = load_pipeline(path, [token for token in overrides if token != "--dry-run"])
        if "--dry-run" in overrides:
            pipeline.validate() if name == "pipeline" else getattr(pipeline, name).validate()
            print(pipeline.to_json())
        elif name == "generate":
            from .stages.generate import run_generate

            print(run_generate(pipeline.train.model, pipeline.generate, processes=processes or 1))
        elif name == "annotate":
            from .stages.annotate import run_annotate

            print(run_annotate(pipeline.annotate))
        elif name == "binarize":
            from .stages.binarize import run_binarize

            print(run_binarize(pipeline.binarize))
        elif name == "evaluate":
            import json
            from pathlib import Path

            from .stages.evaluate import run_evaluate

            label = Path(pipeline.model).name or "model"
            print(json.dumps(run_evaluate(pipeline.train.model, pipeline.evaluate, pipeline.annotate.rewards, label), indent=2))
        else:
            from .stages.pipeline import run_pipeline

            run_pipeline(pipeline)

    return run


def _eval(tokens: list[str]) -> None:
    from .stages.eval import parse_options, run_eval

    print(run_eval(parse_options(tokens)))


def _card(tokens: list[str]) -> None:
    from .stages.card import run_card

    print(run_card(tokens))


def _merge(tokens: list[str]) -> None:
    from .stages.merge import run_merge

    print(run_merge(tokens))


def _chat(tokens: list[str]) -> None:
    from .stages.chat import run_chat

    run_chat(tokens)


def _inspect(tokens: list[str]) -> None:
    from .stages.inspect import inspect_rows

    print(inspect_rows(tokens))


def _plan(tokens: list[str]) -> None:
    from .stages.plan import run_plan

    print(run_plan(tokens))


def _prepare_model(tokens: list[str]) -> None:
    from .models.bundled import BUNDLED, bundled_model_dir

    alias = tokens[0] if tokens else "smollm2-135m-instruct"
    if len(tokens) > 1 or alias not in BUNDLED:
        raise RecipeError(f"prepare-model takes one of: {', '.join(BUNDLED)}")
    print(bundled_model_dir(alias))


STAGES = {
    "train": _train,
    "sweep": _sweep,
    "sft": _sft,
    **{name: _stage(name) for name in ("generate", "annotate", "binarize", "evaluate", "pipeline")},
    "eval": _eval,
    "card": _card,
    "merge": _merge,
    "chat": _chat,
    "inspect": _inspect,
    "plan": _plan,
    "prepare-model": _prepare_model,
}


def version() -> str:
    from importlib.metadata import version as installed

    return f"simpo {installed('simpo')}"


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught, not at exit
        return status
    except BrokenPipeError:
        # The reader of stdout went away (`simpo train --help | head -1`): stop quietly, as a shell
        # command does; stdout pointed at /dev/null so that Python's own flush at exit finds no pipe.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 128 + 13  # a process ended by SIGPIPE, as the shell reports it


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help") or argv == ["help"]:
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(version())
        return 0
    if argv[0] == "help" and len(argv) == 2 and argv[1] in STAGES:
        argv = [argv[1], "--help"]
    if argv[0] not in STAGES:
        what = "option" if argv[0].startswith("-") else "command"
        match = difflib.get_close_matches(argv[0], list(STAGES), n=1)
        hint = f"did you mean {match[0]!r}? " if match else ""
        print(f"simpo: error: unknown {what} {argv[0]!r}; {hint}simpo --help lists the commands", file=sys.stderr)
        return 2
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(command_help(argv[0]))
        return 0
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    keep_freed_memory()  # before the stage allocates anything large
    try:
        status = STAGES[argv[0]](argv[1:])  # an exit status: that of the processes `--nproc N` launched
    except (RecipeError, DataError) as err:
        print(f"simpo: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:  # the input was fine; the run stopped on what it computed
        print(f"simpo: error: {err}", file=sys.stderr)
        return 3
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
