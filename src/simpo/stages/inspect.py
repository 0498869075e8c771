"""`simpo inspect RECIPE.yaml`: the first rows of the training data exactly as the trainer scores them.

Only the tokenizer loads (a folder holding just the tokenizer files will do). The rows go through
the recipe's own rule (`tokenization`, truncation, the Mistral template under `official`) by the
encoder training uses. The text view shows the prompt as text and each scored response token
between `|` marks, with the tokens truncation cut; `--json` prints one object per row:
`prompt_ids` (what both sequences start with), `chosen_ids` and `rejected_ids` (the scored tokens),
and where a side's own prompt goes on past `prompt_ids` (a merge at the boundary under `official`),
`chosen_prompt_ids` / `rejected_prompt_ids`, that side's whole prompt.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from ..config.recipe import load_recipe
from ..data.encode import PairEncoder
from ..data.rows import Pair, read_pair
from ..data.sources import load_split
from ..errors import OptionParser, option_rows
from ..models.loading import load_tokenizer

OPTIONS = (  # (flag, argparse settings): the parser and `simpo inspect --help` are both made from these
    ("--split", {"type": str, "default": "train", "help": "The split to show"}),
    ("--rows", {"type": int, "default": 3, "help": "How many rows of each source"}),
)
OPTION_ROWS = option_rows(OPTIONS)
OPTION_ROWS.append(("--json", "flag", "off", "One JSON object of token ids per row instead of the text view"))


def parse_options(tokens: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the rest of the tokens: recipe overrides (`--key value`)."""
    parser = OptionParser.of("simpo inspect", "recipe", OPTIONS)
    parser.add_argument("--json", action="store_true")
    options, overrides = parser.parse_known_args(tokens)
    if options.rows < 1:
        parser.error(f"--rows must be 1 or more, got {options.rows}")
    return options, overrides


def inspect_rows(tokens: list[str]) -> str:
    options, overrides = parse_options(tokens)
    recipe = load_recipe(options.recipe, overrides)
    args = recipe.training
    tokenizer = load_tokenizer(recipe.model)
    encoder = PairEncoder.for_recipe(tokenizer, args, recipe.model.model_name_or_path)
    whole = replace(encoder, max_length=2**62, max_prompt_length=2**62 - 1)  # nothing cut: to show what truncation cut
    out = []
    for source in recipe.data.dataset_mixer:
        loaded = load_split(source, options.split)
        if loaded is None:
            continue
        label, rows = loaded
        for number in range(min(options.rows, len(rows))):
            where = f"{label}, row {number + 1}"
            pair = read_pair(rows[number], where)
            if not isinstance(pair, Pair):
                out.append(json.dumps({"source": label, "row": number + 1, "dropped": pair}) if options.json else f"== {where}: dropped ({pair})")
                continue
            kept = encoder.encode(pair, where)
            out.append(_json(label, number + 1, kept) if options.json else _text(tokenizer, where, kept, whole.encode(pair, where), args.tokenization))
    return "\n".join(out) if out else f"no rows: no source of {list(recipe.data.dataset_mixer)} has a split {options.split!r}"


def _sides(features: dict) -> dict[str, tuple[list[int], list[int]]]:
    """Per side: (its whole prompt, its scored tokens)."""
    sides = {}
    for side in ("chosen", "rejected"):
        ids, unscored = list(features[f"{side}_ids"]), features[f"{side}_unscored"]
        sides[side] = (list(features["prompt_ids"]) + ids[:unscored], ids[unscored:])
    return sides


def _json(label: str, row: int, features: dict) -> str:
    record = {"source": label, "row": row, "prompt_ids": list(features["prompt_ids"])}
    for side, (prompt, scored) in _sides(features).items():
        record[f"{side}_ids"] = scored
        if len(prompt) > len(features["prompt_ids"]):
            record[f"{side}_prompt_ids"] = prompt
    record.update(prompt_truncated=features["prompt_truncated"], response_truncated=features["response_truncated"])
    return json.dumps(record)


def _shown(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids).replace("\n", "\\n")


def _text(tokenizer, where: str, kept: dict, whole: dict, rule: str) -> str:
    kept_sides, whole_sides = _sides(kept), _sides(whole)
    counts = ", ".join(f"{side} {len(scored)}" for side, (_, scored) in kept_sides.items())
    lines = [f"== {where} ({rule} tokenization): prompt {len(kept_sides['chosen'][0])} tokens; scored: {counts}"]
    lines.append(f"prompt    {_shown(tokenizer, kept_sides['chosen'][0])}")
    cut = len(whole_sides["chosen"][0]) - len(kept_sides["chosen"][0])
    if cut:
        lines.append(f"          (truncation cut {cut} prompt tokens)")
    for side, (prompt, scored) in kept_sides.items():
        if prompt != kept_sides["chosen"][0]:
            lines.append(f"  {side} prompt  {_shown(tokenizer, prompt)}")
        lines.append(f"{side:<10}|" + "|".join(_shown(tokenizer, [token]) for token in scored) + "|")
        lost = len(whole_sides[side][1]) - len(scored)
        if lost:
            lines.append(f"          (truncation cut the last {lost} tokens: {_shown(tokenizer, whole_sides[side][1][len(scored):])[:120]})")
    return "\n".join(lines)
