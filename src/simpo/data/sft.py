"""Conversations for supervised fine-tuning: token ids and the assistant's tokens, packed rows, batches.

A row holds `messages`: an optional first system message, then user and assistant turns alternating
from the user (`rows.check_order`), at least one of them the assistant's. The conversation is
rendered once with the chat template (no generation prompt) and tokenized once, without the
tokenizer's special tokens. The assistant's tokens of turn i are what the template renders for
turn i after the generation prompt that precedes it: the answer and the template's end-of-turn
(`<|im_end|>\\n`, `<|eot_id|>`, `</s>\\n`), as the preference path's `template` rule scores a
response. They are found as token prefixes of the whole conversation (the tokens of the text up to
the generation prompt, and up to the end of the turn), so a token merged across a boundary belongs
to the earlier side. Only they carry loss.

Then, as TRL's packing does (`dataset_kwargs`): `add_special_tokens` puts the tokenizer's own BOS in
front when it adds one and the template wrote none (never a second BOS), and `append_concat_token`
appends EOS after the conversation, scored when the last turn is the assistant's. A conversation
longer than `max_seq_length` is cut to its first `max_seq_length` tokens and counted; one with no
assistant token left is dropped and counted, and so is one with an empty (or blank) assistant turn, as
`simpo train` drops a pair with an empty response.

Packing puts whole conversations, in order, into rows of at most `max_seq_length` tokens (a row
closes when the next conversation does not fit). A batch (`ConversationCollator`) names its scored
positions as every layout of `data.collate` does: `logit_index` (the flat position whose hidden
state predicts an assistant token), `target_ids` and `target_sequence` (the conversation's number in
the batch), plus transformers' `labels`/`shift_labels`, from which `Trainer` counts the scored
tokens of an optimizer step. Padding-free, a batch is one row of all its conversations back to
back, `position_ids` restarting at 0 for each (attention never crosses a conversation:
`ops.attention`); padded, one conversation per row.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import torch

from ..errors import DataError
from .chat import check_control_tokens, control_tokens, fold_system, render, template_shows_system
from .encode import common_prefix
from .rows import as_messages, check_order
from .sources import encode_rows, mixed_splits

logger = logging.getLogger("simpo")

IGNORE = -100  # transformers' label of a position without a target


def _adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of a text itself (Llama, Mistral and Gemma do; ChatML tokenizers do not)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos] and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]


@dataclass
class ConversationEncoder:
    tokenizer: object
    max_seq_length: int
    insert_empty_system: bool = True  # the official `auto_insert_empty_system_msg`
    add_special_tokens: bool = True
    append_concat_token: bool = True

    def __post_init__(self):
        self.shows_system = template_shows_system(self.tokenizer)
        self.control_tokens = control_tokens(self.tokenizer)
        self.bos = self.tokenizer.bos_token_id if self.add_special_tokens and _adds_bos(self.tokenizer) else None

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def read(self, row: dict, where: str) -> list[dict]:
        """The row's messages, checked; the system message as the template takes it."""
        value = row.get("messages")
        if value is None:
            hint = ("; it holds 'chosen' and 'rejected': preference pairs train with simpo train"
                    if "chosen" in row else "")
            raise DataError(f"{where}: missing 'messages' (an SFT row is a conversation: a 'messages' list of {{'role', 'content'}} turns){hint}")
        if not isinstance(value, list) or not value:
            raise DataError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} turns, got {value!r:.80}")
        turns = as_messages(value, "messages", where)
        check_order(turns, "messages", where)
        if not any(turn["role"] == "assistant" for turn in turns):
            raise DataError(f"{where}: 'messages' has no assistant turn, so nothing in it is trained on")
        check_control_tokens(self.control_tokens, turns, where)
        if not self.shows_system:
            try:
                return fold_system(turns)
            except ValueError as err:
                raise DataError(f"{where}: {err}") from None
        if self.insert_empty_system and turns[0]["role"] != "system":
            return [{"role": "system", "content": ""}, *turns]
        return turns

    def encode(self, row: dict, where: str) -> dict:
        """`input_ids`, `scored` (per token: an assistant token, which carries loss), their count
        `assistant_tokens`, `truncated`, and `drop` (the reason to drop the conversation, or "")."""
        turns = self.read(row, where)
        if any(turn["role"] == "assistant" and not turn["content"].strip() for turn in turns):
            # As `simpo train` drops a pair with an empty response: nothing to learn but to stop at once.
            return {"input_ids": [], "scored": [], "assistant_tokens": 0, "truncated": False, "drop": "empty answer"}
        try:
            text = render(self.tokenizer, turns)
            spans = [(render(self.tokenizer, turns[:i], add_generation_prompt=True), render(self.tokenizer, turns[: i + 1]))
                     for i, turn in enumerate(turns) if turn["role"] == "assistant"]
        except Exception as err:  # jinja's errors carry the template's own message
            raise DataError(f"{where}: the chat template cannot render this conversation: {err}") from None
        ids = self._ids(text)
        scored = [False] * len(ids)
        for before, through in spans:
            if not (text.startswith(before) and text.startswith(through)):
                raise DataError(f"{where}: the chat template renders a turn differently inside the whole conversation, so the "
                                "assistant's tokens cannot be told apart; fix the template (`chat_template:` in the recipe)")
            start, end = common_prefix(self._ids(before), ids), common_prefix(self._ids(through), ids)
            scored[start:end] = [True] * (end - start)
        if self.bos is not None and ids[:1] != [self.bos]:
            ids, scored = [self.bos, *ids], [False, *scored]
        if self.append_concat_token and self.tokenizer.eos_token_id is not None:
            ids, scored = [*ids, self.tokenizer.eos_token_id], [*scored, turns[-1]["role"] == "assistant"]
        truncated = len(ids) > self.max_seq_length
        ids, scored = ids[: self.max_seq_length], scored[: self.max_seq_length]
        scored[0] = False  # a first token has no predecessor to predict it
        if not any(scored):
            drop = "no assistant token within max_seq_length" if truncated else "no assistant token (the template renders none)"
            return {"input_ids": [], "scored": [], "assistant_tokens": 0, "truncated": truncated, "drop": drop}
        return {"input_ids": ids, "scored": scored, "assistant_tokens": sum(scored), "truncated": truncated, "drop": ""}


