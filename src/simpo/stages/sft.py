"""The sft stage: an SFT recipe in, a model folder out that `simpo train` takes as `model_name_or_path`."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import yaml

from ..config.recipe import check_installed
from ..config.sft import SFT, SFTRecipe
from ..data.chat import stop_token_ids
from ..data.sft import ConversationEncoder, build_sft_datasets
from ..errors import RecipeError
from ..models.loading import load_model, load_tokenizer
from ..training.checkpoints import resume_point
from ..training.curves import write_curves
from ..training.run_folder import RECIPE_FILE, check_output_dir, saving_model
from ..training.run_info import write_run_info
from ..training.sft import SFTTrainer
from .lock import folder_lock

logger = logging.getLogger("simpo")


def run_sft(recipe: SFTRecipe) -> dict[str, float]:
    """Fine-tune, save everything to `output_dir`, and return the final held-out metrics (empty without a test split)."""
    from transformers import set_seed

    start = time.perf_counter()
    args = recipe.training
    check_installed(args)
    # A run of another recipe in output_dir is refused before anything loads or is written.
    check_output_dir(args.output_dir, recipe.raw, overwrite=False, kind=SFT)
    set_seed(args.seed)
    tokenizer = load_tokenizer(recipe.model)
    encoder = ConversationEncoder(tokenizer, args.max_seq_length, recipe.data.auto_insert_empty_system_msg, **args.packing_options())
    with args.main_process_first(desc="tokenizing the dataset"):
        train_set, test_set = build_sft_datasets(recipe.data, encoder, args.packing, seed=args.seed)
    if test_set is None and args.eval_strategy != "no":
        raise RecipeError(f"eval_strategy needs a test split, and {list(recipe.data.dataset_mixer)} has none "
                          f"among {recipe.data.dataset_splits}: add one, or set eval_strategy: no")
    model = load_model(recipe.model)
    # output_dir is written from here on (the trainer makes it); one process of a distributed run holds its lock.
    with folder_lock(args.output_dir) if args.process_index == 0 else contextlib.nullcontext():
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=train_set, eval_dataset=test_set)
        output_dir = Path(args.output_dir)
        if trainer.is_world_process_zero():  # one process writes files
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / RECIPE_FILE).write_text(yaml.safe_dump(recipe.raw, sort_keys=False))

        trainer.train(resume_from_checkpoint=resume_point(args))
        evaluate = test_set is not None and (args.do_eval or args.eval_strategy != "no")
        after = trainer.evaluate(metric_key_prefix="eval") if evaluate else {}

        # Stop at the end of an assistant turn when the saved model chats, not only at EOS.
        model.generation_config.eos_token_id = stop_token_ids(tokenizer)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        with saving_model(output_dir, trainer.is_world_process_zero()):  # a save cut short is never taken for a model
            trainer.save_model(str(output_dir))
            trainer.save_state()
            if trainer.is_world_process_zero():
                write_curves(output_dir)
                write_run_info(output_dir, args, time.perf_counter() - start, list(recipe.data.dataset_mixer))
        if after and trainer.is_world_process_zero():
            print(f"held-out assistant-token NLL: {after['eval_loss']:.4f} ({len(test_set)} rows)")
    return after
