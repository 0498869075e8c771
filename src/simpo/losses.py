"""Preference losses as pure functions of per-sequence log-probabilities.

SimPO (Meng, Xia, Chen 2024, arXiv 2405.14734) uses the length-normalised log-likelihood
A(y) = (1/|y|) sum_t log pi(y_t | x, y_<t) as an implicit reward, with no reference model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def simpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    beta: float,
    gamma_beta_ratio: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair SimPO loss from A_w = `chosen_logps` and A_l = `rejected_logps`, gamma = beta * ratio.

    sigmoid: -(1-ls) * logsigmoid(beta*(A_w - A_l) - gamma) - ls * logsigmoid(-(beta*(A_w - A_l) - gamma))
    hinge:   relu(1 - beta*(A_w - A_l - gamma/beta))
    """
    margin = beta * (chosen_logps - rejected_logps - gamma_beta_ratio)
    if loss_type == "sigmoid":
        return -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    if loss_type == "hinge":
        return torch.relu(1 - margin)
    raise ValueError(f"unknown SimPO loss_type {loss_type!r}; use sigmoid or hinge")
