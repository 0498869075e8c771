"""A reward model as a judge: a sequence classifier scores each answer alone, and the scores compare.

Each answer is scored as the conversation [user: the instruction or question, assistant: the answer]
by `rewards.reward_model.RewardModel` (its chat template, its length limit keeping the start; a cut
answer is counted in `truncated`). The answers are never shown together, so their order cannot matter.

- AlpacaEval: preference = 1 + sigmoid(score(model output) - score(reference output)), the
  Bradley-Terry probability that the model's output is better, on AlpacaEval's [1, 2] scale.
- Arena-Hard: "A>B" when A scores higher, "B>A" when B does, "A=B" on equal scores; a reward model
  says nothing of how much better, so it never gives "A>>B" or "B>>A".
"""

from __future__ import annotations

import math

from .judges import Judge


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    return math.exp(x) / (1.0 + math.exp(x))  # no overflow for a large negative x


class RewardJudge(Judge):
    def __init__(self, model: str, dtype: str | None = None, batch_size: int = 8, trust_remote_code: bool = False,
                 max_length: int | None = None):
        from ..rewards.reward_model import RewardModel

        super().__init__(f"reward:{model}")
        self.reward_model = RewardModel({"model": model, "trust_remote_code": trust_remote_code, "dtype": dtype or "auto",
                                         "batch_size": batch_size, "max_length": max_length})

    def _scores(self, pairs: list[tuple[str, str]]) -> list[float]:
        """The reward of each (prompt, answer), counting conversations cut to the model's limit."""
        conversations = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}] for prompt, answer in pairs]
        tokenizer, limit = self.reward_model.tokenizer, self.reward_model.max_length
        for messages in conversations:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > limit:
                self.count("truncated")
        return self.reward_model.score(conversations)

    def prefer(self, items: list[tuple[str, str, str]]) -> list[float | None]:
        self.count("requests", len(items))
        scores = self._scores([(instruction, answer) for instruction, model_output, reference in items
                               for answer in (model_output, reference)])
        return [1.0 + _sigmoid(scores[2 * i] - scores[2 * i + 1]) for i in range(len(items))]

    def verdicts(self, games: list[tuple[str, str, str, str]]) -> list[str | None]:
        self.count("requests", len(games))
        scores = self._scores([(question, answer) for question, _category, answer_a, answer_b in games
                               for answer in (answer_a, answer_b)])
        verdicts = []
        for i in range(len(games)):
            score_a, score_b = scores[2 * i], scores[2 * i + 1]
            verdicts.append("A>B" if score_a > score_b else "B>A" if score_b > score_a else "A=B")
        return verdicts
