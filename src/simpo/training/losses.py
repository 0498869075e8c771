"""Preference losses as pure functions of per-sequence log-probabilities, and one entry per `loss_type`.

Notation (one entry per pair): `logp_w`, `logp_l` are the sums of log pi(y_t | x, y_<t) over the
chosen and rejected responses' tokens, `n_w`, `n_l` their token counts, `A = logp / n` the
length-normalised log-likelihood, and for reference methods `R = logp - ref_logp`, the log-ratio
of the whole response against the reference model. Every function returns the per-pair losses;
the batch loss is their mean (plus SimPO's optional batch-level SFT term). `LOSSES` holds, for each
`loss_type`, its function, its recipe keys with their defaults, whether it needs a reference model,
and the implicit reward its metrics report; `HYPERPARAMETER_LIMITS` the range of each key.

SimPO: Meng, Xia, Chen 2024, arXiv 2405.14734; its Table 3 lists the baselines implemented here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def simpo_loss(chosen_logps, rejected_logps, beta: float, gamma_beta_ratio: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """SimPO (arXiv 2405.14734) from A_w = `chosen_logps`, A_l = `rejected_logps`, gamma = beta * ratio.

    sigmoid (alias simpo): -(1-ls) * logsigmoid(beta*(A_w - A_l) - gamma) - ls * logsigmoid(-(beta*(A_w - A_l) - gamma))
    hinge:                 relu(1 - beta*(A_w - A_l - gamma/beta))
    """
    form = {"simpo": "sigmoid"}.get(loss_type, loss_type)
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
    and, as in the KTO paper, not differentiated. With several processes the batch is every process's
    micro-batch: the means are over all of them (`mean_over_processes`).
    """
    mean_chosen, mean_rejected = mean_over_processes(chosen_ratio, rejected_ratio)
    z_chosen = beta * mean_rejected.clamp(min=0)
    z_rejected = beta * mean_chosen.clamp(min=0)
    return (desirable_weight * (1 - torch.sigmoid(beta * chosen_ratio - z_chosen))
            + undesirable_weight * (1 - torch.sigmoid(z_rejected - beta * rejected_ratio)))


