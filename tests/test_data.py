"""The data path: row layouts, tokenization at the prompt/response boundary, truncation, sources."""

import logging

import pytest
from conftest import write_jsonl

from simpo.config.recipe import DataConfig
from simpo.data.chat import stop_token_ids
from simpo.data.collate import PairCollator
from simpo.data.dataset import build_pair_datasets
from simpo.data.encode import PairEncoder
from simpo.data.rows import DataError, Pair, read_pair

USER = {"role": "user", "content": "What is 2 + 3?"}
RIGHT = {"role": "assistant", "content": "2 + 3 = 5."}
WRONG = {"role": "assistant", "content": "2 + 3 = 6."}
EXPECTED = Pair(prompt=[USER], chosen=RIGHT, rejected=WRONG)


@pytest.mark.parametrize("row", [
    {"prompt": USER["content"], "chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # UltraFeedback / armorm
    {"prompt": USER["content"], "chosen": RIGHT["content"], "rejected": WRONG["content"]},  # TRL standard
    {"prompt": [USER], "chosen": [RIGHT], "rejected": [WRONG]},  # TRL conversational
    {"chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # no prompt column
])
def test_every_layout_reads_to_the_same_pair(row):
    assert read_pair(row, "f.jsonl, row 0") == EXPECTED


@pytest.mark.parametrize("row,message", [
    ({"prompt": "q", "rejected": "a"}, "f.jsonl, row 3: missing 'chosen'"),
    ({"prompt": "q", "chosen": 5, "rejected": "a"}, "f.jsonl, row 3: 'chosen' must be a string or a non-empty list"),
    ({"prompt": "q", "chosen": [{"role": "assistant"}], "rejected": "a"}, "has a message that is not"),
    ({"chosen": "a", "rejected": "b"}, "missing 'prompt'"),
    ({"chosen": [USER, RIGHT], "rejected": [{"role": "user", "content": "other"}, WRONG]}, "differ before their last turn"),
    ({"prompt": [USER], "chosen": [USER], "rejected": [WRONG]}, "last turn of 'chosen' has role 'user'"),
])
def test_malformed_rows_raise_naming_the_row(row, message):
    with pytest.raises(DataError, match=message):
        read_pair(row, "f.jsonl, row 3")


@pytest.mark.parametrize("row,reason", [
    ({"prompt": "q", "chosen": "  ", "rejected": "a"}, "empty response"),
    ({"prompt": "q", "chosen": "same", "rejected": "same "}, "chosen identical to rejected"),
    ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty prompt"),
])
def test_useless_rows_get_a_drop_reason(row, reason):
    assert read_pair(row, "f.jsonl, row 0") == reason


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
    encoded = encoder.encode(EXPECTED, "row 0")
    _check_boundary(tokenizer, EXPECTED, encoded)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.pad_token_id == im_end  # the trap: pad == eos == end of turn
    # The response is the answer, then one end-of-turn token and the template's newline.
    assert tokenizer.decode(encoded["chosen_ids"]) == "2 + 3 = 5.<|im_end|>\n"
    assert encoded["chosen_ids"].count(im_end) == 1
    for padding_free, share_prompt in ((False, False), (True, False), (True, True)):
        batch = PairCollator(tokenizer.pad_token_id, padding_free, share_prompt)([encoded, encoded])
        first = batch["target_sequence"] == 0
        # Exactly the response is scored, the end of turn included, although it is the pad id...
        assert batch["target_ids"][first].tolist() == encoded["chosen_ids"]
        # ...each token from the position just before it, the last prompt token first.
        flat = batch["input_ids"].flatten()
        prompt = encoded["prompt_ids"]
        assert flat[batch["logit_index"][first]].tolist() == prompt[-1:] + encoded["chosen_ids"][:-1]
    assert stop_token_ids(tokenizer) == [im_end]


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
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id, end_of_turn]


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
    assert 0 < len(encoded["chosen_ids"]) <= 16 and 0 < len(encoded["rejected_ids"]) <= 16


def test_sources_splits_drops_and_errors(tmp_path, smollm2_tokenizer, caplog):
    good = {"prompt": "q1", "chosen": "a", "rejected": "b"}
    folder = tmp_path / "pairs"
    write_jsonl(folder / "train.jsonl", [good, {"prompt": "q2", "chosen": "x", "rejected": "x"}, {**good, "chosen": ""}, good])
    write_jsonl(folder / "test.jsonl", [good])
    encoder = PairEncoder(smollm2_tokenizer, 128, 64)
    with caplog.at_level(logging.WARNING, logger="simpo"):
        train, test = build_pair_datasets(DataConfig(dataset_mixer={str(folder): 1.0}), encoder)
    assert (len(train), len(test)) == (2, 1)
    assert "train: 2 pairs; dropped: 1 chosen identical to rejected, 1 empty response" in caplog.text

    # A single file serves the train split only; a saved dataset folder and parquet files work too.
    single = write_jsonl(tmp_path / "one.jsonl", [good] * 10)
    train, test = build_pair_datasets(DataConfig(dataset_mixer={str(single): 0.5}), encoder)
    assert len(train) == 5 and test is None
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([good] * 3), "test": Dataset.from_list([good])}).save_to_disk(tmp_path / "saved")
    Dataset.from_list([good] * 2).to_parquet(tmp_path / "pq" / "train.parquet")
    mixer = {str(tmp_path / "saved"): 1.0, str(tmp_path / "pq"): 1.0}
    train, test = build_pair_datasets(DataConfig(dataset_mixer=mixer), encoder)
    assert (len(train), len(test)) == (5, 1)

    bad = write_jsonl(tmp_path / "bad.jsonl", [good, good, {"prompt": "q", "chosen": "a"}])
    with pytest.raises(DataError, match=f"{bad}, row 2: missing 'rejected'"):
        build_pair_datasets(DataConfig(dataset_mixer={str(bad): 1.0}), encoder)
    with pytest.raises(DataError, match="dataset ./missing.jsonl does not exist"):
        build_pair_datasets(DataConfig(dataset_mixer={"./missing.jsonl": 1.0}), encoder)
