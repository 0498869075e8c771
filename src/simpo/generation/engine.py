"""Continuous batching for the transformers backend: a decode batch kept full from a queue of requests.

A request is a prompt and one row per sample of it (each with its own seed). The batch holds up to
`max_rows` rows. When a sixteenth of its rows have finished (a stop token, or `max_new_tokens`),
they leave, and waiting requests take their places: their prompts are prefilled together, each
once for all of its rows, and their keys and values join the batch's cache. So a batch never
carries finished rows to the length of its longest answer, and the matmuls of a step keep their
width until the queue runs dry.

Layout: every row of the cache ends at the same column (the cache's length); a row's tokens are
contiguous, ending there, and the columns left of them are padding hidden by the attention mask.
Each row has its own positions, so its attention, rotary embedding and sliding window are what
they would be alone. Long answers make the cache the largest thing a step reads, so nothing moves
it wholesale where a view will do: the columns no unfinished row needs are dropped every step (a
view), finished rows leave by the last unfinished rows moving into their places (only those rows
are copied), new rows take finished rows' places, and a batch's buffers are made with room for
`max_new_tokens`. Only a refill that does not fit finished rows' places re-aligns the whole cache.

Every row draws its tokens from its own random stream (`torch.Generator(seed)`), one uniform number
a step, so a sample depends on its prompt, seed and settings, not on the rows that shared its batch
(up to the float rounding of batched matmuls, which can differ with the batch's size).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..ops.decode_attention import use_decode_attention
from .kv_cache import growing_cache
from .packed_linears import packed_linears
from .sampling import Sampler


@dataclass
class Request:
    prompt: list[int]
    seeds: list[int | None]  # one row per sample, each drawing from its seed (None when greedy)


class Engine:
    def __init__(self, model, sampler: Sampler, stop_ids: list[int], pad_id: int, max_new_tokens: int, max_rows: int):
        use_decode_attention(model)
        self.model, self.sampler, self.pad_id = model.eval(), sampler, pad_id
        self.max_new_tokens, self.max_rows = max_new_tokens, max_rows
        self.device = model.device
        self.stops = torch.tensor(stop_ids, device=self.device)

    def run(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[list[int]]]]:
        """(request index, the new tokens of each of its rows) as each request finishes; a row's
        tokens end with its stop token, or stop at `max_new_tokens`."""
        with torch.inference_mode(), packed_linears(self.model, self.max_rows):
            yield from self._run(requests)

    def _run(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[list[int]]]]:
        queue = deque(range(len(requests)))
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        # The batch: its cache, and per row its (request, sample), random stream, first cache
        # column, next position, tokens so far, whether it has finished, and its next logits.
        self.cache, self.owners, self.streams = None, [], []
        self.start = self.positions = self.lengths = empty
        self.finished = empty.bool()
        self.logits = None
        outputs: dict[int, list[list[int]]] = {}
        unfinished: dict[int, int] = {}  # rows still decoding, per request
        while True:
            done = int(self.finished.sum())
            if not self.owners or done * 16 >= len(self.owners):
                for index in self._refill(requests, queue):
                    outputs[index] = [[] for _ in requests[index].seeds]
                    unfinished[index] = len(requests[index].seeds)
            if not self.owners:
                return
            uniforms = None
            if not self.sampler.greedy:
                uniforms = torch.stack([torch.rand((), generator=stream, dtype=torch.float64) for stream in self.streams])
            tokens = self.sampler.choose(self.logits, uniforms).masked_fill(self.finished, self.pad_id)
            self.lengths = self.lengths + (~self.finished)
            ending = ~self.finished & (torch.isin(tokens, self.stops) | (self.lengths >= self.max_new_tokens))
            for (index, sample), token, was_done in zip(self.owners, tokens.tolist(), self.finished.tolist()):
                if not was_done:
                    outputs[index][sample].append(token)
            self.finished |= ending
            for row in ending.nonzero().flatten().tolist():
                index = self.owners[row][0]
                unfinished[index] -= 1
                if not unfinished[index]:
                    del unfinished[index]
                    yield index, outputs.pop(index)
            if bool(self.finished.all()):
                if not queue:
                    return
                continue  # the next round refills the batch
            self._make_room()
            mask = torch.arange(self.cache.get_seq_length() + 1, device=self.device) >= self.start.unsqueeze(1)
            self.logits = self.model(input_ids=tokens.unsqueeze(1), attention_mask=mask.long(), position_ids=self.positions.unsqueeze(1),
                                     cache=self.cache, use_cache=True).logits[:, -1]
            self.positions = self.positions + 1

    def _refill(self, requests: Sequence[Request], queue: deque) -> list[int]:
        """Admit waiting requests into finished rows' places (and empty ones, up to `max_rows`), or,
        when none wait, drop the finished rows; the admitted requests."""
        free = self.finished.nonzero().flatten().tolist()
        room = len(free) + self.max_rows - len(self.owners)
        admitted, rows = [], 0
        while queue and (rows + len(requests[queue[0]].seeds) <= room or not (admitted or len(self.owners))):
            rows += len(requests[queue[0]].seeds)
            admitted.append(queue.popleft())
        if not admitted:
            if free:
                self._drop_finished()
            return admitted
        incoming = self._prefill([requests[i] for i in admitted], admitted)
        cache, logits, start, positions, owners, streams = incoming
        width = self.cache.get_seq_length() if self.cache is not None else 0
        wider = cache.get_seq_length() - width
        if rows <= len(free) and 0 < wider <= self.cache.layers[0].first:  # the columns dropped last hold the prompts
            for layer in self.cache.layers:
                layer.drop_columns(-wider)
            self.start, width = self.start + wider, width + wider
        if rows <= len(free) and cache.get_seq_length() <= width:  # into finished rows' places, nothing else moves
            slots = torch.tensor(free[:rows], device=self.device)
            for layer, joining in zip(self.cache.layers, cache.layers):
                layer.place(slots, joining.keys, joining.values)
            for slot, owner, stream in zip(free, owners, streams):
                self.owners[slot], self.streams[slot] = owner, stream
            self.start[slots] = start + width - cache.get_seq_length()
            self.positions[slots], self.lengths[slots], self.finished[slots] = positions, 0, False
            self.logits[slots] = logits.to(self.logits.dtype)
        else:
            self._rebuild(incoming)
        return admitted

    def _make_room(self) -> None:
        """Drop the columns left of every unfinished row (a view: attention reads no column that no
        row needs); when the buffers are full, the next step's keys grow them (`GrowingLayer`)."""
        drop = int(self.start[~self.finished].min())
        if drop:
            for layer in self.cache.layers:
                layer.drop_columns(drop)
            self.start = (self.start - drop).clamp(min=0)  # (a finished row's stale columns may go)

    def _drop_finished(self) -> None:
        """The finished rows leave: the last unfinished rows move into their places, so that only
        the moved rows' keys and values are copied."""
        finished = self.finished.tolist()
        count = finished.count(False)
        targets = [row for row in range(count) if finished[row]]
        sources = [row for row in range(count, len(finished)) if not finished[row]]
        for layer in self.cache.layers:
            layer.keep_rows(count, torch.tensor(sources, device=self.device), torch.tensor(targets, device=self.device))
        order = list(range(count))
        for target, source in zip(targets, sources):
            order[target] = source
        self.owners = [self.owners[i] for i in order]
        self.streams = [self.streams[i] for i in order]
        index = torch.tensor(order, dtype=torch.long, device=self.device)
        self.start, self.positions, self.lengths = self.start[index], self.positions[index], self.lengths[index]
        self.finished, self.logits = self.finished[index], self.logits[index]

    def _rebuild(self, incoming) -> None:
        """A new cache: the unfinished rows without the columns none of them needs, then the rows of
        `incoming` (from `_prefill`), all ending at one column."""
        keep = (~self.finished).nonzero().flatten()
        width = self.cache.get_seq_length() if self.cache is not None else 0
        drop = int(self.start[keep].min()) if len(keep) else width
        self.owners = [self.owners[i] for i in keep.tolist()]
        self.streams = [self.streams[i] for i in keep.tolist()]
        self.start, self.positions = self.start[keep] - drop, self.positions[keep]
        self.lengths, self.finished = self.lengths[keep], self.finished[keep]
        self.logits = self.logits[keep] if self.logits is not None else None
        cache, logits, start, positions, owners, streams = incoming
        if not len(keep):
            self.cache = cache
        else:
            new_width = max(width - drop, cache.get_seq_length())
            for layer, joining in zip(self.cache.layers, cache.layers):
                layer.splice(keep, drop, joining, new_width)
            self.start = self.start + new_width - (width - drop)
            start = start + new_width - cache.get_seq_length()
        self.owners += owners
        self.streams += streams
        self.start, self.positions = torch.cat([self.start, start]), torch.cat([self.positions, positions])
        self.lengths = torch.cat([self.lengths, torch.zeros_like(positions)])
        self.finished = torch.cat([self.finished, torch.zeros_like(positions, dtype=torch.bool)])
        self.logits = logits if self.logits is None else torch.cat([self.logits, logits])

    def _prefill(self, batch: list[Request], numbers: list[int]):
        """The prompts of `batch` in one forward pass, left-padded, each expanded to one row per
        sample: the cache, the next-token logits, first cache columns, next positions, owners and
        random streams of those rows."""
        lengths = torch.tensor([len(request.prompt) for request in batch], device=self.device)
        width = int(lengths.max())
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        for i, request in enumerate(batch):
            input_ids[i, width - len(request.prompt):] = torch.tensor(request.prompt)
        input_ids = input_ids.to(self.device)
        attention_mask = torch.arange(width, device=self.device) >= (width - lengths).unsqueeze(1)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        cache = growing_cache(self.model.config, every_layer=True, spare=self.max_new_tokens)  # as the batch's cache, it never grows
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask.long(), position_ids=positions, cache=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1]
        expand = torch.tensor([i for i, request in enumerate(batch) for _ in request.seeds], device=self.device)
        if len(expand) != len(batch):
            cache.batch_select_indices(expand)
        owners = [(number, sample) for number, request in zip(numbers, batch) for sample in range(len(request.seeds))]
        streams = [None if seed is None else torch.Generator().manual_seed(seed) for request in batch for seed in request.seeds]
        return cache, logits[expand], (width - lengths)[expand], lengths[expand], owners, streams