def _features():
    from datasets import Features, List, Value

    return Features({"input_ids": List(Value("int32")), "scored": List(Value("bool")), "assistant_tokens": Value("int32"),
                     "truncated": Value("bool"), "drop": Value("string")})


def pack(batch: dict, max_tokens: int) -> dict:
    """Whole conversations, in order, into rows of at most `max_tokens` tokens: `input_ids` and
    `scored` back to back, and `lengths`, the conversations' token counts."""
    rows: dict[str, list] = {"input_ids": [], "scored": [], "lengths": []}
    for ids, scored in zip(batch["input_ids"], batch["scored"]):
        if not rows["lengths"] or sum(rows["lengths"][-1]) + len(ids) > max_tokens:
            for column in rows:
                rows[column].append([])
        rows["input_ids"][-1] += ids
        rows["scored"][-1] += scored
        rows["lengths"][-1].append(len(ids))
    return rows


def _rows(encoded, max_tokens: int | None, role: str):
    """Packed rows (`max_tokens` set) or one conversation per row, with `lengths`."""
    if max_tokens is None:
        return encoded.map(lambda ids: {"lengths": [len(ids)]}, input_columns="input_ids", desc=f"{role} rows")
    return encoded.map(pack, batched=True, batch_size=1000, fn_kwargs={"max_tokens": max_tokens},
                       remove_columns=encoded.column_names, desc=f"packing {role}")


def _keep_and_report(role: str, encoded):
    drops = Counter(reason for reason in encoded["drop"] if reason)
    kept = encoded.filter(lambda reason: not reason, input_columns="drop")
    if not len(kept):
        raise DataError(f"every {role} conversation was dropped ({dict(drops)}): check the dataset and max_seq_length")
    counts = {"truncated": sum(kept["truncated"]), "assistant_tokens": sum(kept["assistant_tokens"])}
    return kept.remove_columns(["drop", "truncated", "assistant_tokens"]), drops, counts


