"""Preference losses as pure functions of per-sequence log-probabilities, and the dispatch by `loss_type`.

Notation (one entry per pair): `logp_w`, `logp_l` are the sums of log pi(y_t | x, y_<t) over the
chosen and rejected responses' tokens, `n_w`, `n_l` their token counts, `A = logp / n` the
length-normalised log-likelihood, and for reference methods `R = logp - ref_logp`, the log-ratio
of the whole response against the reference model. Every function returns the per-pair losses;
the batch loss is their mean (plus SimPO's optional batch-level SFT term, see `preference_loss`).

SimPO: Meng, Xia, Chen 2024, arXiv 2405.14734; its Table 3 lists the baselines implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import REFERENCE_LOSSES

SIMPO_FORMS = {"simpo": "sigmoid", "sigmoid": "sigmoid", "hinge": "hinge"}


def simpo_loss(chosen_logps, rejected_logps, beta: float, gamma_beta_ratio: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """SimPO (arXiv 2405.14734) from A_w = `chosen_logps`, A_l = `rejected_logps`, gamma = beta * ratio.

    sigmoid (alias simpo): -(1-ls) * logsigmoid(beta*(A_w - A_l) - gamma) - ls * logsigmoid(-(beta*(A_w - A_l) - gamma))
    hinge:                 relu(1 - beta*(A_w - A_l - gamma/beta))
    """
    form = SIMPO_FORMS.get(loss_type)
    margin = beta * (chosen_logps - rejected_logps - gamma_beta_ratio)
    if form == "sigmoid":
        return -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    if form == "hinge":
        return torch.relu(1 - margin)
    raise ValueError(f"unknown SimPO loss_type {loss_type!r}; use simpo, sigmoid or hinge")


def dpo_loss(chosen_ratio, rejected_ratio, beta: float):
    """DPO (Rafailov et al. 2023, arXiv 2305.18290): -logsigmoid(beta*(R_w - R_l))."""
    return -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))


def ipo_loss(chosen_ratio, rejected_ratio, tau: float):
    """IPO (Azar et al. 2023, arXiv 2310.12036): (R_w - R_l - 1/(2*tau))^2."""
    return (chosen_ratio - rejected_ratio - 1 / (2 * tau)) ** 2


def rdpo_loss(chosen_ratio, rejected_ratio, chosen_tokens, rejected_tokens, beta: float, alpha: float):
    """R-DPO (Park et al. 2024, arXiv 2403.19159): -logsigmoid(beta*(R_w - R_l) - (alpha*|y_w| - alpha*|y_l|))."""
    length_penalty = alpha * (chosen_tokens.to(chosen_ratio.dtype) - rejected_tokens.to(chosen_ratio.dtype))
    return -F.logsigmoid(beta * (chosen_ratio - rejected_ratio) - length_penalty)


def kto_pair_loss(chosen_ratio, rejected_ratio, beta: float, desirable_weight: float, undesirable_weight: float):
    """KTO on pairs (Ethayarajh et al. 2024, arXiv 2402.01306), as the value-function form lambda_y - v(x, y):

        lambda_w * (1 - sigmoid(beta*R_w - z_w)) + lambda_l * (1 - sigmoid(z_l - beta*R_l))

    The reference point z = beta * KL(pi || pi_ref) is estimated from the other responses of the batch
    (TRL's `kto_pair`, HALOs eq. 7): z_w = beta * max(0, mean(R_l)), z_l = beta * max(0, mean(R_w)),
    and, as in the KTO paper, not differentiated.
    """
    z_chosen = beta * rejected_ratio.detach().mean().clamp(min=0)
    z_rejected = beta * chosen_ratio.detach().mean().clamp(min=0)
    return (desirable_weight * (1 - torch.sigmoid(beta * chosen_ratio - z_chosen))
            + undesirable_weight * (1 - torch.sigmoid(z_rejected - beta * rejected_ratio)))


def cpo_loss(chosen_logps, rejected_logps, chosen_tokens, beta: float, nll_weight: float):
    """CPO (Xu et al. 2024, arXiv 2401.08417): -logsigmoid(beta*(logp_w - logp_l)) - lambda * logp_w / |y_w|.

    The NLL term is the chosen response's token mean, as in the CPO authors' implementation (TRL's
    `CPOTrainer`, `cpo_alpha`), so lambda = 1 weighs it like ordinary SFT.
    """
    return -F.logsigmoid(beta * (chosen_logps - rejected_logps)) - nll_weight * chosen_logps / chosen_tokens


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0 without cancellation (Maechler 2012); x is kept below -1e-12 so that a
    response of probability 1 gives a large finite log-odds instead of inf."""
    x = x.clamp(max=-1e-12)
    near_zero = x > -0.6931471805599453
    # Each branch sees only inputs it is exact on, so the unused one puts no inf/nan into the gradient.
    return torch.where(near_zero, torch.log(-torch.expm1(torch.where(near_zero, x, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near_zero, -1.0, x))))


def orpo_log_odds_ratio(chosen_average, rejected_average):
    """log(p_w/(1-p_w)) - log(p_l/(1-p_l)) with p = exp(A)."""
    return (chosen_average - _log1mexp(chosen_average)) - (rejected_average - _log1mexp(rejected_average))


def orpo_loss(chosen_average, rejected_average, orpo_lambda: float):
    """ORPO (Hong et al. 2024, arXiv 2403.07691): -A_w - lambda * logsigmoid(log(p_w/(1-p_w)) - log(p_l/(1-p_l))), p = exp(A)."""
    return -chosen_average - orpo_lambda * F.logsigmoid(orpo_log_odds_ratio(chosen_average, rejected_average))


def rrhf_loss(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, nll_weight: float):
    """RRHF (Yuan et al. 2023, arXiv 2304.05302): relu(A_l - A_w) - lambda * logp_w."""
    return torch.relu(rejected_logps / rejected_tokens - chosen_logps / chosen_tokens) - nll_weight * chosen_logps


def slic_hf_loss(chosen_logps, rejected_logps, delta: float, nll_weight: float):
    """SLiC-HF (Zhao et al. 2023, arXiv 2305.10425): relu(delta - logp_w + logp_l) - lambda * logp_w."""
    return torch.relu(delta - chosen_logps + rejected_logps) - nll_weight * chosen_logps


@dataclass
class PairLogps:
    """Per-pair sequence quantities: sums of response log-probs, token counts, reference sums."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None

    @classmethod
    def split(cls, sums, counts, ref_sums=None) -> "PairLogps":
        """From per-sequence values laid out as the collator stacks them: B chosen, then B rejected."""
        pairs = sums.shape[0] // 2
        ref = (ref_sums[:pairs].to(sums.dtype), ref_sums[pairs:].to(sums.dtype)) if ref_sums is not None else (None, None)
        return cls(sums[:pairs], sums[pairs:], counts[:pairs], counts[pairs:], *ref)


def preference_loss(args, logps: PairLogps) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The batch loss of `args.loss_type` with its hyperparameters from `args`, and per-pair metrics.

    Metrics follow TRL's trainers for each method: `rewards/chosen|rejected` is the method's implicit
    reward (SimPO: beta*A; DPO, IPO, KTO, R-DPO: beta*R with IPO's tau as beta; CPO: beta*logp;
    ORPO: lambda*A; RRHF: A; SLiC-HF: logp), `rewards/accuracies` counts chosen reward > rejected,
    `logps/*` are the log-probs the loss reads (A or logp), and methods with an NLL term log it as
    `nll_loss` (the chosen responses' token-mean NLL).
    """
    kind = args.loss_type
    w, l = logps.chosen, logps.rejected
    a_w, a_l = w / logps.chosen_tokens, l / logps.rejected_tokens
    extra: dict[str, torch.Tensor] = {}
    if kind in SIMPO_FORMS:
        losses = simpo_loss(a_w, a_l, args.beta, args.gamma_beta_ratio, kind, args.label_smoothing or 0.0)
        reward_w, reward_l, logp_w, logp_l = args.beta * a_w, args.beta * a_l, a_w, a_l
    elif kind in REFERENCE_LOSSES:
        if logps.ref_chosen is None:
            raise ValueError(f"loss_type {kind!r} needs reference log-probs and the batch has none")
        r_w, r_l = w - logps.ref_chosen, l - logps.ref_rejected
        if kind == "dpo":
            losses = dpo_loss(r_w, r_l, args.beta)
        elif kind == "ipo":
            losses = ipo_loss(r_w, r_l, args.tau)
        elif kind == "kto_pair":
            losses = kto_pair_loss(r_w, r_l, args.beta, args.desirable_weight, args.undesirable_weight)
        else:
            losses = rdpo_loss(r_w, r_l, logps.chosen_tokens, logps.rejected_tokens, args.beta, args.rdpo_alpha)
        scale = args.tau if kind == "ipo" else args.beta
        reward_w, reward_l, logp_w, logp_l = scale * r_w, scale * r_l, w, l
    elif kind == "cpo":
        losses = cpo_loss(w, l, logps.chosen_tokens, args.beta, args.nll_weight)
        reward_w, reward_l, logp_w, logp_l = args.beta * w, args.beta * l, w, l
    elif kind == "orpo":
        losses = orpo_loss(a_w, a_l, args.orpo_lambda)
        log_odds = orpo_log_odds_ratio(a_w, a_l).detach()
        extra = {"log_odds_ratio": F.logsigmoid(log_odds), "log_odds_chosen": log_odds}
        reward_w, reward_l, logp_w, logp_l = args.orpo_lambda * a_w, args.orpo_lambda * a_l, a_w, a_l
    elif kind == "rrhf":
        losses = rrhf_loss(w, l, logps.chosen_tokens, logps.rejected_tokens, args.nll_weight)
        reward_w, reward_l, logp_w, logp_l = a_w, a_l, a_w, a_l
    elif kind == "slic_hf":
        losses = slic_hf_loss(w, l, args.slic_delta, args.nll_weight)
        reward_w, reward_l, logp_w, logp_l = w, l, w, l
    else:
        raise ValueError(f"unknown loss_type {kind!r}")
    loss = losses.mean()
    if kind in SIMPO_FORMS and args.sft_weight:
        # The official SimPO trainer's SFT term: token-mean NLL over all chosen tokens of the batch.
        loss = loss + args.sft_weight * (-w.sum() / logps.chosen_tokens.sum())
    if kind in ("cpo", "orpo", "rrhf", "slic_hf"):
        extra["nll_loss"] = -a_w.detach()
    reward_w, reward_l = reward_w.detach(), reward_l.detach()
    metrics = {
        "rewards/chosen": reward_w,
        "rewards/rejected": reward_l,
        "rewards/accuracies": (reward_w > reward_l).float(),
        "rewards/margins": reward_w - reward_l,
        "logps/chosen": logp_w.detach(),
        "logps/rejected": logp_l.detach(),
        **extra,
    }
    return loss, metrics
