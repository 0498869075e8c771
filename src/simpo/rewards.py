"""Rewards for generated responses: programmatic checks for verifiable tasks, and reward models.

- `numeric_answer`: 1 when the last number in the response equals the row's reference answer
  (`answer`, or the key given as `answer_key`), else 0.
- `constraints`: the fraction of the row's `constraints` that the response meets, from
  `max_words` (a count), `lowercase` (true: no capital letter) and `keywords` (each must appear,
  case-insensitively).
- `reward_model`: a Hugging Face sequence classifier scores the conversation rendered with its own
  chat template, truncated to its limit (keeping the start); the score is `output.score` when the
  model returns one (ArmoRM's convention), else the first logit.
A recipe's rewards are combined as the weighted sum of their scores.
"""

from __future__ import annotations

import math
import re

import torch

from .config import RecipeError

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    found = _NUMBER.findall(str(text))
    return float(found[-1].replace(",", "")) if found else None


def numeric_answer(response: str, reference) -> float:
    value, expected = parse_number(response), parse_number(reference)
    return float(value is not None and math.isclose(value, expected, rel_tol=0, abs_tol=1e-6))


def constraints_met(response: str, constraints: dict) -> float:
    checks = []
    if "max_words" in constraints:
        checks.append(len(response.split()) <= constraints["max_words"])
    if constraints.get("lowercase"):
        checks.append(response == response.lower())
    for keyword in constraints.get("keywords", []):
        checks.append(keyword.lower() in response.lower())
    return sum(checks) / len(checks) if checks else 1.0


def check_references(rewards: list[dict], rows: list[dict], label: str) -> None:
    """Fail before any work when a programmatic reward cannot find what it checks against."""
    for reward in rewards:
        if reward["type"] == "numeric_answer":
            key = reward.get("answer_key", "answer")
            for row in rows:
                if parse_number(row.get(key)) is None:
                    raise RecipeError(
                        f"{label}, row {row.get('row', '?')}: the numeric_answer reward needs a reference number "
                        f"in {key!r}, got {row.get(key)!r}; add it to every prompt row or drop this reward"
                    )
        elif reward["type"] == "constraints":
            for row in rows:
                if not isinstance(row.get("constraints"), dict):
                    raise RecipeError(f"{label}, row {row.get('row', '?')}: the constraints reward needs a 'constraints' mapping")


def check_reward_model(name: str, trust_remote_code: bool = False) -> None:
    """Fail early unless `name` is a sequence classifier (a causal LM would get a random score head)."""
    from transformers import AutoConfig

    from .models import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name), trust_remote_code=trust_remote_code)
    except Exception as err:
        raise RecipeError(f"reward model {name} cannot be loaded: {err}") from None
    architectures = config.architectures or []
    if "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {}):
        return
    if not any(arch.endswith("ForSequenceClassification") for arch in architectures):
        raise RecipeError(
            f"reward model {name} is not a sequence classifier (its architectures: {architectures or 'none'}); "
            "use a model trained as a reward model, such as RLHFlow/ArmoRM-Llama3-8B-v0.1"
        )


class RewardModel:
    def __init__(self, spec: dict):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .models import resolve_model_path

        check_reward_model(spec["model"], spec.get("trust_remote_code", False))
        path = resolve_model_path(spec["model"])
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(spec.get("dtype"), torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.get("trust_remote_code", False))
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype, trust_remote_code=spec.get("trust_remote_code", False)
        ).eval()
        if torch.cuda.is_available():
            self.model = self.model.to("cuda")
        limit = getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        self.max_length = spec.get("max_length") or limit
        self.batch_size = spec.get("batch_size", 8)

    def _ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_length]

    def _forward(self, batch: list[list[int]]) -> list[float]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(map(len, batch))
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(batch):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention_mask[i, : len(ids)] = 1
        with torch.inference_mode():
            output = self.model(input_ids=input_ids.to(self.model.device), attention_mask=attention_mask.to(self.model.device))
        scores = output.score if getattr(output, "score", None) is not None else output.logits[:, 0]
        return scores.float().reshape(len(batch), -1)[:, 0].tolist()

    def score(self, conversations: list[list[dict]]) -> list[float]:
        ids = [self._ids(messages) for messages in conversations]
        pad = self.tokenizer.pad_token_id
        scores = []
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size]
            # Classifiers find each row's last token by the pad id; when a conversation contains
            # that id (pad == eos), padding would move its score token, so such rows go alone.
            if len(batch) > 1 and pad is not None and any(pad in row for row in batch):
                scores += [self._forward([row])[0] for row in batch]
            else:
                scores += self._forward(batch)
        return scores


class Scorer:
    """The weighted sum of a recipe's rewards for every response of a generated row."""

    def __init__(self, rewards: list[dict]):
        self.rewards = rewards
        self.models = {i: RewardModel(spec) for i, spec in enumerate(rewards) if spec["type"] == "reward_model"}

    def score_rows(self, rows: list[dict], messages_of) -> list[list[float]]:
        totals = [[0.0] * len(row["all_generated_responses"]) for row in rows]
        for i, spec in enumerate(self.rewards):
            weight = spec.get("weight", 1.0)
            if spec["type"] == "reward_model":
                conversations = [messages_of(row) + [{"role": "assistant", "content": text}]
                                 for row in rows for text in row["all_generated_responses"]]
                flat = iter(self.models[i].score(conversations))
                values = [[next(flat) for _ in row["all_generated_responses"]] for row in rows]
            elif spec["type"] == "numeric_answer":
                key = spec.get("answer_key", "answer")
                values = [[numeric_answer(text, row[key]) for text in row["all_generated_responses"]] for row in rows]
            else:
                values = [[constraints_met(text, row["constraints"]) for text in row["all_generated_responses"]] for row in rows]
            for total, row_values in zip(totals, values):
                for j, value in enumerate(row_values):
                    total[j] += weight * value
        return totals
