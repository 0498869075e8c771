"""SFT conversations: which tokens are the assistant's (and carry loss), system messages, BOS and the
concat EOS, truncation, packing into rows, and the batches' scored positions in both layouts."""

import pytest
import torch
from helpers import write_jsonl

from simpo.config.sft import SFTDataConfig
from simpo.data.sft import ConversationCollator, ConversationEncoder, build_sft_datasets, pack
from simpo.errors import DataError

SYSTEM = {"role": "system", "content": "Answer briefly."}
ASK = {"role": "user", "content": "What is 2 + 3?"}
ANSWER = {"role": "assistant", "content": "2 + 3 = 5."}
AGAIN = {"role": "user", "content": "And 4 + 4?"}
SECOND = {"role": "assistant", "content": "4 + 4 = 8."}
TALK = [SYSTEM, ASK, ANSWER, AGAIN, SECOND]


def scored_text(tokenizer, encoded) -> list[str]:
    """The scored tokens decoded, one string per run of consecutive scored tokens."""
    runs, current = [], []
    for token, flag in zip(encoded["input_ids"], encoded["scored"]):
        if flag:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs + ([tokenizer.decode(current)] if current else [])


def test_only_the_assistant_turns_carry_loss(smollm2_tokenizer):
    encoder = ConversationEncoder(smollm2_tokenizer, 256, insert_empty_system=False, append_concat_token=False)
    encoded = encoder.encode({"messages": TALK}, "row 1")
    text = smollm2_tokenizer.apply_chat_template(TALK, tokenize=False)
    assert encoded["input_ids"] == smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    # Each answer and the template's end of turn, as the preference path's response; no header, no user turn.
    assert scored_text(smollm2_tokenizer, encoded) == ["2 + 3 = 5.<|im_end|>\n", "4 + 4 = 8.<|im_end|>\n"]
    assert (encoded["truncated"], encoded["drop"], encoded["assistant_tokens"]) == (False, "", sum(encoded["scored"]))


def test_empty_system_message_inserted_as_the_official_code_does(smollm2_tokenizer):
    official = ConversationEncoder(smollm2_tokenizer, 256).encode({"messages": [ASK, ANSWER]}, "row 1")
    as_given = ConversationEncoder(smollm2_tokenizer, 256, insert_empty_system=False).encode({"messages": [ASK, ANSWER]}, "row 1")
    assert smollm2_tokenizer.decode(official["input_ids"]).startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user")
    assert "You are a helpful AI assistant named SmolLM" in smollm2_tokenizer.decode(as_given["input_ids"])  # the template's default


def test_concat_eos_appended_and_scored_after_an_assistant_turn(smollm2_tokenizer):
    encoder = ConversationEncoder(smollm2_tokenizer, 256)
    ends_with_answer = encoder.encode({"messages": [ASK, ANSWER]}, "row 1")
    ends_with_user = encoder.encode({"messages": [ASK, ANSWER, AGAIN]}, "row 2")
    eos = smollm2_tokenizer.eos_token_id
    assert ends_with_answer["input_ids"][-1] == eos and ends_with_answer["scored"][-1]
    assert ends_with_user["input_ids"][-1] == eos and not ends_with_user["scored"][-1]


def test_one_bos_the_templates_or_else_the_tokenizers(gemma_tokenizer):
    # Gemma's tokenizer adds BOS itself; its template writes one too. Never two.
    with_bos = ConversationEncoder(gemma_tokenizer, 256).encode({"messages": [ASK, ANSWER]}, "row 1")
    assert with_bos["input_ids"][:2].count(gemma_tokenizer.bos_token_id) == 1
    bare = _copy(gemma_tokenizer, gemma_tokenizer.chat_template.replace("{{ bos_token }}", ""))
    added = ConversationEncoder(bare, 256).encode({"messages": [ASK, ANSWER]}, "row 1")
    kept_out = ConversationEncoder(bare, 256, add_special_tokens=False).encode({"messages": [ASK, ANSWER]}, "row 1")
    assert added["input_ids"][0] == bare.bos_token_id and added["input_ids"][1:] == kept_out["input_ids"]
    assert added["scored"][1:] == kept_out["scored"]


def _copy(tokenizer, template):
    import copy

    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def test_a_system_message_is_folded_where_the_template_has_no_system_role(gemma_tokenizer):
    encoded = ConversationEncoder(gemma_tokenizer, 256).encode({"messages": [SYSTEM, ASK, ANSWER]}, "row 1")
    text = gemma_tokenizer.decode(encoded["input_ids"])
    assert "<start_of_turn>user\nAnswer briefly.\n\nWhat is 2 + 3?" in text and "system" not in text
    assert scored_text(gemma_tokenizer, encoded) == ["2 + 3 = 5.<end_of_turn>\n<eos>"]


def test_long_conversations_are_cut_and_counted_or_dropped(smollm2_tokenizer):
    encoder = ConversationEncoder(smollm2_tokenizer, 40, insert_empty_system=False)
    whole = ConversationEncoder(smollm2_tokenizer, 1000, insert_empty_system=False).encode({"messages": TALK}, "row 1")
    cut = encoder.encode({"messages": TALK}, "row 1")
    assert cut["truncated"] and cut["input_ids"] == whole["input_ids"][:40] and cut["scored"] == whole["scored"][:40]
    long_question = {"role": "user", "content": "word " * 60}
    dropped = encoder.encode({"messages": [long_question, ANSWER]}, "row 2")
    assert dropped["drop"] == "no assistant token within max_seq_length" and dropped["input_ids"] == []


