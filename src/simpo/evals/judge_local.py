"""A judge run here: any Hugging Face causal LM, deciding by log-probabilities under the official prompts.

The official messages (`judge_prompts`) are rendered with the judge model's chat template and a
generation prompt; a system message is folded into the first user turn where the template has no
system role. Nothing is sampled:

- AlpacaEval: the next-token log-probabilities of `m` and `M` (each must be one token of the judge's
  tokenizer); the judge's share for the second output shown is softmax over the two, P(M) / (P(m) +
  P(M)), mapped to the model's side as the OpenAI judge's is.
- Arena-Hard: each of the five verdicts `[[A>>B]]` ... `[[B>>A]]` scored as the assistant's answer
  (the sum of its tokens' log-probabilities, the verdict's own tokens after the prompt's); the most
  probable one is the verdict. The prompt runs once per game, its cache shared by the five.

An input longer than the judge's context (`max_position_embeddings`) gets its two answers cut from
the end, keeping their start, the longer one first, until it fits (`truncated`); one that does not
fit even with empty answers is None (`too_long`). A small model makes a weak judge: its numbers say
little about the leaderboards, and the card's table never calls them comparable (`evals.protocol`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from ..data.chat import fold_system, render, template_shows_system
from ..errors import RecipeError
from ..models.loading import resolve_model_path
from ..models.precision import DTYPES, resolve_dtype
from .judge_prompts import alpaca_eval_messages, arena_hard_messages
from .judges import VERDICTS, Judge, model_preference, shown_order

VERDICT_TEXTS = tuple(f"[[{verdict}]]" for verdict in VERDICTS)


def answer_budgets(first: int, second: int, budget: int) -> tuple[int, int]:
    """Tokens kept of two answers of `first` and `second` tokens within `budget`: a short answer
    whole, the rest to the other; two long ones half each."""
    keep_first = min(first, max(budget - second, budget // 2))
    return keep_first, min(second, budget - keep_first)


class LocalJudge(Judge):
    def __init__(self, model: str, dtype: str | None = None, batch_size: int = 8, max_length: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(f"local:{model}")
        path = resolve_model_path(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as err:
            raise RecipeError(f"judge {self.name} cannot be loaded ({err}): give a model folder, a hub name or "
                              "the alias smollm2-135m-instruct") from None
        if not self.tokenizer.chat_template:
            raise RecipeError(f"judge {self.name} has no chat template: use an instruction-tuned judge model")
        self.identifier_ids = self._identifier_ids()
        self.verdict_ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in VERDICT_TEXTS]
        self.shows_system = template_shows_system(self.tokenizer)
        dtype_name = resolve_dtype(dtype or "auto", "judge dtype")
        if dtype_name not in DTYPES:
            raise RecipeError(f"judge dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype_name]).eval()
        if torch.cuda.is_available():
            self.model = self.model.to("cuda")
        self.context = getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        if max_length is not None:  # a shorter input costs less: attention grows with its square
            self.context = min(self.context, max_length)
        self.batch_size = batch_size
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def _identifier_ids(self) -> tuple[int, int]:
        ids = [self.tokenizer(identifier, add_special_tokens=False)["input_ids"] for identifier in ("m", "M")]
        if any(len(token_ids) != 1 for token_ids in ids) or ids[0] == ids[1]:
            raise RecipeError(f"judge {self.name}: its tokenizer does not write m and M as two distinct single tokens "
                              f"(it gives {ids}), so it cannot judge AlpacaEval by their log-probabilities; use another judge")
        return ids[0][0], ids[1][0]

    # --- prompts ---

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The token ids of the judge's prompt: the messages rendered with a generation prompt."""
        if not self.shows_system:
            messages = fold_system(messages)
        return self.tokenizer(render(self.tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]

    def fit(self, build: Callable[[str, str], list[dict]], first: str, second: str, reserve: int) -> list[int] | None:
        """The prompt ids of `build(first, second)`, the answers cut from their end until the prompt and
        `reserve` more tokens fit the judge's context; None when not even empty answers fit."""
        limit = self.context - reserve
        ids = self.prompt_ids(build(first, second))
        if len(ids) <= limit:
            return ids
        budget = limit - len(self.prompt_ids(build("", "")))
        answers = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in (first, second)]
        while budget >= 0:
            keep = answer_budgets(len(answers[0]), len(answers[1]), budget)
            cut = [self.tokenizer.decode(tokens[:count]) for tokens, count in zip(answers, keep)]
            ids = self.prompt_ids(build(*cut))
            if len(ids) <= limit:
                self.count("truncated")
                return ids
            budget -= max(1, len(ids) - limit)  # retokenizing the cut text can merge differently
        self.count("too_long")
        return None

    # --- forward passes ---

    def _left_padded(self, prompts: list[list[int]]):
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # every prompt ends in the last column
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        device = self.model.device
        return input_ids.to(device), attention_mask.to(device), positions.to(device)

    def _batches(self, prompts: list[list[int] | None], score: Callable[[list[list[int]]], torch.Tensor]) -> list:
        """`score` of every prompt that is not None, in batches of similar lengths; None elsewhere."""
        results: list = [None] * len(prompts)
        order = sorted((i for i, ids in enumerate(prompts) if ids is not None), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            with torch.inference_mode():
                rows = score([prompts[i] for i in chunk])
            for i, values in zip(chunk, rows.double().cpu()):
                results[i] = values
        return results

    def identifier_logps(self, prompts: list[list[int]]) -> torch.Tensor:
        """[prompts, 2]: the next-token log-probabilities of m and M after each prompt."""
        input_ids, attention_mask, positions = self._left_padded(prompts)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                            use_cache=False, logits_to_keep=1).logits[:, -1].float()
        return logits.log_softmax(-1)[:, list(self.identifier_ids)]

    def verdict_logps(self, prompts: list[list[int]]) -> torch.Tensor:
        """[prompts, 5]: the log-probability of each verdict text as the answer to each prompt."""
        from transformers import DynamicCache

        input_ids, attention_mask, positions = self._left_padded(prompts)
        cache = DynamicCache(config=self.model.config)
        first = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                           cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float().log_softmax(-1)
        scores = first[:, [ids[0] for ids in self.verdict_ids]]
        width = max(len(ids) for ids in self.verdict_ids) - 1
        if width == 0:
            return scores
        copies = len(self.verdict_ids)
        cache.batch_repeat_interleave(copies)
        # Row r * copies + v continues prompt r with verdict v (all but its last token, right-padded).
        rest = torch.full((len(prompts) * copies, width), self.pad_id, dtype=torch.long)
        rest_mask = torch.zeros_like(rest)
        for row in range(len(prompts)):
            for v, ids in enumerate(self.verdict_ids):
                rest[row * copies + v, : len(ids) - 1] = torch.tensor(ids[:-1], dtype=torch.long)
                rest_mask[row * copies + v, : len(ids) - 1] = 1
        device = self.model.device
        mask = torch.cat([attention_mask.repeat_interleave(copies, 0), rest_mask.to(device)], dim=1)
        rest_positions = positions[:, -1:].repeat_interleave(copies, 0) + 1 + torch.arange(width, device=device)
        logps = self.model(input_ids=rest.to(device), attention_mask=mask, position_ids=rest_positions,
                           cache=cache, use_cache=True).logits.float().log_softmax(-1)
        logps = logps.view(len(prompts), copies, width, -1)
        for v, ids in enumerate(self.verdict_ids):
            for t, token in enumerate(ids[1:]):
                scores[:, v] += logps[:, v, t, token]
        return scores

    # --- the interface ---

    def prefer(self, items: list[tuple[str, str, str]]) -> list[float | None]:
        prompts, model_first = [], []
        for instruction, model_output, reference_output in items:
            self.count("requests")
            output_1, output_2, first = shown_order(instruction, model_output, reference_output)
            prompts.append(self.fit(partial(alpaca_eval_messages, instruction), output_1, output_2, reserve=0))
            model_first.append(first)
        logps = self._batches(prompts, self.identifier_logps)
        return [None if pair is None else model_preference(float(torch.sigmoid(pair[1] - pair[0])), first)
                for pair, first in zip(logps, model_first)]

    def verdicts(self, games: list[tuple[str, str, str, str]]) -> list[str | None]:
        reserve = max(map(len, self.verdict_ids))
        prompts = []
        for question, category, answer_a, answer_b in games:
            self.count("requests")
            prompts.append(self.fit(partial(arena_hard_messages, question, category), answer_a, answer_b, reserve=reserve))
        scores = self._batches(prompts, self.verdict_logps)
        return [None if row is None else VERDICTS[int(row.argmax())] for row in scores]
