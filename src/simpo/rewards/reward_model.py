"""Reward models: a Hugging Face sequence classifier scores the conversation.

The conversation is rendered with the reward model's own chat template and truncated to its limit
(keeping the start); the score is `output.score` when the model returns one (ArmoRM's convention,
with `trust_remote_code`), else the first logit. The weights load in `dtype`, `auto` unless set (bf16
where the machine computes it natively, else fp32). Rows are batched longest first: rows of like
length pad together, and a batch too large for memory fails on the first batch rather than the last.
"""

from __future__ import annotations

import torch

from ..errors import RecipeError
from ..models.loading import resolve_model_path
from ..models.precision import DTYPES, resolve_dtype


def check_reward_model(name: str, trust_remote_code: bool = False) -> None:
    """Fail early unless `name` is a sequence classifier (a causal LM would get a random score head)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name), trust_remote_code=trust_remote_code)
    except Exception as err:
        raise RecipeError(f"reward model {name} cannot be loaded: {err}") from None
    architectures = config.architectures or []
    if "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {}):
        if not trust_remote_code:  # transformers would load its own class instead, with a random score head
            raise RecipeError(f"reward model {name} scores with its own code (auto_map in its config.json); "
                              "set trust_remote_code: true in its reward spec if you trust that code")
        return
    if not any(arch.endswith("ForSequenceClassification") for arch in architectures):
        raise RecipeError(
            f"reward model {name} is not a sequence classifier (its architectures: {architectures or 'none'}); "
            "use a model trained as a reward model, such as RLHFlow/ArmoRM-Llama3-8B-v0.1"
        )


class RewardModel:
    def __init__(self, spec: dict):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        trust = spec.get("trust_remote_code") is True  # only a real true: config.pipeline converts "false" to False
        check_reward_model(spec["model"], trust)
        path = resolve_model_path(spec["model"])
        dtype = DTYPES[resolve_dtype(spec.get("dtype") or "auto", "reward_model.dtype")]
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype, trust_remote_code=trust).eval()
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
        """Each conversation's score, in input order; batched longest first (equal lengths in input order)."""
        ids = [self._ids(messages) for messages in conversations]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)  # stable: reverse keeps ties in input order
        pad = self.tokenizer.pad_token_id
        scores = [0.0] * len(ids)
        for start in range(0, len(order), self.batch_size):
            indices = order[start : start + self.batch_size]
            batch = [ids[i] for i in indices]
            # Classifiers find each row's last token by the pad id; when a conversation contains
            # that id (pad == eos), padding would move its score token, so such rows go alone.
            if len(batch) > 1 and pad is not None and any(pad in row for row in batch):
                values = [self._forward([row])[0] for row in batch]
            else:
                values = self._forward(batch)
            for i, value in zip(indices, values):
                scores[i] = value
        return scores
