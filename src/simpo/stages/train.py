"""The train stage: recipe in, trained model folder out, with held-out metrics before and after."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import yaml

from ..config.recipe import Recipe, check_installed
from ..data.chat import stop_token_ids
from ..data.dataset import build_pair_datasets
from ..data.encode import PairEncoder
from ..errors import RecipeError
from ..models.loading import load_model, load_tokenizer
from ..models.lora import check_targets_before_loading
from ..training.checkpoints import resume_point
from ..training.curves import write_curves
from ..training.run_folder import RECIPE_FILE, check_output_dir, move_aside, saving_model
from ..training.run_info import write_run_info
from ..training.trainer import SimPOTrainer
from .lock import LOCK_FILE, folder_lock

logger = logging.getLogger("simpo")

SUMMARY_KEYS = ("eval_rewards/accuracies", "eval_rewards/margins", "eval_loss")


def encode_pairs(recipe: Recipe) -> tuple:
    """(tokenizer, train set, test set or None): the recipe's pairs tokenized as training reads them.
    They depend on the model and data sections and on `ENCODING_KEYS` only."""
    args = recipe.training
    tokenizer = load_tokenizer(recipe.model)
    encoder = PairEncoder.for_recipe(tokenizer, args, recipe.model.model_name_or_path)
    with args.main_process_first(desc="tokenizing the dataset"):
        train_set, test_set = build_pair_datasets(recipe.data, encoder, seed=args.seed)
    return tokenizer, train_set, test_set


ENCODING_KEYS = ("max_length", "max_prompt_length", "truncation_mode", "tokenization", "seed")  # the training keys encode_pairs reads


def run_training(recipe: Recipe, encoded: tuple | None = None) -> dict[str, dict[str, float]]:
    """Train, save everything to `output_dir`, and return the held-out metrics before and after.
    `encoded`: what `encode_pairs(recipe)` returns, when the caller already has it (`simpo sweep`)."""
    from transformers import set_seed

    start = time.perf_counter()
    args = recipe.training
    check_installed(args)
    # A run of another recipe in output_dir is refused before anything loads or is written.
    check_output_dir(args.output_dir, recipe.raw, args.overwrite_output_dir)
    if args.use_peft:
        check_targets_before_loading(recipe.model, args.lora_target_modules)
    set_seed(args.seed)
    tokenizer, train_set, test_set = encoded or encode_pairs(recipe)
    if test_set is None and args.eval_strategy != "no":
        raise RecipeError(f"eval_strategy needs a test split, and {list(recipe.data.dataset_mixer)} has none "
                          f"among {recipe.data.dataset_splits}: add one, or set eval_strategy: no")
    model = load_model(recipe.model)
    # output_dir is written from here on (the trainer makes it), the recipe and data checked; one
    # process of a distributed run holds its lock.
    with folder_lock(args.output_dir) if args.process_index == 0 else contextlib.nullcontext():
        if args.overwrite_output_dir:
            with args.main_process_first(desc="moving the previous run aside"):
                if args.process_index == 0:
                    move_aside(args.output_dir, keep=(LOCK_FILE,))
        reference = recipe.model.ref_model_name_or_path
        trainer = SimPOTrainer(
            model=model, args=args, processing_class=tokenizer, train_dataset=train_set, eval_dataset=test_set,
            # Built inline so that, with precomputed reference log-probs, nothing else holds it afterwards.
            ref_model=load_model(dataclasses.replace(recipe.model, model_name_or_path=reference, model_revision="main"))
            if reference and args.needs_reference else None,
        )

        output_dir = Path(args.output_dir)
        if trainer.is_world_process_zero():  # one process writes files
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / RECIPE_FILE).write_text(yaml.safe_dump(recipe.raw, sort_keys=False))

        evaluate = test_set is not None and (args.do_eval or args.eval_strategy != "no")
        resume = resume_point(args)
        # The step-0 evaluation runs inside train() (eval_on_start), on the model as training prepares
        # it: evaluated before train(), accelerate would prepare it for inference only (left out of
        # DDP, or under DeepSpeed an engine training cannot use). A resumed run finds it in its
        # checkpoint's log.
        args.eval_on_start = args.eval_on_start or (evaluate and resume is None)
        trainer.train(resume_from_checkpoint=resume)
        before = next(({k: v for k, v in entry.items() if k != "step"} for entry in trainer.state.log_history
                       if entry.get("step") == 0 and "eval_loss" in entry), {}) if evaluate else {}
        after = trainer.evaluate(metric_key_prefix="eval") if evaluate else {}

        # Stop at the end of an assistant turn when the saved model chats, not only at EOS.
        model.generation_config.eos_token_id = stop_token_ids(tokenizer)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        with saving_model(output_dir, trainer.is_world_process_zero()):  # a save cut short is never taken for a model
            trainer.save_model(str(output_dir))
            if args.use_peft and trainer.is_world_process_zero():  # an adapter folder holds no generation config of its own
                model.generation_config.save_pretrained(output_dir)
            trainer.save_state()
            if trainer.is_world_process_zero():  # the model card's records: curves, machine and wall time
                write_curves(output_dir)
                write_run_info(output_dir, args, time.perf_counter() - start, list(recipe.data.dataset_mixer))
        if evaluate and trainer.is_world_process_zero():
            print(summary_table(before, after, len(test_set)))
    return {"before": before, "after": after}


def summary_table(before: dict, after: dict, pairs: int) -> str:
    lines = [f"held-out pairs: {pairs}", f"{'metric':<28}{'before':>10}{'after':>10}"]
    for key in SUMMARY_KEYS:
        lines.append(f"{key:<28}{before.get(key, float('nan')):>10.4f}{after.get(key, float('nan')):>10.4f}")
    return "\n".join(lines)