def build_sft_datasets(config, encoder: ConversationEncoder, packing: bool, seed: int = 42):
    """(train, test) datasets of rows of conversations; test is None when no source has a test split.

    As the alignment-handbook's mixer: a `dataset_mixer` fraction below 1 takes a training source's
    first rows; test splits are taken whole; the training conversations are shuffled (`seed`)
    before they are packed."""
    from datasets import concatenate_datasets

    parts: dict[str, list] = {"train": [], "test": []}
    for role, label, rows in mixed_splits(config.dataset_mixer, config.dataset_splits):
        parts[role].append(encode_rows(label, rows, encoder.encode, _features(), config.preprocessing_num_workers))
    out = {}
    for role, encoded in parts.items():
        if not encoded:
            continue
        kept, drops, counts = _keep_and_report(role, concatenate_datasets(encoded))
        if role == "train":
            kept = kept.shuffle(seed=seed)
        rows = _rows(kept, encoder.max_seq_length if packing else None, role)
        tokens = sum(map(sum, rows["lengths"]))
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(drops.items())) or "none"
        logger.warning("%s: %d conversations in %d rows (%d tokens, %d of them assistant tokens, rows %.0f%% full); "
                       "cut to max_seq_length %d: %d; dropped: %s", role, len(kept), len(rows), tokens, counts["assistant_tokens"],
                       100 * tokens / (len(rows) * encoder.max_seq_length), encoder.max_seq_length, counts["truncated"], dropped)
        out[role] = rows
    if "test" not in out:
        logger.warning("no test split in %s: evaluation is off", list(config.dataset_mixer))
    return out["train"], out.get("test")


@dataclass
class ConversationCollator:
    pad_token_id: int
    padding_free: bool = True

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        conversations = []  # (token ids, scored flags) of each conversation of the batch
        for feature in features:
            start = 0
            for length in feature["lengths"]:
                conversations.append((list(feature["input_ids"][start : start + length]), list(feature["scored"][start : start + length])))
                start += length
        lengths = [len(ids) for ids, _ in conversations]
        if self.padding_free:
            starts = torch.tensor([0, *lengths[:-1]]).cumsum(0).tolist()
            batch = {
                "input_ids": torch.tensor([token for ids, _ in conversations for token in ids]).unsqueeze(0),
                "position_ids": torch.cat([torch.arange(length) for length in lengths]).unsqueeze(0),
            }
        else:
            width = max(lengths)
            starts = [row * width for row in range(len(conversations))]
            batch = {"input_ids": torch.full((len(conversations), width), self.pad_token_id, dtype=torch.long),
                     "attention_mask": torch.zeros((len(conversations), width), dtype=torch.long)}
            for row, (ids, _) in enumerate(conversations):
                batch["input_ids"][row, : len(ids)] = torch.tensor(ids)
                batch["attention_mask"][row, : len(ids)] = 1
        index, targets, owner = [], [], []
        for number, ((ids, scored), start) in enumerate(zip(conversations, starts)):
            where = torch.tensor(scored).nonzero().flatten()  # the scored tokens' places in the conversation (never 0)
            index.append(start + where - 1)
            targets.append(torch.tensor(ids)[where])
            owner.append(torch.full((len(where),), number))
        batch.update(logit_index=torch.cat(index), target_ids=torch.cat(targets), target_sequence=torch.cat(owner))
        shape = batch["input_ids"].shape
        shift_labels = torch.full((shape.numel(),), IGNORE, dtype=torch.long)
        shift_labels[batch["logit_index"]] = batch["target_ids"]
        labels = torch.full((shape.numel(),), IGNORE, dtype=torch.long)
        labels[batch["logit_index"] + 1] = batch["target_ids"]
        batch.update(shift_labels=shift_labels.view(shape), labels=labels.view(shape))
        return batch
