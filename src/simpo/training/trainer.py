"""`SimPOTrainer`: a `transformers.Trainer` that computes SimPO or one of the paper's baselines.

One forward pass per micro-batch covers the chosen and the rejected responses together (the
collator stacks them); `losses.preference_loss` turns the per-sequence log-probs into the loss of
`args.loss_type` and its metrics (`rewards/*` with the method's own implicit reward, `logps/*`,
`logits/*`),
`lengths/chosen|rejected` (response tokens), averaged over every pair on every process and prefixed with `eval_` under evaluation.

Losses with a reference model (dpo, ipo, kto_pair, rdpo) get the reference log-probs either
precomputed once for the train and eval sets before training (`precompute_ref_logps: true`, the
default; see `reference.py`), or from a live, frozen reference model run on every batch. The
reference is `ref_model` when given, else the initial policy: under `use_peft`, the policy itself with
its LoRA adapters disabled (no second copy; see `models/lora.py`).

A non-finite loss or gradient norm stops the run, or skips the step's update (`on_nonfinite`; see
`nonfinite.py`); a model with a non-finite weight is never saved.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from transformers import Trainer

from ..config.recipe import SimPOConfig
from ..data.collate import ROW_IDS, PairCollator
from ..errors import RecipeError
from ..models.lora import add_adapters, is_adapted, reference_mode
from ..ops.attention import use_per_sequence_attention
from ..ops.logprobs import response_logps
from ..ops.recompute import recompute_in_backward
from .losses import PairLogps, preference_loss
from .nonfinite import SKIPS, NonFiniteGuard
from .reference import with_reference_logps
from .samplers import seeded_by_epoch
from .sharding import check_fsdp_active, is_zero3, whole_model


def disable_dropout(model: nn.Module) -> None:
    """Every dropout of the model at 0, LoRA's own (`lora_dropout`) included, as the official trainer does."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def _prepare_for_pairs(model: nn.Module, args: SimPOConfig) -> bool:
    """Dropout off (when asked), MLPs and norms that keep less for backward and per-sequence attention for packed
    rows; whether the model can take rows with shared prompts."""
    if args.disable_dropout:
        disable_dropout(model)
    recompute_in_backward(model)
    return args.padding_free and use_per_sequence_attention(model)


