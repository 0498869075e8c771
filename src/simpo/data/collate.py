"""Batches of pairs: chosen and rejected sequences stacked into one padded batch for one forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass
class PairCollator:
    """`input_ids`/`attention_mask`/`labels` of shape [2B, T]: rows 0..B-1 chosen, B..2B-1 rejected.

    Labels are -100 on the prompt and on padding, decided by position, never by token id: with
    pad == eos (SmolLM2) masking by id would drop the end-of-turn token from every response.
    """

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        sequences = []
        for side in ("chosen_ids", "rejected_ids"):
            for feature in features:
                prompt, response = list(feature["prompt_ids"]), list(feature[side])
                sequences.append((prompt + response, [IGNORE] * len(prompt) + response))
        width = max(len(ids) for ids, _ in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(row_labels)
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
