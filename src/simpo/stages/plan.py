"""`simpo plan RECIPE.yaml --gpus N --gpu-memory GB [--zero 0-3 | --fsdp]`: per-device memory of
training the recipe, with the arithmetic shown, and whether it fits.

Only the model's config.json is read (`models.shape`), never its weights; the arithmetic is
`training.memory`'s. A recipe is read for a GPU: `torch_dtype: auto` and `bf16: auto` mean bf16,
as on a GPU that computes it (A100, H100). Recipe keys can be overridden as for `simpo train`
(`--per_device_train_batch_size 1`). GB means GiB (2^30 bytes), as nvidia-smi's MiB / 1024.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

from ..config.recipe import load_recipe
from ..errors import OptionParser, RecipeError, option_rows
from ..models.shape import ModelShape, find_model_config, read_config
from ..training.memory import GIB, MARGIN, Plan, Setup, plan_memory

OPTIONS = (  # (flag, argparse settings, help default): the parser and `simpo plan --help` are both made from these
    ("--gpus", {"type": int, "required": True, "help": "Devices the run is spread over (accelerate's num_processes)"}),
    ("--gpu-memory", {"type": float, "required": True, "help": "Memory of one device in GB (GiB: an 80 GB A100 or H100 is 80)"}),
    ("--zero", {"type": int, "default": None, "help": "DeepSpeed ZeRO stage 0-3 (0: DeepSpeed without sharding); unset and no --fsdp: DDP, no sharding"}),
    ("--config", {"type": str, "default": None, "help": "The model's config.json (or its folder), for a hub model not on disk"}),
)
OPTION_ROWS = option_rows(OPTIONS) + [("--fsdp", "flag", "off", "FSDP full sharding (accelerate's fsdp), instead of --zero"),
                ("--json", "flag", "off", "The plan as one JSON object"),
                ("--key value", "any", "-", "Any recipe key, as for simpo train (e.g. --per_device_train_batch_size 1)")]


def parse_options(tokens: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the rest of the tokens: recipe overrides (`--key value`)."""
    parser = OptionParser.of("simpo plan", "recipe", OPTIONS, allow_abbrev=False)
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--json", action="store_true")
    options, overrides = parser.parse_known_args(tokens)
    if options.gpus < 1:
        parser.error(f"--gpus must be 1 or more, got {options.gpus}")
    if not (math.isfinite(options.gpu_memory) and options.gpu_memory > 0):
        parser.error(f"--gpu-memory must be a positive number of GB, got {options.gpu_memory}")
    if options.zero is not None and options.zero not in (0, 1, 2, 3):
        parser.error(f"--zero must be a ZeRO stage 0, 1, 2 or 3, got {options.zero}")
    if options.zero is not None and options.fsdp:
        parser.error("--zero and --fsdp are two engines: choose one")
    return options, overrides


def _sharding(options: argparse.Namespace) -> str:
    if options.fsdp:
        return "fsdp"
    return "none" if options.zero is None else f"zero{options.zero}"


def setup_for(recipe, options: argparse.Namespace) -> Setup:
    """The recipe's settings as a GPU run resolves them."""
    args, model = recipe.training, recipe.model
    if args.needs_reference:
        reference = "cached" if args.precompute_ref_logps else "live"
    else:
        reference = "none"
    bf16 = recipe.raw.get("bf16", False)
    attention = model.attn_implementation or "sdpa"
    return Setup(
        gpus=options.gpus, gpu_memory_gib=options.gpu_memory, sharding=_sharding(options),
        weight_dtype={None: "float32", "auto": "bfloat16"}.get(model.torch_dtype, model.torch_dtype),
        mixed=bf16 in (True, "auto") or bool(args.fp16), optim=str(getattr(args.optim, "value", args.optim)),
        pairs=args.per_device_train_batch_size, max_length=args.max_length, checkpointing=bool(args.activation_checkpointing),
        chunk=args.logps_chunk_size, attention=attention, reference=reference, accumulation=args.gradient_accumulation_steps,
        shared_prompt=args.padding_free and args.share_prompt and attention in ("eager", "sdpa"),
    )


def _refuse_sft_recipe(path: str) -> None:
    """An SFT recipe fails as a training recipe on its own keys; say what it is instead."""
    from ..config.sft import load_sft_recipe

    try:
        load_sft_recipe(path, [])
    except (RecipeError, OSError):
        return
    raise RecipeError(f"{path} is an SFT recipe (simpo sft); simpo plan sizes preference-training recipes (simpo train)")


def make_plan(tokens: list[str]) -> tuple[Plan, dict]:
    """The plan of a command line, and what it was made from."""
    options, overrides = parse_options(tokens)
    simpo_log = logging.getLogger("simpo")
    level = simpo_log.level
    simpo_log.setLevel(logging.ERROR)  # what this machine computes bf16 at is beside the point: the plan is for a GPU
    try:
        recipe = load_recipe(options.recipe, overrides)
    except RecipeError:
        _refuse_sft_recipe(options.recipe)
        raise
    finally:
        simpo_log.setLevel(level)
    name = recipe.model.model_name_or_path
    if options.config:
        path, source = Path(options.config), f"--config {options.config}"
        path = path / "config.json" if path.is_dir() else path
    else:
        path, source = find_model_config(name, recipe.model.model_revision)
    shape = ModelShape.from_config(read_config(path, recipe.model.trust_remote_code), str(path))
    plan = plan_memory(shape, setup_for(recipe, options))
    return plan, {"recipe": options.recipe, "model": name, "config": source, "json": options.json}


