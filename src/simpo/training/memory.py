"""Per-device memory of a training step, written out as arithmetic (what `simpo plan` prints).

Model states, for P parameters over N devices:

- weights, gradients and optimizer moments in the dtype each engine keeps them: DeepSpeed under
  bf16/fp16 casts the model to 16 bits and keeps an fp32 master copy and fp32 moments beside it
  (2 + 2 + 4 + 8 bytes a parameter with AdamW); FSDP and a replicated model (DDP, one device) keep
  the weights in the dtype they were loaded in, and torch's AdamW keeps its moments in that dtype
  (fp32 weights: 4 + 4 + 8; bf16 weights: 2 + 2 + 4 and no fp32 copy at all);
- sharding divides them by N: ZeRO-1 the optimizer's part, ZeRO-2 the gradients too, ZeRO-3 and
  FSDP the weights too; those gather whole modules in 16 bits while they compute (the output head
  or embeddings, and a layer or two); DDP keeps a second copy of the gradients in its buckets.

Activations of one micro-batch, in the worst case: B pairs, both responses at `max_length` L, so
T = 2 B L tokens through the body and as many scored positions. What autograd keeps per token of
each layer is counted tensor by tensor for the code this project runs (the leaner Llama MLP and
RMSNorm of `ops.recompute`, Gemma's own modules, the attention kernel's saved q, k, v, output and
log-sum-exp, or eager attention's [heads, L, L] probabilities per sequence). Under gradient
checkpointing each layer keeps its input, and the layer being recomputed keeps everything. The
chunked log-prob head (`ops.logprobs`) holds one chunk of logits; `logps_chunk_size: 0` holds the
logits of every scored position instead.

The peak: what is held throughout (the states, modules gathered, a live reference, the CUDA
runtime) plus the larger of the backward pass (at its start the kept activations, the head's chunk
and the head's whole gradient; at its end the gradients it made and a tied embedding's own) and the
optimizer step's temporaries. Not counted: the data, evaluation's no-grad passes, communication
buckets and the allocator's fragmentation; the fit verdict keeps a tenth of the device for those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import RecipeError
from ..models.shape import ModelShape

GIB = 2**30
RUNTIME_GIB = 1.5  # CUDA context, NCCL buffers, cuBLAS/cuDNN workspaces: an assumption, shown as one
MARGIN = 0.9  # a plan fits when it needs at most this fraction of the device
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ENGINES = {"none": "replicated", "zero0": "ZeRO-0", "zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "ZeRO-3", "fsdp": "FSDP"}
SHARDINGS = tuple(ENGINES)


@dataclass(frozen=True)
class Setup:
    """What the recipe and the command line say about a run, resolved for a GPU."""

    gpus: int
    gpu_memory_gib: float
    sharding: str  # one of SHARDINGS
    weight_dtype: str  # as loaded: torch_dtype, unset -> float32
    mixed: bool  # bf16 or fp16 mixed precision
    optim: str
    pairs: int  # per_device_train_batch_size
    max_length: int
    checkpointing: bool
    chunk: int  # logps_chunk_size
    attention: str  # attn_implementation
    reference: str  # "none", "cached" or "live"
    accumulation: int = 1  # gradient_accumulation_steps
    shared_prompt: bool = False  # packed rows with each prompt once (padding_free, share_prompt, eager or SDPA)

    @property
    def tokens(self) -> int:
        return 2 * self.pairs * self.max_length

    @property
    def gradients_held(self) -> bool:
        """Whether the gradients exist before the backward pass starts: accumulated over micro-batches,
        or in DeepSpeed's gradient partitions, allocated once. Otherwise they are made during the
        backward pass while it frees the activations, and dropped after the step (set to None)."""
        return self.accumulation > 1 or self.sharding.startswith("zero")


@dataclass(frozen=True)
class Term:
    name: str
    formula: str
    bytes: int


@dataclass
class Plan:
    """The terms of one device's peak: states (held all along) + runtime + the larger of the
    backward pass's (activations and the head) and the optimizer step's temporaries."""

    shape: ModelShape
    setup: Setup
    states: list[Term]
    activations: list[Term]  # under the recipe's gradient_checkpointing, the head included
    other_activations: list[Term]  # under the other setting, for comparison
    step: list[Term]
    runtime: list[Term] = field(default_factory=list)
    built: Term | None = None  # the gradients, when the backward pass makes them as it frees activations
    head_gradient: int = 0  # the output head's, made whole first, by the head's backward (then added to any held one)
    tied_gradient: int = 0  # a tied embedding's, made whole at the end of the backward pass, then added into the head's

    def backward(self, activations: list[Term]) -> int:
        """The backward pass's peak: at its start, what the forward pass kept, the head's chunk and its
        gradient; at its end, the gradients made (if not held) and a tied embedding's own."""
        start = sum(term.bytes for term in activations) + self.head_gradient
        return max(start, (self.built.bytes if self.built else 0) + self.tied_gradient)

    def total_with(self, activations: list[Term]) -> int:
        held = sum(term.bytes for term in self.states + self.runtime)
        return held + max(self.backward(activations), sum(term.bytes for term in self.step))

    @property
    def total(self) -> int:
        return self.total_with(self.activations)

    @property
    def other_total(self) -> int:
        return self.total_with(self.other_activations)

    def fits(self, total: int | None = None) -> bool:
        return (self.total if total is None else total) <= MARGIN * self.setup.gpu_memory_gib * GIB

    def verdict(self, total: int | None = None) -> str:
        total, memory = self.total if total is None else total, self.setup.gpu_memory_gib * GIB
        spare = (memory - total) / GIB
        if self.fits(total):
            return f"fits, {spare:.1f} GiB to spare"
        if total <= memory:
            return f"tight: {spare:.1f} GiB to spare, less than the tenth kept for fragmentation and passing buffers"
        return f"does not fit: {-spare:.1f} GiB short"


