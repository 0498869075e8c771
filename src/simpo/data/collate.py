"""Batches of pairs for one forward pass: the B chosen sequences, then the B rejected ones.

Two layouts, equal in result:
- padded: `input_ids`/`attention_mask`/`labels` of shape [2B, T], padded on the right;
- packed (padding-free): one row of all 2B sequences back to back, `position_ids` restarting at 0
  for each, no attention mask; transformers then builds attention that never crosses a sequence
  (a block-diagonal causal mask for eager/SDPA, variable-length kernels for flash-attention).
Both carry `sequence_index`, the sequence each token belongs to (0..B-1 chosen, B..2B-1 rejected),
and, when the pairs carry precomputed reference log-probs (`ref_chosen_logps`, `ref_rejected_logps`),
`ref_logps` in the same order: [2B], chosen then rejected.

Labels are -100 on the prompt and on padding, decided by position, never by token id: with
pad == eos (SmolLM2) masking by id would drop the end-of-turn token from every response.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


@dataclass
class PairCollator:
    pad_token_id: int
    padding_free: bool = False

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        sequences = []
        for side in ("chosen_ids", "rejected_ids"):
            for feature in features:
                prompt, response = list(feature["prompt_ids"]), list(feature[side])
                sequences.append((prompt + response, [IGNORE] * len(prompt) + response))
        batch = self._packed(sequences) if self.padding_free else self._padded(sequences)
        if REF_COLUMNS[0] in features[0]:
            batch["ref_logps"] = torch.tensor([feature[column] for column in REF_COLUMNS for feature in features], dtype=torch.float32)
        return batch

    def _padded(self, sequences) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(row_labels)
            attention_mask[row, : len(ids)] = 1
        sequence_index = torch.arange(len(sequences)).unsqueeze(1).expand(-1, width).contiguous()
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "sequence_index": sequence_index}

    def _packed(self, sequences) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(ids) for ids, _ in sequences])
        starts = torch.cumsum(lengths, 0) - lengths
        sequence_index = torch.repeat_interleave(torch.arange(len(sequences)), lengths)
        position_ids = torch.arange(int(lengths.sum())) - starts[sequence_index]
        return {
            "input_ids": torch.tensor([token for ids, _ in sequences for token in ids]).unsqueeze(0),
            "position_ids": position_ids.unsqueeze(0),
            "labels": torch.tensor([label for _, row_labels in sequences for label in row_labels]).unsqueeze(0),
            "sequence_index": sequence_index.unsqueeze(0),
        }
