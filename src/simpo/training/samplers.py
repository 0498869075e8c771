"""The training order of `train_sampling_strategy: group_by_length`, drawn from the seed and the epoch alone.

transformers' `LengthGroupedSampler` draws each epoch's permutation from torch's global random state.
With several processes every process draws the order and accelerate deals its batches out among
them, so all must draw the same one; but whatever random ran before (dropout, LoRA's dropout) ran on
micro-batches of other sizes on each process and left each global state elsewhere: from the second
epoch on the processes dealt out different orders, some rows trained twice and others never. A
resumed run drew another order than the run it continues, too. Here each epoch's permutation comes
from a generator seeded with seed + epoch, as accelerate's `SeedableRandomSampler` has it for the
`random` strategy; the grouping by length is transformers' own.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose permutation for epoch e is drawn from a generator seeded with seed + e."""

    def __init__(self, sampler: LengthGroupedSampler, seed: int):
        super().__init__(sampler.batch_size, lengths=sampler.lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the trainer (accelerate's data loader) calls it as each epoch starts
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def seeded_by_epoch(sampler, seed: int):
    """`sampler`, or for transformers' `LengthGroupedSampler` one whose order comes from seed + epoch."""
    if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler, EpochSeededLengthGroupedSampler):
        return EpochSeededLengthGroupedSampler(sampler, seed)
    return sampler
