"""Chat templates: generation stops at the template's end-of-turn token (and at EOS where it differs)."""

from simpo.data.chat import stop_token_ids


def test_smollm2_stops_at_its_end_of_turn(smollm2_tokenizer):
    assert stop_token_ids(smollm2_tokenizer) == [smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_gemma_stops_at_eos_and_at_its_end_of_turn(gemma_tokenizer):
    end_of_turn = gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert stop_token_ids(gemma_tokenizer) == [gemma_tokenizer.eos_token_id, end_of_turn]