def mean_over_processes(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor's mean over its entries on every process (not differentiated; the tensors are equally long): one all-reduce of
    the sums and the count when torch.distributed runs with several processes, else the plain mean."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return tuple(value.detach().mean() for value in values)
    count = values[0].new_full((1,), values[0].numel(), dtype=torch.float64)
    totals = torch.cat([torch.stack([value.detach().double().sum() for value in values]), count])
    dist.all_reduce(totals)
    return tuple((total / totals[-1]).to(value.dtype) for total, value in zip(totals[:-1], values))


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
    def split(cls, sums, counts, ref_sums=None) -> PairLogps:
        """From per-sequence values laid out as the collator stacks them: B chosen, then B rejected."""
        pairs = sums.shape[0] // 2
        ref = (ref_sums[:pairs].to(sums.dtype), ref_sums[pairs:].to(sums.dtype)) if ref_sums is not None else (None, None)
        return cls(sums[:pairs], sums[pairs:], counts[:pairs], counts[pairs:], *ref)

    @property
    def averages(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A_w, A_l: the length-normalised log-likelihoods."""
        return self.chosen / self.chosen_tokens, self.rejected / self.rejected_tokens

    @property
    def ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """R_w, R_l: the log-ratios against the reference."""
        return self.chosen - self.ref_chosen, self.rejected - self.ref_rejected


@dataclass
class Terms:
    """What one loss computes for a batch: per-pair losses, the implicit rewards and the log-probs its
    metrics report, extra per-pair metrics, and a batch-level term added to the mean (SimPO's SFT)."""

    losses: torch.Tensor
    reward_chosen: torch.Tensor
    reward_rejected: torch.Tensor
    logps_chosen: torch.Tensor
    logps_rejected: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    batch_term: torch.Tensor | float = 0.0


def _simpo_terms(args, p: PairLogps) -> Terms:
    a_w, a_l = p.averages
    terms = Terms(simpo_loss(a_w, a_l, args.beta, args.gamma_beta_ratio, args.loss_type, args.label_smoothing or 0.0),
                  args.beta * a_w, args.beta * a_l, a_w, a_l)
    if args.sft_weight:
        # The official SimPO trainer's SFT term: token-mean NLL over all chosen tokens of the batch,
        # logged as `sft_loss` (each pair carries its batch's value, so averaging stays per pair).
        sft_loss = -p.chosen.sum() / p.chosen_tokens.sum()
        terms.batch_term = args.sft_weight * sft_loss
        terms.extra["sft_loss"] = sft_loss.detach().expand(a_w.shape[0])
    return terms


def _reference_terms(losses: torch.Tensor, scale: float, p: PairLogps) -> Terms:
    r_w, r_l = p.ratios
    return Terms(losses, scale * r_w, scale * r_l, p.chosen, p.rejected)


def _nll(p: PairLogps) -> dict[str, torch.Tensor]:
    """The chosen responses' token-mean NLL, logged by the losses that train on it."""
    return {"nll_loss": -p.averages[0].detach()}


def _orpo_terms(args, p: PairLogps) -> Terms:
    a_w, a_l = p.averages
    log_odds = orpo_log_odds_ratio(a_w, a_l).detach()
    extra = {"log_odds_ratio": F.logsigmoid(log_odds), "log_odds_chosen": log_odds, **_nll(p)}
    return Terms(orpo_loss(a_w, a_l, args.orpo_lambda), args.orpo_lambda * a_w, args.orpo_lambda * a_l, a_w, a_l, extra)


def _rrhf_terms(args, p: PairLogps) -> Terms:
    a_w, a_l = p.averages
    losses = rrhf_loss(p.chosen, p.rejected, p.chosen_tokens, p.rejected_tokens, args.nll_weight)
    return Terms(losses, a_w, a_l, a_w, a_l, _nll(p))


@dataclass(frozen=True)
class Loss:
    """One `loss_type`: its recipe keys with their defaults, whether it needs reference log-probs,
    and `terms(args, logps)`, which computes it with its implicit reward (TRL's convention for each
    method: SimPO beta*A; DPO, KTO, R-DPO beta*R; IPO tau*R; CPO beta*logp; ORPO lambda*A; RRHF A;
    SLiC-HF logp)."""

    keys: dict[str, float]
    terms: Callable[..., Terms]
    needs_reference: bool = False


# Defaults: SimPO's are the official trainer's; the baselines' lie within the SimPO paper's search
# ranges (arXiv 2405.14734, appendix).
_SIMPO = Loss({"beta": 2.0, "gamma_beta_ratio": 0.25, "label_smoothing": 0.0, "sft_weight": 0.0}, _simpo_terms)
LOSSES: dict[str, Loss] = {
    "simpo": _SIMPO,
    "sigmoid": _SIMPO,
    "hinge": Loss({"beta": 2.0, "gamma_beta_ratio": 0.25, "sft_weight": 0.0}, _simpo_terms),
    "dpo": Loss({"beta": 0.1}, lambda args, p: _reference_terms(dpo_loss(*p.ratios, args.beta), args.beta, p), needs_reference=True),
    "ipo": Loss({"tau": 0.1}, lambda args, p: _reference_terms(ipo_loss(*p.ratios, args.tau), args.tau, p), needs_reference=True),
    "cpo": Loss({"beta": 0.1, "nll_weight": 1.0}, lambda args, p: Terms(
        cpo_loss(p.chosen, p.rejected, p.chosen_tokens, args.beta, args.nll_weight),
        args.beta * p.chosen, args.beta * p.rejected, p.chosen, p.rejected, _nll(p))),
    "kto_pair": Loss(
        {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0},
        lambda args, p: _reference_terms(kto_pair_loss(*p.ratios, args.beta, args.desirable_weight, args.undesirable_weight), args.beta, p),
        needs_reference=True,
    ),
    "orpo": Loss({"orpo_lambda": 0.1}, _orpo_terms),
    "rdpo": Loss(
        {"beta": 0.1, "rdpo_alpha": 0.05},
        lambda args, p: _reference_terms(rdpo_loss(*p.ratios, p.chosen_tokens, p.rejected_tokens, args.beta, args.rdpo_alpha), args.beta, p),
        needs_reference=True,
    ),
    "rrhf": Loss({"nll_weight": 1.0}, _rrhf_terms),
    "slic_hf": Loss({"slic_delta": 1.0, "nll_weight": 1.0}, lambda args, p: Terms(
        slic_hf_loss(p.chosen, p.rejected, args.slic_delta, args.nll_weight), p.chosen, p.rejected, p.chosen, p.rejected, _nll(p))),
}

# The range of each loss key: (lowest, whether the lowest itself is allowed, highest excluded or None).
HYPERPARAMETER_LIMITS = {
    "beta": (0, False, None), "tau": (0, False, None), "gamma_beta_ratio": (0, True, None),
    "sft_weight": (0, True, None), "nll_weight": (0, True, None), "orpo_lambda": (0, True, None),
    "desirable_weight": (0, True, None), "undesirable_weight": (0, True, None),
    "rdpo_alpha": (0, True, None), "slic_delta": (0, True, None), "label_smoothing": (0, True, 0.5),
}


def preference_loss(args, logps: PairLogps) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The batch loss of `args.loss_type` with its hyperparameters from `args`, and per-pair metrics:
    `rewards/chosen|rejected` (the method's implicit reward), `rewards/accuracies` (chosen reward >
    rejected), `rewards/margins`, `logps/chosen|rejected` (the log-probs the loss reads: A or logp),
    the method's own extras (`nll_loss`, ORPO's log-odds, SimPO's `sft_loss` with an SFT weight), and
    `loss`: each pair's loss, its batch's batch-level term included (their mean is the batch loss)."""
    loss = LOSSES.get(args.loss_type)
    if loss is None:
        raise ValueError(f"unknown loss_type {args.loss_type!r}")
    if loss.needs_reference and logps.ref_chosen is None:
        raise ValueError(f"loss_type {args.loss_type!r} needs reference log-probs and the batch has none")
    terms = loss.terms(args, logps)
    reward_w, reward_l = terms.reward_chosen.detach(), terms.reward_rejected.detach()
    metrics = {
        "rewards/chosen": reward_w,
        "rewards/rejected": reward_l,
        "rewards/accuracies": (reward_w > reward_l).float(),
        "rewards/margins": reward_w - reward_l,
        "logps/chosen": terms.logps_chosen.detach(),
        "logps/rejected": terms.logps_rejected.detach(),
        **terms.extra,
        "loss": (terms.losses + terms.batch_term).detach(),
    }
    return terms.losses.mean() + terms.batch_term, metrics
