"""Encoding pairs: prompt_ids + response_ids is the tokenization of the whole conversation (one BOS,
a boundary merge goes to the response), each response ends with one end-of-turn token, and
truncation keeps the prompt's end (and its BOS) before it cuts responses; text holding a control
token of the template is refused."""

import pytest
from helpers import RIGHT, USER, WRONG

from simpo.data.encode import PairEncoder
from simpo.data.rows import Pair
from simpo.errors import DataError

PAIR = Pair(prompt=[USER], chosen=RIGHT, rejected=WRONG)


def _check_boundary(tokenizer, pair: Pair, encoded: dict):
    """prompt_ids + response_ids is the tokenization of the whole rendered conversation."""
    for side, answer in (("chosen_ids", pair.chosen), ("rejected_ids", pair.rejected)):
        text = tokenizer.apply_chat_template(pair.prompt + [answer], tokenize=False)
        whole = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert encoded["prompt_ids"] + encoded[side] == whole
        bos = tokenizer.bos_token_id
        assert whole.count(bos) == text.count(tokenizer.bos_token)  # no BOS beyond the template's own


def test_smollm2_tokenization_boundary_and_end_of_turn(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    encoder = PairEncoder(tokenizer, max_length=512, max_prompt_length=256)
    encoded = encoder.encode(PAIR, "row 0")
    _check_boundary(tokenizer, PAIR, encoded)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # The response is the answer, then one end-of-turn token and the template's newline.
    assert tokenizer.decode(encoded["chosen_ids"]) == "2 + 3 = 5.<|im_end|>\n"
    assert encoded["chosen_ids"].count(im_end) == 1


def test_gemma_template_folds_system_and_keeps_one_bos(gemma_tokenizer):
    tokenizer = gemma_tokenizer
    assert tokenizer("hi")["input_ids"][0] == tokenizer.bos_token_id  # it adds BOS itself, like Gemma's
    system = {"role": "system", "content": "You are a careful assistant."}
    pair = Pair(prompt=[system, USER], chosen=RIGHT, rejected=WRONG)
    encoded = PairEncoder(tokenizer, max_length=512, max_prompt_length=256).encode(pair, "row 0")
    folded = Pair(prompt=[{"role": "user", "content": "You are a careful assistant.\n\nWhat is 2 + 3?"}], chosen=RIGHT, rejected=WRONG)
    _check_boundary(tokenizer, folded, encoded)
    assert encoded["prompt_ids"].count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(encoded["prompt_ids"]).startswith("<bos><start_of_turn>user\nYou are a careful assistant.\n\nWhat")
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert encoded["chosen_ids"].count(end_of_turn) == 1 and tokenizer.eos_token_id not in encoded["chosen_ids"]


def test_boundary_merge_goes_to_the_response(smollm2_tokenizer):
    # A template whose prompt ends mid-word: the last prompt token merges with the answer's first.
    tokenizer = smollm2_tokenizer
    original = tokenizer.chat_template
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\nA: the{% else %}{{ m['content'] }}"
        "{{ eos_token }}{% endif %}{% endfor %}"
    )
    try:
        pair = Pair(prompt=[USER], chosen={"role": "assistant", "content": "re is 5"}, rejected={"role": "assistant", "content": "y say 6"})
        encoded = PairEncoder(tokenizer, 512, 256).encode(pair, "row 0")
        _check_boundary(tokenizer, pair, encoded)
        prompt_alone = tokenizer(tokenizer.apply_chat_template([USER], tokenize=False), add_special_tokens=False)["input_ids"]
        assert len(encoded["prompt_ids"]) < len(prompt_alone)  # " the" + "re" merged into " there"
        assert tokenizer.decode(encoded["chosen_ids"]).startswith(" there")
    finally:
        tokenizer.chat_template = original


def test_truncation_keeps_prompt_end_and_bos_then_cuts_responses(gemma_tokenizer):
    encoder = PairEncoder(gemma_tokenizer, max_length=20, max_prompt_length=8)
    bos = gemma_tokenizer.bos_token_id
    prompt = [bos] + list(range(100, 130))
    out = encoder.truncate(prompt, list(range(200, 230)), [300, 301])
    assert out["prompt_ids"] == [bos] + list(range(123, 130))
    assert out["chosen_ids"] == list(range(200, 212)) and out["rejected_ids"] == [300, 301]
    assert out["prompt_truncated"] and out["response_truncated"]
    short = encoder.truncate([bos, 5, 6], [7, 8], [9])
    assert short["prompt_ids"] == [bos, 5, 6] and not short["prompt_truncated"] and not short["response_truncated"]
    start = PairEncoder(gemma_tokenizer, 20, 8, "keep_start").truncate(prompt, [1] * 30, [2])
    assert start["prompt_ids"] == prompt[:8] and len(start["chosen_ids"]) == 12


def test_no_room_never_means_an_empty_response(smollm2_tokenizer):
    # A prompt far longer than max_length still leaves max_length - max_prompt_length tokens.
    long_pair = Pair(prompt=[{"role": "user", "content": "word " * 400}], chosen=RIGHT, rejected=WRONG)
    encoded = PairEncoder(smollm2_tokenizer, max_length=64, max_prompt_length=48).encode(long_pair, "row 0")
    assert len(encoded["prompt_ids"]) == 48
    # The responses, whole (each fits the 64 - 48 = 16 tokens left) and the same as after a short prompt.
    whole = PairEncoder(smollm2_tokenizer, max_length=512, max_prompt_length=256).encode(PAIR, "row 0")
    assert 0 < len(whole["chosen_ids"]) <= 16 and 0 < len(whole["rejected_ids"]) <= 16
    assert (encoded["chosen_ids"], encoded["rejected_ids"]) == (whole["chosen_ids"], whole["rejected_ids"])


def test_a_control_token_in_the_text_is_refused_naming_the_row(smollm2_tokenizer, gemma_tokenizer):
    # Tokenized, "<|im_end|>" in an answer would end the turn there; it is an error, not a quiet token.
    for tokenizer, token in ((smollm2_tokenizer, "<|im_end|>"), (gemma_tokenizer, "<end_of_turn>")):
        pair = Pair(prompt=[USER], chosen=RIGHT, rejected={"role": "assistant", "content": f"6.{token}"})
        with pytest.raises(DataError) as raised:
            PairEncoder(tokenizer, 512, 256).encode(pair, "f.jsonl, row 7")
        assert str(raised.value).startswith(f"f.jsonl, row 7: 'assistant' text holds {token!r}, a control token")
