"""Temperature and top-p sampling as transformers' and vLLM's samplers define it (no top-k)."""

from __future__ import annotations

import torch


class NucleusSampling:
    """Temperature, then top-p (keep the most probable tokens until their mass reaches `top_p`),
    as transformers' and vLLM's samplers define it, without sorting the whole vocabulary: the
    `candidates` most probable tokens of a row hold its nucleus unless their mass is below `top_p`,
    and only such rows are sorted in full: sorting the whole vocabulary for every row and step
    dominates a CPU decode step."""

    def __init__(self, temperature: float, top_p: float, candidates: int = 256):
        self.temperature, self.top_p, self.candidates = temperature, top_p, candidates

    def _keep(self, probs: torch.Tensor, k: int) -> torch.Tensor:
        top, ids = probs.topk(k, dim=-1)  # descending
        before = top.cumsum(-1) - top  # the mass of the more probable tokens
        return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, ids, before < self.top_p), top.sum(-1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        if self.top_p >= 1:
            return scores
        probs = scores.float().softmax(-1)
        keep, mass = self._keep(probs, min(self.candidates, probs.shape[-1]))
        short = mass < self.top_p
        if short.any():
            keep[short] = self._keep(probs[short], probs.shape[-1])[0]
        return scores.masked_fill(~keep, float("-inf"))