class SimPOTrainer(Trainer):
    def __init__(self, model, args: SimPOConfig, processing_class, train_dataset, eval_dataset=None, ref_model=None, **kwargs):
        if args.use_peft and not is_adapted(model):
            model = add_adapters(model, args)
        shareable = _prepare_for_pairs(model, args)
        if ref_model is not None:
            shareable = _prepare_for_pairs(ref_model, args) and shareable
        # Flash-attention reads packed rows from position ids alone, so only our per-sequence
        # attention (eager, SDPA) takes shared prompts.
        collator = PairCollator(processing_class.pad_token_id, args.padding_free, args.share_prompt and shareable)
        kwargs.setdefault("data_collator", collator)
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
        check_fsdp_active(self)
        if args.on_nonfinite == "skip" and self.is_deepspeed_enabled:
            raise RecipeError("on_nonfinite: skip cannot skip an update under DeepSpeed, whose engine steps the optimizer "
                              "inside backward; use on_nonfinite: stop")
        self.nonfinite = NonFiniteGuard(args.on_nonfinite, args.output_dir, self.accelerator, check_gradients=not args.fp16)
        self.add_callback(self.nonfinite)
        self.ref_model = None
        if args.needs_reference:
            if args.precompute_ref_logps:
                self._precompute_reference(ref_model if ref_model is not None else self.model)
            elif ref_model is not None or not is_adapted(self.model):
                if is_zero3(ref_model if ref_model is not None else self.model):
                    raise RecipeError("precompute_ref_logps: false under DeepSpeed ZeRO-3: a live reference model would be "
                                      "partitioned with no engine to gather it; keep precompute_ref_logps: true (the default)")
                frozen = ref_model if ref_model is not None else copy.deepcopy(self.model)
                frozen.eval().requires_grad_(False)
                self.ref_model = self.accelerator.prepare_model(frozen, evaluation_mode=True)

    def _precompute_reference(self, reference: nn.Module) -> None:
        """Add the reference log-probs to the train and eval sets (from the cache when it has them)."""
        device = next(self.model.parameters()).device
        reference.to(device)
        options = dict(
            collator=self.data_collator, batch_size=self.args.per_device_eval_batch_size, chunk_size=self.args.logps_chunk_size,
            device=device, autocast=self.accelerator.autocast, precision=str(self.accelerator.mixed_precision),
        )
        # The main process computes and caches; the others then read its cache. ZeRO-3 weights are
        # gathered whole first, on every process together (no engine gathers them yet).
        with whole_model(reference), self.args.main_process_first(desc="reference log-probs"), reference_mode(reference):
            self.train_dataset = with_reference_logps(reference, self.train_dataset, split="train", **options)
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {name: with_reference_logps(reference, data, split=f"eval {name}", **options)
                                     for name, data in self.eval_dataset.items()}
            else:
                self.eval_dataset = with_reference_logps(reference, self.eval_dataset, split="eval", **options)

    def pair_loss(self, model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch's mean loss, and per-pair metric values."""
        chunk = self.args.logps_chunk_size
        ref_sums = inputs.get("ref_logps")
        if self.args.needs_reference and ref_sums is None:
            ref_sums = self._live_reference_logps(model, inputs)
        scores = response_logps(model, inputs, chunk, self.accelerator.unwrap_model(model))
        loss, metrics = preference_loss(self.args, PairLogps.split(scores.sums, scores.counts, ref_sums))
        # The official trainers' `logits/chosen|rejected`, here the mean logit over each response's positions.
        mean_logits = scores.logit_sums / scores.counts
        pairs = mean_logits.shape[0] // 2
        # Response tokens the loss sees (after truncation): length exploitation shows as chosen outgrowing rejected.
        lengths = scores.counts.float()
        return loss, {**metrics, "logits/chosen": mean_logits[:pairs], "logits/rejected": mean_logits[pairs:],
                      "lengths/chosen": lengths[:pairs], "lengths/rejected": lengths[pairs:]}

    @torch.no_grad()
    def _live_reference_logps(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's summed reference log-probs from the live reference: `ref_model`, or the LoRA policy
        with its adapters disabled and in eval mode (run before the policy's forward, since disabling
        adapters toggles their requires_grad)."""
        chunk = self.args.logps_chunk_size
        if self.ref_model is not None:
            return response_logps(self.ref_model, inputs, chunk, self.accelerator.unwrap_model(self.ref_model)).sums
        policy = self.accelerator.unwrap_model(model)
        if not is_adapted(policy):
            raise ValueError(f"loss_type {self.args.loss_type!r}: the batch has no reference log-probs and there is no reference model")
        was_training = policy.training
        policy.eval()
        try:
            with reference_mode(policy):
                return response_logps(model, inputs, chunk, policy).sums
        finally:
            policy.train(was_training)

    def compute_loss_context_manager(self):
        # Accelerate puts mixed precision's autocast on the model's forward alone, and the chunked
        # output head runs after that forward: without this, its matmuls would run in fp32 under
        # `bf16: true`. (A no-op without mixed precision, and under DeepSpeed, whose weights are bf16.)
        return self.accelerator.autocast()

    def _store(self, metrics: dict[str, torch.Tensor], split: str) -> None:
        gather = self.accelerator.gather_for_metrics if split == "eval" else self.accelerator.gather
        for key, values in metrics.items():
            if key == "loss" and split == "train":  # transformers logs the training loss itself
                continue
            self._pair_metrics[split][key].append(gather(values))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = self.pair_loss(model, inputs)
        self._store(metrics, "train" if model.training else "eval")
        return (loss, metrics) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.nonfinite.record(loss, inputs.get(ROW_IDS))
        return loss

    def _get_train_sampler(self, train_dataset=None):
        # group_by_length: the same order on every process, and on resuming (see samplers.py).
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return seeded_by_epoch(super()._get_train_sampler(train_dataset), seed)

    def _get_grad_norm(self, model, grad_norm=None):
        # Trainer calls this between the step's gradient norm (before clipping) and the optimizer
        # step: the one place to decide on the step's update.
        grad_norm = super()._get_grad_norm(model, grad_norm)
        if self.nonfinite.step_is_skipped(self.state.global_step + 1, grad_norm):
            model.zero_grad(set_to_none=True)  # the optimizer skips parameters without a gradient
        return grad_norm

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        self.nonfinite.check_weights(self.model, self.state.global_step)  # checkpoints and the final model alike
        super().save_model(output_dir, _internal_call)

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
            # Under evaluation `loss` too is the mean over the held-out pairs: transformers' weighs each
            # batch's mean by its size, and with several processes the last batches, evened out with
            # repeated pairs, would count those in the kept pairs' share.
            for key, chunks in stored.items():
                logs[prefix + key] = torch.cat(chunks).float().mean().item()
            stored.clear()
        if split == "train" and self.args.on_nonfinite == "skip":
            logs[SKIPS] = self.nonfinite.skips
        super().log(logs, start_time)
