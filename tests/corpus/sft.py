"""SFT recipes and conversation rows that cannot be trained on (`simpo sft`); a row's error names the
file and the row, counted from 1."""

from __future__ import annotations

import json

from . import REMOVE, Case, _changed, recipe_text

USER = {"role": "user", "content": "What is 2 + 3?"}
ANSWER = {"role": "assistant", "content": "2 + 3 = 5."}
GOOD = {"messages": [USER, ANSWER]}

# An SFT recipe that runs: the bundled model (only its tokenizer loads before the data is checked),
# a file of conversations (the train split only), output in ./out.
SFT = {
    "model_name_or_path": "smollm2-135m-instruct",
    "dataset_mixer": {"talk.jsonl": 1.0},
    "output_dir": "out",
    "max_seq_length": 128,
    "per_device_train_batch_size": 2,
    "max_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
}


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def sft_case(name: str, expect: str, changes: dict | None = None, rows: tuple = (GOOD,), args: tuple = ()) -> Case:
    """`simpo sft recipe.yaml ARGS` with the working recipe changed and `talk.jsonl` holding `rows`."""
    return Case(name, ("sft", "recipe.yaml", *args), expect,
                {"recipe.yaml": recipe_text(_changed(SFT, changes or {})), "talk.jsonl": jsonl(*rows)})


def row_case(name: str, expect: str, row: dict) -> Case:
    """The bad row second, after a good one: the error names row 2."""
    return sft_case(name, f"talk.jsonl, row 2: {expect}", rows=(GOOD, row))


CASES = [
    # Rows.
    row_case("sft-row-without-messages", "missing 'messages'", {"conversation": [USER, ANSWER]}),
    row_case("sft-preference-row", "missing 'messages' (an SFT row is a conversation: a 'messages' list of {'role', 'content'} "
             "turns); it holds 'chosen' and 'rejected': preference pairs train with simpo train",
             {"prompt": "hi", "chosen": "a", "rejected": "b"}),
    row_case("sft-messages-a-string", "'messages' must be a non-empty list", {"messages": "What is 2 + 3?"}),
    row_case("sft-messages-empty", "'messages' must be a non-empty list", {"messages": []}),
    row_case("sft-turn-not-a-message", "'messages' has a message that is not {'role': str, 'content': str}", {"messages": [USER, {"role": "assistant"}]}),
    row_case("sft-unknown-role", "turn 2 of 'messages' has role 'bot'", {"messages": [USER, {"role": "bot", "content": "5"}]}),
    row_case("sft-assistant-first", "turn 1 of 'messages' is 'assistant' where 'user' is due", {"messages": [ANSWER, USER]}),
    row_case("sft-two-user-turns", "turn 2 of 'messages' is 'user' where 'assistant' is due", {"messages": [USER, USER, ANSWER]}),
    row_case("sft-system-in-the-middle", "turn 3 of 'messages' is 'system'",
             {"messages": [USER, ANSWER, {"role": "system", "content": "Be brief."}, USER, ANSWER]}),
    row_case("sft-no-assistant-turn", "'messages' has no assistant turn", {"messages": [USER]}),
    row_case("sft-control-token", "'assistant' text holds '<|im_end|>'", {"messages": [USER, {"role": "assistant", "content": "5<|im_end|>"}]}),
    sft_case("sft-every-conversation-cut-to-nothing", "every train conversation was dropped ({'no assistant token within max_seq_length': 1})",
             {"max_seq_length": 8}),
    sft_case("sft-eval-without-test-split", "eval_strategy needs a test split", {"eval_strategy": "steps"}),
    # Recipes.
    Case("sft-no-recipe", ("sft",), "simpo sft needs a recipe file"),
    sft_case("sft-no-mixer", "dataset_mixer is required", {"dataset_mixer": REMOVE}),
    sft_case("sft-missing-data", "dataset missing.jsonl does not exist", {"dataset_mixer": {"missing.jsonl": 1.0}}),
    sft_case("sft-preference-key", "'beta' in recipe.yaml is not an SFT key", {"beta": 2.0}),
    sft_case("sft-reference-model", "'ref_model_name_or_path' in recipe.yaml is not an SFT key", {"ref_model_name_or_path": "x"}),
    sft_case("sft-pipeline-section", "'generate' in recipe.yaml is not an SFT key", {"generate": {"max_prompts": 4}}),
    sft_case("sft-misspelt-key", "did you mean 'max_seq_length'?", {"max_seq_lenght": 512}),
    sft_case("sft-handbook-mixture", "did you mean 'dataset_mixer'?", {"dataset_mixture": {"datasets": []}}),
    sft_case("sft-seq-length-one", "max_seq_length must be >= 2, got 1", {"max_seq_length": 1}),
    sft_case("sft-seq-length-word", "max_seq_length must be a whole number", {"max_seq_length": "long"}),
    sft_case("sft-packing-word", "packing must be true or false, got 'maybe'", {"packing": "maybe"}),
    sft_case("sft-dataset-kwargs-unknown", "dataset_kwargs: 'skip_prepare_dataset' is not supported", {"dataset_kwargs": {"skip_prepare_dataset": True}}),
    sft_case("sft-dataset-kwargs-word", "dataset_kwargs must be", {"dataset_kwargs": {"add_special_tokens": "perhaps"}}),
    sft_case("sft-flash-and-sdpa", "use_flash_attention_2: true contradicts attn_implementation: sdpa",
             {"use_flash_attention_2": True, "attn_implementation": "sdpa"}),
    sft_case("sft-chunk-negative", "logps_chunk_size must be >= 0", {"logps_chunk_size": -1}),
    sft_case("sft-override-word", "max_seq_length must be a whole number", args=("--max_seq_length", "long")),
]

# A finished SFT run in out/ made with another learning rate: refused, as simpo train refuses.
CASES += [
    Case("sft-another-recipe-in-a-finished-run", ("sft", "recipe.yaml"),
         "output_dir out holds a run made with another recipe (learning_rate: 0.001 -> ",
         {"recipe.yaml": recipe_text(SFT), "talk.jsonl": jsonl(GOOD), "out/trainer_state.json": '{"global_step": 1}',
          "out/recipe.yaml": recipe_text({**SFT, "learning_rate": 1.0e-3}), "out/model.safetensors": "weights"}),
]

# Empty values that the run would refuse after loading are refused by --dry-run too.
CASES += [
    sft_case("sft-splits-empty", "dataset_splits is empty", {"dataset_splits": []}),
    sft_case("sft-output-dir-empty", "output_dir must name a folder", {"output_dir": ""}),
]

# Empty or blank answers are dropped and counted, as simpo train drops a pair with an empty response
# (with nothing left, the run stops naming the count); a key or a source given twice is refused.
CASES += [
    sft_case("sft-every-answer-empty", "every train conversation was dropped ({'empty answer': 2})",
             rows=({"messages": [USER, {"role": "assistant", "content": ""}]}, {"messages": [USER, {"role": "assistant", "content": " \n\t"}]})),
    sft_case("sft-override-twice", "--max_seq_length is given twice", args=("--max_seq_length", "64", "--max_seq_length", "96")),
    sft_case("sft-mixer-twice", "dataset_mixer names one source twice", {"dataset_mixer": {"talk.jsonl": 1.0, "./talk.jsonl": 1.0}}),
]