def optimizer_state(optim: str) -> tuple[int, int | None, str]:
    """(moments kept per parameter, bytes of each or None for the parameters' dtype, a name)."""
    if optim.startswith(("adam", "paged_adam")):
        return (2, 1, "8-bit exp_avg and exp_avg_sq") if "8bit" in optim else (2, None, "exp_avg and exp_avg_sq")
    if "lion" in optim:
        return (1, 1, "8-bit Lion moment") if "8bit" in optim else (1, None, "Lion moment")
    if optim in ("sgd", "adafactor"):
        return 0, None, "no moments (sgd) or factored ones (adafactor, rows + columns: ignored)"
    raise RecipeError(f"optim {optim}: simpo plan knows the state of adamw*, adam*, lion*, sgd and adafactor, not this one")


def model_states(shape: ModelShape, setup: Setup) -> list[Term]:
    n, p, s = setup.gpus, shape.parameters(), setup.sharding
    deepspeed = s.startswith("zero")
    loaded = BYTES[setup.weight_dtype]
    weights = 2 if deepspeed and setup.mixed else loaded  # DeepSpeed casts the module to 16 bits
    master = deepspeed and setup.mixed
    moments, moment_bytes, moment_name = optimizer_state(setup.optim)
    moment_bytes = moment_bytes or (4 if master else loaded)

    def part(name: str, size: int, why: str, sharded: bool) -> Term:
        over = f" / {n} GPUs" if sharded and n > 1 else ""
        return Term(name, f"{p:,} x {size} B ({why}){over}", p * size // (n if sharded else 1))

    engine = ENGINES[s]
    weight_why = "bf16: DeepSpeed casts the model" if deepspeed and setup.mixed else f"{setup.weight_dtype} as loaded"
    terms = [
        part("weights", weights, f"{weight_why}, {engine}", s in ("zero3", "fsdp")),
        gradients_term(shape, setup),
    ]
    if master:
        terms.append(part("fp32 master weights", 4, f"DeepSpeed's copy for the update, {engine}", s not in ("none", "zero0")))
    if moments:
        terms.append(part("optimizer", moments * moment_bytes, f"{setup.optim}: {moment_name}, {moments} x {moment_bytes} B, {engine}",
                          s not in ("none", "zero0")))
    else:
        terms.append(Term("optimizer", f"{setup.optim}: {moment_name}", 0))
    if s == "none" and n > 1:
        terms.append(Term("DDP gradient buckets", f"{p:,} x {weights} B (a second copy of the gradients, for the all-reduce)", p * weights))
    if s in ("zero3", "fsdp"):
        layer, embed = shape.layer_parameters(), shape.embedding_parameters() + shape.head_parameters()
        held = "the embeddings and head (FSDP's root unit)" if s == "fsdp" else "the largest module, embeddings or head"
        size = embed if s == "fsdp" else shape.embedding_parameters()
        terms.append(Term("gathered while computing", f"({held} {size:,} + 2 layers x {layer:,}) x 2 B",
                          (size + 2 * layer) * 2))
    return terms + [reference_term(shape, setup)]


def gradients_term(shape: ModelShape, setup: Setup) -> Term:
    p, n, s = shape.parameters(), setup.gpus, setup.sharding
    size = 2 if s.startswith("zero") and setup.mixed else BYTES[setup.weight_dtype]
    sharded = s in ("zero2", "zero3", "fsdp") and n > 1
    over = f" / {n} GPUs" if sharded else ""
    return Term("gradients", f"{p:,} x {size} B (the weights' dtype, {ENGINES[s]}){over}", p * size // (n if sharded else 1))


def step_terms(shape: ModelShape, setup: Setup) -> list[Term]:
    """What the optimizer step allocates for a moment, over the optimizer's share of the parameters:
    torch's foreach AdamW (not the fused one) a moment-sized sqrt of the second moment, and
    DeepSpeed under mixed precision an fp32 copy of the gradients (per sub-group of 1e9 under ZeRO-3)."""
    share, s = shape.parameters(), setup.sharding
    sharded = s not in ("none", "zero0")
    where = f"{share:,} / {setup.gpus}" if sharded and setup.gpus > 1 else f"{share:,}"
    share = share // setup.gpus if sharded else share
    if s == "zero3" and share > 10**9:
        share, where = 10**9, "1e9 (ZeRO-3's sub-group)"
    moments, moment_bytes, _ = optimizer_state(setup.optim)
    deepspeed_mixed = s.startswith("zero") and setup.mixed
    moment_bytes = moment_bytes or (4 if deepspeed_mixed else BYTES[setup.weight_dtype])
    terms = []
    if moments == 2 and moment_bytes > 1 and "fused" not in setup.optim:
        terms.append(Term("AdamW step's sqrt(exp_avg_sq)", f"{where} x {moment_bytes} B (torch's foreach AdamW; the fused one has none)",
                          share * moment_bytes))
    if deepspeed_mixed:
        terms.append(Term("fp32 gradients for the step", f"{where} x 4 B (DeepSpeed's copy of the 16-bit gradients)", share * 4))
    return terms or [Term("optimizer step", f"{setup.optim}: no temporaries of the parameters' size", 0)]


def _dtypes(setup: Setup) -> tuple[int, int, bool]:
    """(bytes of the compute dtype, of the residual stream, whether autocast casts fp32 weights and inputs)."""
    loaded = BYTES[setup.weight_dtype]
    if not setup.mixed:
        return loaded, loaded, False
    if setup.sharding == "none" and loaded == 4:
        return 2, 4, True  # autocast over fp32 weights: the residual stream stays fp32
    return 2, 2, False  # DeepSpeed's and FSDP's 16-bit compute copies, or 16-bit weights


def layer_bytes(shape: ModelShape, setup: Setup, tokens: int, recomputed: bool = False) -> tuple[int, str]:
    """What one decoder layer keeps for backward over `tokens` tokens, and the sum written out per token.
    `recomputed`: the layer re-run under checkpointing, where `ops.recompute`'s norm hook is off."""
    c, r, autocast = _dtypes(setup)
    h, i, family = shape.hidden, shape.intermediate, shape.family
    q_width, kv_width = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    parts = []
    norm = 8 * h + 4 if family.norm_in_fp32 else h * r + 4
    parts.append((f"{family.norms_per_layer} norms x {norm:,}", family.norms_per_layer * norm))
    if autocast or recomputed or not family.lean:  # else the projections keep what recomputes the norm's output
        copies = 5 if autocast else 2  # autocast casts the input of q, k, v, gate and up one by one
        parts.append((f"{copies} norm outputs x {h:,} x {c}", copies * h * c))
    if setup.attention == "eager":
        parts.append((f"q and repeated k, v 3 x {q_width:,} x {c}", 3 * q_width * c))
    else:
        parts.append((f"q, k, v, output (2 x {q_width:,} + 2 x {kv_width:,}) x {c} + log-sum-exp {shape.heads} x 4",
                      (2 * q_width + 2 * kv_width) * c + 4 * shape.heads))
    if setup.shared_prompt:  # a pair's second response gathers its q, and the prompt's k, v with its own, anew
        copy = q_width if setup.attention == "eager" else q_width + 2 * kv_width
        parts.append((f"second responses' gathered {'q' if setup.attention == 'eager' else 'q, k, v'} {copy:,} x {c} / 2", copy * c // 2))
    parts.append((f"o_proj input {q_width:,} x {c}", q_width * c))
    lean_mlp = family.lean and shape.silu
    mlp = (2 if lean_mlp else 4) * i * c
    parts.append((f"MLP {'gate, up' if lean_mlp else 'gate, activation, up, product'} {2 if lean_mlp else 4} x {i:,} x {c}", mlp))
    per_token = sum(value for _, value in parts)
    text = f"{tokens:,} tokens x ({' + '.join(label for label, _ in parts)} = {per_token:,} B)"
    total = tokens * per_token
    if setup.attention == "eager":
        square = attention_square_bytes(shape, setup)
        text += f" + eager attention probabilities {shape.heads} heads x {2 * setup.pairs} sequences x {setup.max_length:,}^2 x {square} B"
        total += shape.heads * 2 * setup.pairs * setup.max_length**2 * square
    return total, text


def attention_square_bytes(shape: ModelShape, setup: Setup) -> int:
    """Bytes per element of eager attention's [heads, L, L] matrices kept for backward: the fp32
    softmax, its cast to the compute dtype, and the soft-cap's tanh where the model caps."""
    c, _, _ = _dtypes(setup)
    return 4 + (c if c != 4 else 0) + (c if shape.attention_softcap else 0)


def activations(shape: ModelShape, setup: Setup, checkpointing: bool) -> list[Term]:
    c, r, autocast = _dtypes(setup)
    tokens, h, layers = setup.tokens, shape.hidden, shape.layers
    if checkpointing:
        one, text = layer_bytes(shape, setup, tokens, recomputed=True)
        terms = [Term("layer inputs (checkpoints)", f"{layers} layers x {tokens:,} tokens x {h:,} x {r} B", layers * tokens * h * r),
                 Term("one layer recomputed", text, one)]
    else:
        one, text = layer_bytes(shape, setup, tokens)
        terms = [Term("every layer", f"{layers} layers x [{text}]", layers * one)]
    norm = 8 * h + 4 if shape.family.norm_in_fp32 else h * r + 4
    terms.append(Term("final norm and the head's input", f"{tokens:,} x ({norm:,} + {h:,} x {c}) B", tokens * (norm + h * c)))
    if autocast:
        weights = layers * (shape.attention_parameters() + shape.mlp_parameters())
        heads = 2 if setup.chunk > 0 else 1  # the model's own head (called on no position) and the chunked head each cast it
        terms.append(Term("autocast's bf16 weight copies", f"({layers} x {shape.attention_parameters() + shape.mlp_parameters():,}"
                          f" + {heads} x {shape.vocab:,} x {h:,}) x {c} B", (weights + heads * shape.vocab * h) * c))
    return terms + [head_term(shape, setup)]


def head_term(shape: ModelShape, setup: Setup) -> Term:
    c, _, _ = _dtypes(setup)
    cap = shape.logit_softcap is not None
    if setup.chunk > 0:
        rows = min(setup.chunk, setup.tokens)
        size = c + 8 + (8 if cap else 0)
        why = f"logits in {c} B, in fp32, log-softmax{', soft-cap tanh and capped values' if cap else ''}"
        return Term("log-prob head, one chunk", f"{rows:,} positions x {shape.vocab:,} vocabulary x {size} B ({why})", rows * shape.vocab * size)
    size = 4 + (c if cap else 0) + 8
    why = f"4 B log-softmax{f' and {c} B soft-cap tanh' if cap else ''} kept, 8 B of gradients at the backward pass's start"
    return Term("full logits (logps_chunk_size 0)", f"{setup.tokens:,} positions x {shape.vocab:,} x {size} B ({why})",
                setup.tokens * shape.vocab * size)


def reference_term(shape: ModelShape, setup: Setup) -> Term:
    if setup.reference == "live":
        loaded = BYTES[setup.weight_dtype]
        return Term("reference model (live)", f"{shape.parameters():,} x {loaded} B ({setup.weight_dtype}, a whole frozen copy on every device)",
                    shape.parameters() * loaded)
    why = "the loss needs none" if setup.reference == "none" else "log-probs computed once before training and cached"
    return Term("reference model", why, 0)


def plan_memory(shape: ModelShape, setup: Setup) -> Plan:
    if setup.sharding not in SHARDINGS:
        raise RecipeError(f"sharding must be one of {', '.join(SHARDINGS)}, got {setup.sharding!r}")
    states = model_states(shape, setup)
    built = None if setup.gradients_held else states.pop(1)
    # whole, before any reduce-scatter: in the 16-bit compute copy's dtype under DeepSpeed and FSDP
    gradient_bytes = 2 if setup.sharding not in ("none",) and setup.mixed else BYTES[setup.weight_dtype]
    head_gradient = shape.vocab * shape.hidden * gradient_bytes
    return Plan(shape, setup, states, activations(shape, setup, setup.checkpointing), activations(shape, setup, not setup.checkpointing),
                step_terms(shape, setup), [Term("CUDA context and workspaces", "assumed", int(RUNTIME_GIB * GIB))], built,
                head_gradient=head_gradient, tied_gradient=head_gradient if shape.tied else 0)
