"""Batches of pairs for one forward pass: the B chosen sequences, then the B rejected ones.

Three layouts, equal in result:
- padded: `input_ids`/`attention_mask` of shape [2B, T], padded on the right;
- packed (padding-free): one row of all 2B sequences back to back, `position_ids` restarting at 0
  for each, no attention mask; transformers then builds attention that never crosses a sequence
  (a block-diagonal causal mask for eager/SDPA, variable-length kernels for flash-attention);
- shared prompt (packed, for eager/SDPA under `attention.use_per_sequence_attention`): each pair's
  prompt once, then its longer response, then its shorter one, whose `position_ids` go on from the
  prompt's end. The row then reads prompt, first response, a drop in position, second response;
  the per-sequence attention gives the second response the prompt's keys and values and nothing of
  the first response. A pair's prompt goes through the model once instead of twice.

A response's first `chosen_unscored` / `rejected_unscored` tokens (when a pair carries them; see
`data.encode`) are prompt: read by the model, not scored. Every layout says which log-probs to take,
in the same terms: `logit_index`, the flat position
(row * width + column) whose hidden state predicts a response token; `target_ids`, that token; and
`target_sequence`, its sequence (0..B-1 chosen, B..2B-1 rejected). The last prompt token predicts
the first token of both responses. Response tokens are chosen by position, never by token id: with
pad == eos (SmolLM2) masking by id would drop the end-of-turn token from every response. When the
pairs carry precomputed reference log-probs (`ref_chosen_logps`, `ref_rejected_logps`), `ref_logps`
holds them in sequence order: [2B], chosen then rejected. When the pairs carry where they came from
(`source` and `row`, see `data.dataset`), `row_ids` lists them, one (source, row) per pair, for the
trainer's messages; the model never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
ROW_IDS = "row_ids"


@dataclass
class PairCollator:
    pad_token_id: int
    padding_free: bool = False
    share_prompt: bool = False

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pairs = [(list(f["prompt_ids"]), list(f["chosen_ids"]), list(f["rejected_ids"])) for f in features]
        sequences = [(pair[0], pair[side]) for side in (1, 2) for pair in pairs]  # (prompt, response), chosen then rejected
        unscored = [f.get(f"{side}_unscored", 0) for side in ("chosen", "rejected") for f in features]
        if self.padding_free and self.share_prompt:
            batch, positions = self._shared(pairs)
        elif self.padding_free:
            batch, positions = self._packed([prompt + response for prompt, response in sequences])
        else:
            batch, positions = self._padded([prompt + response for prompt, response in sequences])
        batch.update(_targets(sequences, unscored, positions))
        if REF_COLUMNS[0] in features[0]:
            batch["ref_logps"] = torch.tensor([feature[column] for column in REF_COLUMNS for feature in features], dtype=torch.float32)
        if "row" in features[0]:
            batch[ROW_IDS] = [(feature["source"], int(feature["row"])) for feature in features]
        return batch

    def _padded(self, sequences):
        width = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        positions = [row * width + torch.arange(len(ids)) for row, ids in enumerate(sequences)]
        return {"input_ids": input_ids, "attention_mask": attention_mask}, positions

    @staticmethod
    def _packed(sequences):
        positions, start = [], 0
        for ids in sequences:
            positions.append(torch.arange(start, start + len(ids)))
            start += len(ids)
        batch = {
            "input_ids": torch.tensor([token for ids in sequences for token in ids]).unsqueeze(0),
            "position_ids": torch.cat([torch.arange(len(ids)) for ids in sequences]).unsqueeze(0),
        }
        return batch, positions

    def _shared(self, pairs):
        tokens, position_ids, chosen, rejected = [], [], [], []
        for prompt, *responses in pairs:
            start, length = len(tokens), len(prompt)
            order = (0, 1) if len(responses[0]) >= len(responses[1]) else (1, 0)  # the longer response first
            tokens += prompt + responses[order[0]] + responses[order[1]]
            position_ids += range(length + len(responses[order[0]]))
            position_ids += range(length, length + len(responses[order[1]]))
            branches, offset = {}, start + length
            for side in order:
                branches[side] = torch.arange(offset, offset + len(responses[side]))
                offset += len(responses[side])
            prompt_positions = torch.arange(start, start + length)
            chosen.append(torch.cat([prompt_positions, branches[0]]))
            rejected.append(torch.cat([prompt_positions, branches[1]]))
        batch = {"input_ids": torch.tensor(tokens).unsqueeze(0), "position_ids": torch.tensor(position_ids).unsqueeze(0)}
        return batch, chosen + rejected


def _targets(sequences: list[tuple[list[int], list[int]]], unscored: list[int], positions: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """For each scored token (a response's, past its `unscored` leading tokens): the flat position that
    predicts it (its predecessor's), and its sequence."""
    index, targets, owner = [], [], []
    for number, ((prompt, response), skip, where) in enumerate(zip(sequences, unscored, positions)):
        first = max(len(prompt) + skip, 1)  # a token with no predecessor has no log-prob
        if first >= len(prompt) + len(response):
            raise ValueError(f"sequence {number} of the batch has no response token to score (prompt {len(prompt)}, response {len(response)} tokens)")
        index.append(where[first - 1 : -1])
        targets.append(torch.tensor(response[first - len(prompt) :]))
        owner.append(torch.full((len(where) - first,), number))
    return {"logit_index": torch.cat(index), "target_ids": torch.cat(targets), "target_sequence": torch.cat(owner)}
