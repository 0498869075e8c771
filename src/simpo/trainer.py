"""`SimPOTrainer`: a `transformers.Trainer` that computes the SimPO loss and its metrics.

One forward pass per micro-batch covers the chosen and the rejected responses together (the
collator stacks them). Metrics are the official trainer's, averaged over every pair on every
process: `rewards/chosen = beta*A_w`, `rewards/rejected = beta*A_l`, `rewards/accuracies =
mean(A_w > A_l)`, `rewards/margins`, `logps/chosen = A_w`, `logps/rejected = A_l`, prefixed with
`eval_` under evaluation.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from transformers import Trainer

from .attention import use_per_sequence_attention
from .config import SimPOConfig
from .data.collate import PairCollator
from .logprobs import response_logps
from .losses import simpo_loss


def disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


class SimPOTrainer(Trainer):
    def __init__(self, model, args: SimPOConfig, processing_class, train_dataset, eval_dataset=None, **kwargs):
        if args.disable_dropout:
            disable_dropout(model)
        if args.padding_free:
            use_per_sequence_attention(model)
        kwargs.setdefault("data_collator", PairCollator(processing_class.pad_token_id, args.padding_free))
        super().__init__(
            model=model,
            args=args,
            processing_class=processing_class,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            **kwargs,
        )
        # Our loss is a mean over the micro-batch's pairs, so Trainer must divide it by the number
        # of accumulation steps itself (it skips that for models that take `num_items_in_batch`).
        self.model_accepts_loss_kwargs = False
        self._pair_metrics: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def pair_loss(self, model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch's mean loss, and per-pair metric values."""
        base_model = self.accelerator.unwrap_model(model)
        sums, counts = response_logps(model, inputs, self.args.logps_chunk_size, base_model)
        pairs = sums.shape[0] // 2
        average = sums / counts
        chosen, rejected = average[:pairs], average[pairs:]
        args = self.args
        loss = simpo_loss(chosen, rejected, args.beta, args.gamma_beta_ratio, args.loss_type, args.label_smoothing).mean()
        if args.sft_weight > 0:
            # Token-mean negative log-likelihood of the chosen responses.
            loss = loss + args.sft_weight * (-sums[:pairs].sum() / counts[:pairs].sum())
        chosen, rejected = chosen.detach(), rejected.detach()
        metrics = {
            "rewards/chosen": args.beta * chosen,
            "rewards/rejected": args.beta * rejected,
            "rewards/accuracies": (chosen > rejected).float(),
            "rewards/margins": args.beta * (chosen - rejected),
            "logps/chosen": chosen,
            "logps/rejected": rejected,
        }
        return loss, metrics

    def _store(self, metrics: dict[str, torch.Tensor], split: str) -> None:
        gather = self.accelerator.gather_for_metrics if split == "eval" else self.accelerator.gather
        for key, values in metrics.items():
            self._pair_metrics[split][key].append(gather(values))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = self.pair_loss(model, inputs)
        self._store(metrics, "train" if model.training else "eval")
        return (loss, metrics) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, metrics = self.pair_loss(model, inputs)
        self._store(metrics, "eval")
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            split, prefix = "train", ""
        else:
            loss_key = next((key for key in logs if key.endswith("_loss")), None)
            split, prefix = ("eval", loss_key[: -len("loss")]) if loss_key else (None, "")
        if split is not None:
            stored = self._pair_metrics[split]
            for key, chunks in stored.items():
                logs[prefix + key] = torch.cat(chunks).float().mean().item()
            stored.clear()
        super().log(logs, start_time)
