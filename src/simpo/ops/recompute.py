"""Llama-style layers that keep less for the backward pass and recompute the rest, elementwise.

The SwiGLU MLP. Autograd through `down_proj(act_fn(gate_proj(x)) * up_proj(x))` keeps the gate,
its SiLU, the up projection and their product (the down projection's input), each `[tokens, intermediate]`: the
largest part of what a Llama-style layer keeps for its backward pass. `_SwiGLUDown` computes
`silu(gate) * up` and the down projection in one autograd function that keeps the gate and the up
projection only; its backward pass recomputes the product, elementwise (no extra matmul), for the
down projection's weight gradient and SiLU's gradient. The forward value is computed as the model
computes it (the down projection in autocast's dtype when autocast is on); SiLU's gradient is
written out, in fp32 for lower-precision inputs.

The RMSNorm. Autograd through Llama's RMSNorm keeps its input, the normalized input and the
reciprocal RMS, and the projections that read its output keep that output: two copies of the
hidden states besides the input. `_RMSNorm` keeps the input and the reciprocal RMS only, and the
projections that read the output keep, instead of it, what recomputes it elementwise (a
saved-tensor hook around the model's forward; for the latest norm's output only, so that nothing
outlives its layer's forward, and only while that output is unchanged). Under activation checkpointing the checkpoint's
own hooks take the projections' saved tensors, and the output is kept as before.

`recompute_in_backward(model)` swaps the forward of every module whose forward is the standard
Llama one: MLPs `down_proj(act_fn(gate_proj(x)) * up_proj(x))` with a SiLU activation, and
RMSNorms (Llama, Mistral, Qwen2/3 and others share them); any other module is left as it is. A LoRA
down projection (peft's `lora.Linear` over a plain linear layer, one plain adapter, no dropout)
computes `silu(gate) * up` into its frozen weight and into `lora_A` alike, each recomputing the
product in backward, so the product is not kept for `lora_A`'s gradient either. Any other down
projection (sharded weights, a bias, LoRA with dropout or variants) keeps its own module, after the
product. Nothing changes without autograd (no_grad, frozen inputs).
"""

from __future__ import annotations

import functools
import types

import torch
from torch import nn
from transformers.activations import SiLUActivation
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from .blocked_attention import compute_dtype
from .logprobs import _plain_linear


class _SwiGLUDown(torch.autograd.Function):
    """`silu(gate) * up`, then `@ weight.T` when a weight is given; keeps `gate` and `up`."""

    @staticmethod
    def forward(ctx, gate, up, weight):
        product = nn.functional.silu(gate) * up
        ctx.dtypes = gate.dtype, up.dtype
        if weight is None:
            ctx.save_for_backward(gate, up, None)
            return product
        dtype = compute_dtype(weight)
        cast = weight.to(dtype)
        ctx.product_dtype, ctx.weight_dtype = product.dtype, weight.dtype
        ctx.save_for_backward(gate, up, cast)
        return product.to(dtype) @ cast.t()

    @staticmethod
    def backward(ctx, grad):
        gate, up, cast = ctx.saved_tensors
        grad_weight = None
        if cast is not None:
            if ctx.needs_input_grad[2]:
                product = (nn.functional.silu(gate) * up).to(cast.dtype)
                grad_weight = (grad.flatten(0, -2).t() @ product.flatten(0, -2)).to(ctx.weight_dtype)
                del product
            grad = (grad @ cast).to(ctx.product_dtype)
        dtype = torch.promote_types(gate.dtype, torch.float32)
        gate, up, grad = gate.to(dtype), up.to(dtype), grad.to(dtype)
        sigmoid = torch.sigmoid(gate)
        grad_up = (gate * sigmoid).mul_(grad).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        grad_gate = None
        if ctx.needs_input_grad[0]:  # d silu(g) / dg = sigmoid(g) * (1 + g * (1 - sigmoid(g)))
            grad_gate = (1 - sigmoid).mul_(gate).add_(1).mul_(sigmoid).mul_(grad).mul_(up).to(ctx.dtypes[0])
        return grad_gate, grad_up, grad_weight


def _plain_lora(down: nn.Module):
    """(base weight, lora_A weight, lora_B, scaling) of a peft LoRA layer that computes exactly
    `base(x) + lora_B(lora_A(x)) * scaling` over plain bias-free linear layers; else None."""
    if not all(hasattr(down, name) for name in ("base_layer", "lora_A", "lora_B", "lora_dropout", "scaling")):
        return None
    active = getattr(down, "active_adapters", [])
    if getattr(down, "disable_adapters", True) or getattr(down, "merged", True) or len(active) != 1 or active[0] not in down.lora_A:
        return None
    name = active[0]
    dropout = down.lora_dropout[name]
    if name in getattr(down, "lora_variant", {}) or not (isinstance(dropout, nn.Identity) or (dropout.p == 0 or not dropout.training)):
        return None
    if not (_plain_linear(down.base_layer) and _plain_linear(down.lora_A[name]) and _plain_linear(down.lora_B[name])):
        return None
    return down.base_layer.weight, down.lora_A[name].weight, down.lora_B[name], down.scaling[name]


