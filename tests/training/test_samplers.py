"""group_by_length's order: a function of the seed and the epoch, whatever torch's global random state."""

import torch
from torch.utils.data import SequentialSampler
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from simpo.training.samplers import seeded_by_epoch

LENGTHS = [5, 9, 3, 7, 7, 2, 8, 4, 6, 1, 9, 5]


def test_each_epoch_order_comes_from_seed_plus_epoch():
    sampler = seeded_by_epoch(LengthGroupedSampler(2, lengths=LENGTHS), seed=11)
    orders = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        torch.rand(100)  # as dropout would: the global state moves, the order does not
        orders[epoch] = list(sampler)
        assert orders[epoch] == get_length_grouped_indices(LENGTHS, 2, generator=torch.Generator().manual_seed(11 + epoch))
    assert orders[0] != orders[1] and sorted(orders[1]) == list(range(len(LENGTHS)))
    # Another process, or a run resumed in epoch 1, builds its own sampler: the same order.
    other = seeded_by_epoch(LengthGroupedSampler(2, lengths=LENGTHS), seed=11)
    torch.rand(7)
    other.set_epoch(1)
    assert list(other) == orders[1]


def test_other_samplers_are_left_as_they_are():
    sequential = SequentialSampler(LENGTHS)
    assert seeded_by_epoch(sequential, seed=11) is sequential