ENGINE_TITLES = {"none": "no sharding (DDP)", "zero0": "DeepSpeed ZeRO-0 (no sharding)", "zero1": "DeepSpeed ZeRO-1", "zero2": "DeepSpeed ZeRO-2", "zero3": "DeepSpeed ZeRO-3", "fsdp": "FSDP"}


def _rows(title: str, terms) -> list[str]:
    return [title] + [f"  {term.name:<34}{term.bytes / GIB:>9.2f} GiB = {term.formula}" for term in terms]


def _sum(terms) -> int:
    return sum(term.bytes for term in terms)


def render_text(plan: Plan, facts: dict) -> str:
    setup, shape = plan.setup, plan.shape
    engine = ENGINE_TITLES[setup.sharding] if setup.gpus > 1 or setup.sharding != "none" else "one device"
    precision = f"weights loaded in {setup.weight_dtype}, " + ("bf16 mixed precision" if setup.mixed else "no mixed precision")
    checkpointing = f"gradient_checkpointing: {str(setup.checkpointing).lower()}"
    backward, step = _sum(plan.activations), _sum(plan.step)
    lines = [f"simpo plan: {facts['recipe']} on {setup.gpus} GPU{'s' if setup.gpus > 1 else ''} x {setup.gpu_memory_gib:g} GiB, {engine}",
             f"model: {facts['model']} ({shape.model_type}; config: {facts['config']})"]
    lines += [f"  {line}" for line in shape.parameter_lines()]
    lines += [f"precision: {precision}; optimizer {setup.optim}; attention {setup.attention}",
              f"micro-batch: {setup.pairs} pairs x 2 responses x {setup.max_length:,} tokens (max_length) = {setup.tokens:,} tokens,"
              " the worst case: every sequence at max_length, every position scored", "", "per device"]
    lines += _rows("held throughout", plan.states + plan.runtime)
    lines += _rows(f"backward pass ({checkpointing})", plan.activations)
    if plan.built is not None:
        lines += _rows(f"made by the backward pass as it frees the activations (gradient_accumulation_steps {setup.accumulation})", [plan.built])
    lines += _rows("optimizer step (after the backward pass has freed its activations)", plan.step)
    memory = setup.gpu_memory_gib
    other = f"gradient_checkpointing: {str(not setup.checkpointing).lower()}"
    end = [f"gradients {plan.built.bytes / GIB:.2f}"] if plan.built else []
    end += [f"the tied embeddings' gradient, made whole, {plan.tied_gradient / GIB:.2f}"] if plan.tied_gradient else []
    backward_text = (f"max(at its start: activations {backward / GIB:.2f} + the head's gradient, made whole, {plan.head_gradient / GIB:.2f};"
                     f" at its end: {' + '.join(end) or '0'}) = {plan.backward(plan.activations) / GIB:.2f}")
    lines += ["", f"peak = held {_sum(plan.states + plan.runtime) / GIB:.2f} + max(backward {backward_text}, step {step / GIB:.2f})"
              f" = {plan.total / GIB:.2f} GiB of {memory:g} GiB: {plan.verdict()}",
              f"with {other} instead: backward {plan.backward(plan.other_activations) / GIB:.2f} GiB, peak {plan.other_total / GIB:.2f} GiB: "
              f"{plan.verdict(plan.other_total)}",
              f"(a plan fits when its peak is at most {MARGIN:.0%} of the device; the rest is for fragmentation and passing buffers)"]
    return "\n".join(lines)


def render_json(plan: Plan, facts: dict) -> str:
    def terms(values):
        return [{"name": t.name, "formula": t.formula, "bytes": t.bytes} for t in values]

    return json.dumps({
        "recipe": facts["recipe"], "model": facts["model"], "config": facts["config"], "model_type": plan.shape.model_type,
        "parameters": plan.shape.parameters(), "parameter_lines": plan.shape.parameter_lines(), "setup": asdict(plan.setup),
        "held": terms(plan.states + plan.runtime), "backward": terms(plan.activations), "step": terms(plan.step),
        "gradients_made_in_backward": None if plan.built is None else terms([plan.built])[0], "backward_bytes": plan.backward(plan.activations),
        "peak_bytes": plan.total, "gpu_memory_bytes": int(plan.setup.gpu_memory_gib * GIB), "fits": plan.fits(), "verdict": plan.verdict(),
        "other_checkpointing": {"gradient_checkpointing": not plan.setup.checkpointing, "backward": terms(plan.other_activations),
                                "peak_bytes": plan.other_total, "fits": plan.fits(plan.other_total)},
    }, indent=2)


def run_plan(tokens: list[str]) -> str:
    plan, facts = make_plan(tokens)
    return render_json(plan, facts) if facts["json"] else render_text(plan, facts)