def swiglu_down(gate: torch.Tensor, up: torch.Tensor, down: nn.Module) -> torch.Tensor:
    """`down(silu(gate) * up)`; under autograd, keeping only `gate` and `up` for the backward pass."""
    if not (torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad)):
        return down(nn.functional.silu(gate) * up)
    if _plain_linear(down):
        return _SwiGLUDown.apply(gate, up, down.weight)
    lora = _plain_lora(down)
    if lora is not None:
        base_weight, lora_a, lora_b, scaling = lora
        result = _SwiGLUDown.apply(gate, up, base_weight)
        return (result + lora_b(_SwiGLUDown.apply(gate, up, lora_a)) * scaling).to(result.dtype)  # peft's dtype rule
    return down(_SwiGLUDown.apply(gate, up, None))


class _RMSNorm(torch.autograd.Function):
    """Llama's RMSNorm, `weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)` in fp32; keeps `x` and the rsqrt."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        rstd = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.mark_non_differentiable(rstd)
        return weight * (x.float() * rstd).to(x.dtype), rstd

    @staticmethod
    def backward(ctx, grad, _):
        x, weight, rstd = ctx.saved_tensors
        normed = x.float() * rstd
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * normed.to(x.dtype)).flatten(0, -2).sum(0).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_normed = (grad * weight).float()
            dot = (grad_normed * normed).mean(-1, keepdim=True)
            grad_x = grad_normed.sub_(normed.mul_(dot)).mul_(rstd).to(x.dtype)
        return grad_x, grad_weight, None


class _NormOutput:
    """A norm's output as kept for the backward pass: what recomputes it, and the view kept."""

    def __init__(self, x, weight, rstd, output):
        self.x, self.weight, self.rstd, self.version = x, weight, rstd, output._version
        self.storage, self.offset = output.untyped_storage().data_ptr(), output.storage_offset()
        self._value = None

    def value(self) -> torch.Tensor:
        if self._value is None:
            self._value = self.weight * (self.x.float() * self.rstd).to(self.x.dtype)
        return self._value


_latest: list = [None]  # (the latest norm's output, its _NormOutput), while a hooked forward runs
_hooked = [0]  # hooked forwards running


def _pack(tensor):
    latest = _latest[0]
    if (latest is not None and tensor.layout == torch.strided and tensor.untyped_storage().data_ptr() == latest[1].storage
            and tensor._version == latest[1].version and tensor.dtype == latest[0].dtype):
        return latest[1], tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset() - latest[1].offset
    return tensor


def _unpack(packed):
    if isinstance(packed, tuple):
        source, shape, stride, offset = packed
        return source.value().as_strided(shape, stride, offset)
    return packed


def _hooked_forward(forward):
    @functools.wraps(forward)  # the signature stays the model's (Trainer reads it)
    def hooked(*args, **kwargs):
        _hooked[0] += 1
        try:
            with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
                return forward(*args, **kwargs)
        finally:
            _hooked[0] -= 1
            _latest[0] = None

    return hooked


def _mlp_forward(self, x):
    return swiglu_down(self.gate_proj(x), self.up_proj(x), self.down_proj)


def _norm_forward(self, hidden_states):
    if torch.is_grad_enabled() and (hidden_states.requires_grad or self.weight.requires_grad):
        output, rstd = _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)
        # A ZeRO-3 weight is partitioned again when the norm's forward ends, before the projections'
        # backward would recompute the output from it: they keep the output instead.
        if _hooked[0] and not hasattr(self.weight, "ds_id"):
            _latest[0] = (output, _NormOutput(hidden_states, self.weight, rstd, output))
        return output
    return LlamaRMSNorm.forward(self, hidden_states)


def _same_forward(module: nn.Module, reference) -> bool:
    code, expected = getattr(type(module).forward, "__code__", None), reference.forward.__code__
    return code is not None and code.co_code == expected.co_code and code.co_names == expected.co_names


def recompute_in_backward(model: nn.Module) -> int:
    """Give every Llama-style SiLU MLP and RMSNorm of `model` the leaner backward; how many were
    changed (none on a second call)."""
    if getattr(model, "_simpo_recompute", False):
        return 0
    model._simpo_recompute = True
    changed, norms = 0, 0
    for module in model.modules():
        if _same_forward(module, LlamaMLP) and isinstance(getattr(module, "act_fn", None), (SiLUActivation, nn.SiLU)):
            module.forward = types.MethodType(_mlp_forward, module)
        elif _same_forward(module, LlamaRMSNorm) and isinstance(getattr(module, "weight", None), torch.Tensor):
            module.forward = types.MethodType(_norm_forward, module)
            norms += 1
        else:
            continue
        changed += 1
    if norms:
        model.forward = _hooked_forward(model.forward)
    return changed
