"""`SFTTrainer`: a `transformers.Trainer` whose loss is the NLL of the assistant's tokens.

loss = -(1/N) * sum over the assistant tokens t of an optimizer step of log pi(x_t | x_<t), where
N counts those tokens over every micro-batch of the step and every process (`Trainer` counts them
from the batches' `shift_labels` as `num_items_in_batch`): each assistant token weighs the same,
however the conversations fall into micro-batches. (The official SFT, TRL's packed
`ConstantLengthDataset`, scores every token of rows of exactly `max_seq_length` tokens; its
per-micro-batch means averaged over accumulation steps are then this same token mean.) The
log-probs come from the chunked output head (`ops.logprobs.response_logps`), which projects only
the scored positions onto the vocabulary. Packed rows run with per-sequence attention
(`ops.attention`), so no conversation attends to another.
"""

from __future__ import annotations

import torch
from transformers import Trainer

from ..config.sft import SFTConfig
from ..data.sft import ConversationCollator
from ..ops.attention import use_per_sequence_attention
from ..ops.logprobs import response_logps
from ..ops.recompute import recompute_in_backward


class SFTTrainer(Trainer):
    def __init__(self, model, args: SFTConfig, processing_class, train_dataset, eval_dataset=None, **kwargs):
        recompute_in_backward(model)
        if args.packing:
            use_per_sequence_attention(model)
        kwargs.setdefault("data_collator", ConversationCollator(processing_class.pad_token_id, padding_free=args.packing))
        super().__init__(model=model, args=args, processing_class=processing_class, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, **kwargs)
        # Trainer then counts the step's assistant tokens (`num_items_in_batch`) and does not divide
        # our loss, already a share of the step's token mean, by the accumulation steps.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self._eval_totals: list[torch.Tensor] = []

    # The collator builds the model's inputs from the rows, so no column is pruned: an official
    # recipe's `remove_unused_columns: true` concerned the text column its script replaced.
    def _remove_unused_columns(self, dataset, description=None):
        return dataset

    def _get_collator_with_removed_columns(self, data_collator, description=None):
        return data_collator

    def compute_loss_context_manager(self):
        # As in SimPOTrainer: the chunked head runs after the model's forward, outside the autocast
        # that Accelerate puts on the forward alone.
        return self.accelerator.autocast()

    def token_nll(self, model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The sum of -log pi over the batch's assistant tokens, and their count."""
        scores = response_logps(model, inputs, self.args.logps_chunk_size, self.accelerator.unwrap_model(model))
        return -scores.sums.sum(), scores.counts.sum()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        nll, count = self.token_nll(model, inputs)
        if num_items_in_batch is None:  # a batch on its own: its token mean
            loss = nll / count
        else:
            loss = nll / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages the processes' gradients
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            nll, count = self.token_nll(model, inputs)
        self._eval_totals.append(self.accelerator.gather(torch.stack([nll.detach().float(), count.float()]).unsqueeze(0)))
        return (nll / count).detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        loss_key = next((key for key in logs if key.endswith("_loss")), None)
        if loss_key and self._eval_totals:
            # The evaluation's token mean over every assistant token, not a mean of batch means.
            nll, count = torch.cat(self._eval_totals).sum(0).tolist()
            logs[loss_key] = nll / count
            self._eval_totals.clear()
        super().log(logs, start_time)
