"""Collating pairs: in every layout exactly the response tokens are scored, each from the position
just before it, SmolLM2's end of turn included although it is the pad id."""

import pytest
from helpers import RIGHT, USER, WRONG

from simpo.data.collate import PairCollator
from simpo.data.encode import PairEncoder
from simpo.data.rows import Pair


@pytest.mark.parametrize("padding_free,share_prompt", [(False, False), (True, False), (True, True)])
def test_the_response_is_scored_with_its_end_of_turn_although_it_is_the_pad_id(padding_free, share_prompt, smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    encoded = PairEncoder(tokenizer, max_length=512, max_prompt_length=256).encode(Pair(prompt=[USER], chosen=RIGHT, rejected=WRONG), "row 0")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.pad_token_id == im_end and encoded["chosen_ids"][-2] == im_end  # the trap: pad == eos == end of turn
    batch = PairCollator(tokenizer.pad_token_id, padding_free, share_prompt)([encoded, encoded])
    first = batch["target_sequence"] == 0
    # Exactly the response is scored, the end of turn included, although it is the pad id...
    assert batch["target_ids"][first].tolist() == encoded["chosen_ids"]
    # ...each token from the position just before it, the last prompt token first.
    flat = batch["input_ids"].flatten()
    prompt = encoded["prompt_ids"]
    assert flat[batch["logit_index"][first]].tolist() == prompt[-1:] + encoded["chosen_ids"][:-1]


def test_a_batch_names_the_rows_its_pairs_came_from(smollm2_tokenizer):
    encoded = PairEncoder(smollm2_tokenizer, max_length=512, max_prompt_length=256).encode(Pair(prompt=[USER], chosen=RIGHT, rejected=WRONG), "row 0")
    collate = PairCollator(smollm2_tokenizer.pad_token_id, padding_free=True)
    batch = collate([{**encoded, "source": "a.jsonl", "row": 7}, {**encoded, "source": "b.jsonl", "row": 1}])
    assert batch["row_ids"] == [("a.jsonl", 7), ("b.jsonl", 1)]
    assert "row_ids" not in collate([encoded, encoded])  # pairs without their rows (the reference pass's)
