"""The model card: a trained model folder's README.md, as the Hugging Face hub reads it.

`render_card(facts)` writes the card from `CardFacts`, everything it states read from the run
(`stages/card.py` gathers them): YAML front matter with the evaluation results as `model-index`,
what the model is and what it was trained on, how to run it with its real stop tokens, the
hyperparameters from `recipe.yaml`, the machine and wall time the run recorded itself
(`training/run_info.py`), the evaluation table of `evals.table`, the training curves, and the papers
to cite. `MARKER`, a comment after the front matter, tells a card simpo wrote (which `simpo card`
replaces) from a README.md the user wrote (which it never does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..evals.table import markdown_table
from ..training.losses import LOSSES
from ..training.run_info import TRAINING_KEYS

# A bundled alias: the hub model it was converted from, and that model's license (the GGUF's
# `general.license`).
BUNDLED_ORIGINS = {"smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"), "gemma3-270m": ("google/gemma-3-270m", "gemma")}
METHODS = {
    "simpo": "SimPO", "sigmoid": "SimPO", "hinge": "SimPO (hinge loss)", "dpo": "DPO", "ipo": "IPO", "cpo": "CPO",
    "kto_pair": "KTO (paired)", "orpo": "ORPO", "rdpo": "R-DPO", "rrhf": "RRHF", "slic_hf": "SLiC-HF",
}
METRIC_NAMES = {
    "lc": "length-controlled win rate", "wr": "win rate", "wr_se": "win rate standard error", "score": "score",
    "ci_lower": "score, 95% interval low", "ci_upper": "score, 95% interval high", "accuracy": "accuracy",
}
CITATIONS = {  # benchmark -> BibTeX; SimPO's is always cited
    "simpo": """@article{meng2024simpo,
  title   = {{SimPO}: Simple Preference Optimization with a Reference-Free Reward},
  author  = {Meng, Yu and Xia, Mengzhou and Chen, Danqi},
  journal = {arXiv preprint arXiv:2405.14734},
  year    = {2024}
}""",
    "alpaca_eval": """@article{dubois2024lcalpacaeval,
  title   = {Length-Controlled {AlpacaEval}: A Simple Way to Debias Automatic Evaluators},
  author  = {Dubois, Yann and Galambosi, Bal{\\'a}zs and Liang, Percy and Hashimoto, Tatsunori B.},
  journal = {arXiv preprint arXiv:2404.04475},
  year    = {2024}
}""",
    "arena_hard": """@article{li2024arenahard,
  title   = {From Crowdsourced Data to High-Quality Benchmarks: {Arena-Hard} and {BenchBuilder} Pipeline},
  author  = {Li, Tianle and Chiang, Wei-Lin and Frick, Evan and Dunlap, Lisa and Wu, Tianhao and Zhu, Banghua and Gonzalez, Joseph E. and Stoica, Ion},
  journal = {arXiv preprint arXiv:2406.11939},
  year    = {2024}
}""",
}


def base_model_id(name: str) -> str:
    """The base model as the hub knows it: a bundled alias becomes the model it was converted from."""
    return BUNDLED_ORIGINS[name][0] if name in BUNDLED_ORIGINS else name


@dataclass
class CardFacts:
    """What the card states, as read from the run."""

    name: str  # the card's title and its model-index name
    model_path: str  # the model folder, as the command line named it
    recipe: dict  # recipe.yaml
    log_history: list[dict]  # trainer_state.json's
    stop_tokens: list[tuple[str, int]]  # (token, id) of `data.chat.stop_token_ids`
    datasets: list[dict]  # {"source", "fraction", "hub": bool, "pairs": {split: rows} | None}
    run_info: dict = field(default_factory=dict)  # run_info.json; empty for runs made before it existed
    base_license: str | None = None
    on_policy: dict | None = None  # a pipeline run's generate settings and rewards
    pipeline_seconds: dict | None = None  # seconds per stage, summed over the runs in pipeline.json
    rounds: list[dict] | None = None  # pipeline.json's rounds (`rounds: N` above 1): what each round did
    results: dict | None = None  # `evals.table.load_results`; None when there are none
    own_results: dict = field(default_factory=dict)  # benchmark -> result of this model
    eval_folder: str = ""
    curves_link: str | None = None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes = round(seconds) // 60
    return f"{minutes} min {round(seconds) % 60} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def model_index(name: str, own_results: dict) -> list[dict]:
    """The hub's `model-index`: one result per benchmark, one metric per number it measured."""
    results = []
    for benchmark, result in own_results.items():
        metrics = [
            {"name": METRIC_NAMES.get(key, key) if key != "length" else f"mean length ({result['length_unit']})",
             "type": key, "value": value, "verified": False}
            for key, value in result["metrics"].items() if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        results.append({"task": {"type": "text-generation"}, "dataset": {"name": result["dataset"], "type": benchmark},
                        "metrics": metrics})
    return [{"name": name, "results": results}] if results else []


def front_matter(facts: CardFacts) -> str:
    recipe = facts.recipe
    loss_type = recipe.get("loss_type", "simpo")
    tags = ["simpo", "preference-optimization"] + ([loss_type] if loss_type not in ("simpo", "sigmoid") else [])
    meta = {"base_model": base_model_id(recipe["model_name_or_path"]), "library_name": "peft" if recipe.get("use_peft") else "transformers",
            "pipeline_tag": "text-generation", "license": facts.base_license or "other", "tags": tags}
    hub = [source["source"] for source in facts.datasets if source["hub"]]
    if hub:
        meta["datasets"] = hub
    index = model_index(facts.name, facts.own_results)
    if index:
        meta["model-index"] = index
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"


def _hub_link(name: str, kind: str = "") -> str:
    return f"[{name}](https://huggingface.co/{kind}{name})"


def description(facts: CardFacts) -> str:
    recipe = facts.recipe
    given = recipe["model_name_or_path"]
    base = base_model_id(given)
    is_hub = base != given or (not Path(given).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", given) is not None)
    loss_type = recipe.get("loss_type", "simpo")
    method = METHODS.get(loss_type, loss_type)
    lines = [f"# {facts.name}", ""]
    shown = _hub_link(base) if is_hub else f"the local model `{given}`"
    if base != given:
        shown += f" (the bundled alias `{given}` of `simpo`)"
    text = f"This model is {shown} fine-tuned on preference pairs with {method} by `simpo`"
    if loss_type in ("simpo", "sigmoid", "hinge"):
        text += (". SimPO (Meng, Xia and Chen, 2024) scores a response by its mean per-token log-probability under the "
                 "model being trained, scaled by beta, and trains the chosen response of each pair to outscore the "
                 "rejected one by a margin gamma; it needs no reference model.")
    else:
        text += f", one of the baselines of the SimPO paper (`loss_type: {loss_type}`)."
    if recipe.get("use_peft"):
        text += (f" This folder holds a LoRA adapter of that base model (rank {recipe.get('lora_r', 16)}), not a full model: "
                 f"`transformers` loads it as below when `peft` is installed, and `simpo merge {facts.model_path}` writes the "
                 "merged full model.")
    if facts.base_license is None:
        text += (" The license field says `other` because the base model's license could not be read here: this model "
                 "is a derivative of the base model, so check the base model's license before using or sharing it.")
    return "\n".join([*lines, text])


def training_data(facts: CardFacts) -> str:
    lines = ["## Training data", ""]
    for source in facts.datasets:
        share = "" if source["fraction"] == 1 else f", {source['fraction']:g} of its training rows"
        counts = source.get("pairs") or {}
        sizes = f" ({', '.join(f'{n} {split} pairs' for split, n in counts.items())})" if counts else ""
        where = _hub_link(source["source"], "datasets/") if source["hub"] else f"`{source['source']}`, a local dataset not published with this card"
        lines.append(f"- {where}{sizes}{share}")
    if facts.on_policy:
        lines += ["", on_policy_text(facts.on_policy)]
    if facts.rounds:
        lines += ["", rounds_text(facts.rounds)]
    return "\n".join(lines)


def rounds_text(rounds: list[dict]) -> str:
    """The on-policy rounds, one table row each: round 0 is the starting model."""
    def cell(record: dict, key: str, form: str) -> str:
        return "-" if record.get(key) is None else format(record[key], form)

    lines = [f"Training ran in {len(rounds) - 1} on-policy rounds: round k sampled from, and trained, round k-1's model "
             "(round 0 is the base model, evaluated only). Held-out accuracy and answers are greedy, on the held-out prompts; "
             "the samples' score, pairs and lengths are those of the round's own pairs.", "",
             "| round | held-out accuracy | mean answer length | answers repeating | samples' mean score | prompts with a pair "
             "| chosen length | rejected length |", "|---|---|---|---|---|---|---|---|"]
    for record in rounds:
        lines.append(f"| {record['round']} | {cell(record, 'accuracy', '.4f')} | {cell(record, 'mean_length_tokens', '.1f')} | "
                     f"{cell(record, 'repetitive', '.0%')} | {cell(record, 'mean_score', '.3f')} | {cell(record, 'pair_share', '.0%')} | "
                     f"{cell(record, 'chosen_length', '.1f')} | {cell(record, 'rejected_length', '.1f')} |")
    return "\n".join(lines)


def on_policy_text(settings: dict) -> str:
    """How `simpo pipeline` made the pairs, from its stages' manifests."""
    generate = settings.get("generate", {})
    rewards = ", ".join(f"{spec['type']}" + (f" (weight {spec['weight']:g})" if "weight" in spec else "") for spec in settings.get("rewards", []))
    seeds = generate.get("seeds", [])
    text = (f"The pairs are on-policy, made by `simpo pipeline`: the base model answered each of {generate.get('total_rows', 'the')} "
            f"prompts {len(seeds)} times (seeds {', '.join(map(str, seeds))}; temperature {generate.get('temperature')}, "
            f"top_p {generate.get('top_p')}, at most {generate.get('max_new_tokens')} new tokens)")
    text += f", every answer was scored by {rewards}" if rewards else ", every answer was scored"
    return text + (", and the best-scored answer of a prompt became the chosen response, the worst-scored the rejected one "
                   "(prompts whose answers all scored the same were left out).")


def usage(facts: CardFacts) -> str:
    stops = ", ".join(f"`{token}` (id {token_id})" for token, token_id in facts.stop_tokens)
    stop_ids = [token_id for _, token_id in facts.stop_tokens]
    snippet = f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "{facts.model_path}"  # this folder, or the hub name it is uploaded under
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id)

messages = [{{"role": "user", "content": "What is 12 * 7?"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
output = model.generate(**inputs, max_new_tokens=256, do_sample=False, eos_token_id={stop_ids})  # {", ".join(t for t, _ in facts.stop_tokens)}
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```"""
    return "\n".join([
        "## Getting started", "",
        f"Prompt the model through its chat template. It ends its turn with {stops}: stop generating at "
        f"{'this id' if len(stop_ids) == 1 else 'any of these ids'}, or the model runs on into a turn of its own "
        "(the folder's `generation_config.json` lists the same ids as `eos_token_id`).",
        "", snippet, "",
        "Or talk to it in a terminal (answers stream as they are generated; `/reset` starts over, an empty line ends):",
        "", f"```\nsimpo chat {facts.model_path}\n```",
    ])


def hyperparameter_rows(recipe: dict, run_info: dict) -> list[tuple[str, str]]:
    """(key, value) of the keys that shaped the run: the recipe's value, else the one the run resolved
    (recorded in `run_info.json`; for a run without it, the loss's defaults)."""
    loss_type = recipe.get("loss_type", "simpo")
    loss_keys = LOSSES[loss_type].keys if loss_type in LOSSES else {}
    resolved = run_info.get("hyperparameters") or {"loss_type": loss_type, **loss_keys}
    rows = []
    for key in dict.fromkeys([*resolved, *(key for key in recipe if key in TRAINING_KEYS)]):
        if key in recipe:
            value = _number(recipe[key])
            if key == "warmup_steps" and isinstance(recipe[key], float) and recipe[key] < 1:
                value += " (a fraction of the steps: warmup_ratio)"
        elif resolved.get(key) is not None and not (key == "max_steps" and resolved[key] <= 0):
            value = f"{_number(resolved[key])} (default)"
        else:
            continue
        rows.append((key, value))
    processes = run_info.get("processes")
    if processes and {"per_device_train_batch_size", "gradient_accumulation_steps"} <= resolved.keys():
        batch = resolved["per_device_train_batch_size"] * resolved["gradient_accumulation_steps"] * processes
        rows.append(("global batch (pairs per optimizer step)", f"{batch} ({processes} process{'es' * (processes > 1)})"))
    return rows


def training(facts: CardFacts) -> str:
    info = facts.run_info
    rows = hyperparameter_rows(facts.recipe, info)
    lines = ["## Training", "", "Hyperparameters, from the run's `recipe.yaml` (values marked default were not set there):", "",
             "| key | value |", "|---|---|"] + [f"| `{key}` | {value} |" for key, value in rows] + [""]
    if info:
        lines.append(f"Trained on {info['hardware']}, torch {info['torch']}, transformers {info['transformers']}, "
                     f"{'with' if info.get('bf16') else 'without'} bf16 autocast; `simpo train` took {_duration(info['seconds'])}.")
    else:
        lines.append("The run recorded no `run_info.json`, so its machine is not known.")
    runtime = next((entry["train_runtime"] for entry in reversed(facts.log_history) if "train_runtime" in entry), None)
    steps = max((entry.get("step", 0) for entry in facts.log_history), default=0)
    if runtime is not None:
        lines.append(f"The training loop ran {steps} optimizer steps in {_duration(runtime)} (`train_runtime`).")
    if facts.pipeline_seconds:
        stages = ", ".join(f"{name} {_duration(seconds)}" for name, seconds in facts.pipeline_seconds.items())
        lines.append(f"Time `simpo pipeline` spent on this folder (every run in the run folder's `pipeline.json`), stage by stage: {stages}.")
    if facts.curves_link:
        lines += ["", f"Loss, reward accuracy and margin, log-probs and learning rate by step: [training curves]({facts.curves_link})",
                  "", f"![training curves]({facts.curves_link})"]
    return "\n".join(lines)


def evaluation(facts: CardFacts) -> str:
    lines = ["## Evaluation", ""]
    if not facts.results:
        lines += [f"No evaluation results were found in `{facts.eval_folder}`. To add them, evaluate this model into that folder "
                  "(`simpo eval --help` lists the benchmarks, judges and limits), then write this card again with `simpo card`:",
                  "", f"```\nsimpo eval {facts.model_path} --output {facts.eval_folder}\n```"]
        return "\n".join(lines)
    lines += ["Measured by `simpo eval`. Each number carries a mark; its note below says what produced it, and whether it "
              "can stand beside published numbers.", "", markdown_table(facts.results)]
    if not facts.own_results:
        lines += ["", f"None of these rows is `{facts.model_path}` itself, so the front matter lists no results."]
    return "\n".join(lines)


def citations(facts: CardFacts) -> str:
    keys = ["simpo"] + [benchmark for benchmark in ("alpaca_eval", "arena_hard")
                        if any(benchmark in row for row in (facts.results or {}).values())]
    lines = ["## Citation", "", "The method:" if len(keys) == 1 else "The method, and the benchmarks reported above:", ""]
    return "\n".join(lines + ["```bibtex", "\n\n".join(CITATIONS[key] for key in keys), "```"])


# The line that marks a README.md as simpo's, which `simpo card` may replace: an HTML comment, which
# the hub does not show. A README.md without it is the user's, never replaced.
MARKER = "<!-- written by simpo card, which replaces this file when run again; delete this line to keep your edits -->"
# The template cards a library writes beside the weights it saves, which are replaced as simpo's own:
# peft's adapter card (the hub's default template) and the Trainer's automatic card.
LIBRARY_CARDS = ("<!-- Provide a quick summary of what the model is/does. -->",
                 "<!-- This model card has been generated automatically according to the information the Trainer had access to.")


def replaceable(text: str) -> bool:
    """Whether a README.md's text is a card `simpo card` may replace: it holds the marker, or it is a
    library's template card. A card from before the marker is kept like the user's: the marker is the sign."""
    return MARKER in text or any(mark in text for mark in LIBRARY_CARDS)


def render_card(facts: CardFacts) -> str:
    """The whole README.md."""
    sections = [front_matter(facts), MARKER, description(facts), training_data(facts), usage(facts), training(facts),
                evaluation(facts), citations(facts)]
    return "\n\n".join(sections) + "\n"