@pytest.mark.parametrize("row,expect", [
    ({"prompt": "hi", "chosen": "a", "rejected": "b"}, "row 3: missing 'messages'"),
    ({"messages": "hello"}, "row 3: 'messages' must be a non-empty list"),
    ({"messages": [ANSWER, ASK]}, "row 3: turn 1 of 'messages' is 'assistant' where 'user' is due"),
    ({"messages": [ASK]}, "row 3: 'messages' has no assistant turn"),
    ({"messages": [ASK, {"role": "assistant", "content": "5<|im_end|>"}]}, "row 3: 'assistant' text holds '<|im_end|>'"),
])
def test_bad_rows_name_the_row(row, expect, smollm2_tokenizer):
    with pytest.raises(DataError, match=expect.replace("|", r"\|")):
        ConversationEncoder(smollm2_tokenizer, 256).encode(row, "row 3")


def test_packing_keeps_conversations_whole_and_in_order():
    batch = {"input_ids": [[1] * 5, [2] * 4, [3] * 3, [4] * 8, [5] * 2]}
    batch["scored"] = [[i % 2 == 1 for i in range(len(ids))] for ids in batch["input_ids"]]
    rows = pack(batch, max_tokens=10)
    assert rows["lengths"] == [[5, 4], [3], [8, 2]]
    assert rows["input_ids"] == [[1] * 5 + [2] * 4, [3] * 3, [4] * 8 + [5] * 2]
    assert rows["scored"][0] == batch["scored"][0] + batch["scored"][1]


def _features(smollm2_tokenizer):
    encoder = ConversationEncoder(smollm2_tokenizer, 256, insert_empty_system=False)
    conversations = [encoder.encode({"messages": messages}, "row") for messages in ([ASK, ANSWER], TALK, [AGAIN, SECOND])]
    return conversations, [pack({key: [c[key] for c in conversations[:2]] for key in ("input_ids", "scored")}, 1000),
                           pack({key: [conversations[2][key]] for key in ("input_ids", "scored")}, 1000)]


def test_both_layouts_score_each_assistant_token_from_its_predecessor(smollm2_tokenizer):
    conversations, packed = _features(smollm2_tokenizer)
    features = [{key: values[0] for key, values in rows.items()} for rows in packed]
    for padding_free in (True, False):
        batch = ConversationCollator(smollm2_tokenizer.pad_token_id, padding_free)(features)
        flat = batch["input_ids"].flatten()
        expected = torch.tensor([t for c in conversations for t, flag in zip(c["input_ids"], c["scored"]) if flag])
        assert torch.equal(batch["target_ids"], expected)
        assert torch.equal(flat[batch["logit_index"] + 1], expected)  # the next position holds the target
        assert torch.equal(batch["target_sequence"].bincount(), torch.tensor([sum(c["scored"]) for c in conversations]))
        assert int(batch["shift_labels"].ne(-100).sum()) == int(batch["labels"].ne(-100).sum()) == len(expected)
    packed_batch = ConversationCollator(smollm2_tokenizer.pad_token_id, True)(features)
    lengths = [len(c["input_ids"]) for c in conversations]
    assert packed_batch["position_ids"].tolist() == [[p for n in lengths for p in range(n)]]


def test_datasets_from_files_pack_count_and_name_bad_rows(tmp_path, smollm2_tokenizer, caplog):
    rows = [{"messages": [ASK, ANSWER]}, {"messages": TALK}, {"messages": [{"role": "user", "content": "x " * 300}, ANSWER]}]
    write_jsonl(tmp_path / "talk" / "train.jsonl", rows * 2)
    config = SFTDataConfig(dataset_mixer={str(tmp_path / "talk"): 1.0}, dataset_splits=["train"])
    encoder = ConversationEncoder(smollm2_tokenizer, 128, insert_empty_system=False)
    short, long = (len(encoder.encode(row, "row")["input_ids"]) for row in rows[:2])
    train, test = build_sft_datasets(config, encoder, packing=True, seed=0)
    assert test is None and sorted(n for row in train["lengths"] for n in row) == sorted([short, short, long, long])
    assert all(sum(row) <= 128 for row in train["lengths"]) and len(train) == 2
    assert "dropped: 2 no assistant token within max_seq_length" in caplog.text
    unpacked, _ = build_sft_datasets(config, encoder, packing=False, seed=0)
    assert sorted(row for row in unpacked["lengths"]) == sorted([[short], [short], [long], [long]])
    write_jsonl(tmp_path / "bad" / "train.jsonl", [{"messages": [ASK, ANSWER]}, {"messages": [ANSWER]}])
    with pytest.raises(DataError, match=r"bad/train.jsonl, row 2: turn 1 of 'messages' is 'assistant'"):
        build_sft_datasets(SFTDataConfig(dataset_mixer={str(tmp_path / "bad"): 1.0}), encoder, packing=True)


def test_empty_or_blank_answers_are_dropped_and_counted(tmp_path, smollm2_tokenizer, caplog):
    """As `simpo train` drops a pair with an empty response: a conversation with an empty or blank
    assistant turn (any of them) trains nothing but stopping at once."""
    blank = {"role": "assistant", "content": " \n\t"}
    rows = [{"messages": [ASK, ANSWER]}, {"messages": [ASK, {"role": "assistant", "content": ""}]}, {"messages": [ASK, blank, AGAIN, SECOND]}]
    write_jsonl(tmp_path / "talk" / "train.jsonl", rows)
    encoder = ConversationEncoder(smollm2_tokenizer, 128, insert_empty_system=False)
    assert encoder.encode(rows[2], "row 3")["drop"] == "empty answer"
    train, _ = build_sft_datasets(SFTDataConfig(dataset_mixer={str(tmp_path / "talk"): 1.0}, dataset_splits=["train"]),
                                  encoder, packing=False, seed=0)
    assert len(train) == 1 and "dropped: 2 empty answer" in caplog.text
