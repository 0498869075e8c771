"""Choosing each row's next token: greedy, or temperature then top-p as transformers' and vLLM's
samplers define them (no top-k), drawn by inverse CDF from one uniform number per row.

Top-p keeps a token when the mass of the more probable tokens is below `top_p`. Finding that set
does not need the whole vocabulary sorted: if the tokens of probability >= `floor` already hold
`top_p` of the mass, every token below the floor has at least that much mass above it, so the
nucleus lies among them; only those few candidates are sorted. A row whose candidates fall short
(a nearly flat distribution) is sorted in full. Sorting the whole vocabulary, or drawing with
`torch.multinomial` over it, for every row and step was more than a third of a CPU decode step.
"""

from __future__ import annotations

import torch


class Sampler:
    def __init__(self, temperature: float, top_p: float, floor: float = 1e-4):
        self.temperature, self.top_p, self.floor = temperature, top_p, floor

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def choose(self, logits: torch.Tensor, uniforms: torch.Tensor | None) -> torch.Tensor:
        """One token id per row of `logits` [rows, vocab]; `uniforms` [rows] (float64 in [0, 1)) are
        the rows' random draws, unused when greedy."""
        if self.greedy:
            return logits.argmax(-1)
        probs = logits.to(torch.float32, copy=True).div_(self.temperature).softmax(-1)
        uniforms = uniforms.to(probs.device)
        if self.top_p >= 1:
            cumulative = probs.cumsum(-1, dtype=torch.float64)  # as probs.double().cumsum(-1), without that copy
            picks = torch.searchsorted(cumulative, (uniforms * cumulative[:, -1]).unsqueeze(1), right=True).squeeze(1)
            return picks.clamp(max=probs.shape[-1] - 1)
        tokens, short = self._candidates(probs, uniforms)
        if short.any():
            tokens[short] = self._sorted(probs[short], uniforms[short])
        return tokens

    def _sorted(self, probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        values, ids = probs.sort(dim=-1, descending=True, stable=True)  # ties in vocabulary order
        values = values.double()
        within = values.cumsum(-1)
        keep = within - values < self.top_p
        kept_mass = (values * keep).sum(-1, keepdim=True)
        passed = (keep & (within <= uniforms.unsqueeze(1) * kept_mass)).sum(-1)
        return ids.gather(1, torch.minimum(passed, keep.sum(-1) - 1).unsqueeze(1)).squeeze(1)

    def _candidates(self, probs: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens drawn from each row's nucleus among its tokens of probability >= the floor, and
        which rows' candidates hold less than `top_p` of the mass (their token is not valid)."""
        count = probs.shape[0]
        rows, ids = (probs >= self.floor).nonzero(as_tuple=True)
        values = probs[rows, ids].double()
        order = (rows * 2 + (1 - values)).argsort(stable=True)  # by row, then most probable first, ties in vocabulary order
        rows, ids, values = rows[order], ids[order], values[order]
        counts = torch.bincount(rows, minlength=count)
        short = (counts == 0) | (torch.zeros(count, dtype=torch.float64, device=probs.device).index_add_(0, rows, values) < self.top_p)
        if short.all():
            return torch.zeros(count, dtype=torch.long, device=probs.device), short
        starts = counts.cumsum(0) - counts
        total = values.cumsum(0)
        within = total - (total - values)[starts.clamp(max=len(values) - 1)][rows]  # inclusive mass in its row
        keep = within - values < self.top_p
        kept_mass = torch.zeros(count, dtype=torch.float64, device=probs.device).index_add_(0, rows, values * keep)
        passed = torch.bincount(rows, weights=(keep & (within <= (uniforms * kept_mass)[rows])).double(), minlength=count).long()
        kept = torch.bincount(rows, weights=keep.double(), minlength=count).long()
        index = (starts + torch.minimum(passed, kept - 1)).clamp(0, len(ids) - 1)
        return ids[index], short
