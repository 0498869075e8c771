"""A recipe's rewards combined: the weighted sum of their scores for every response of a row."""

from __future__ import annotations

from .programmatic import constraints_met, numeric_answer
from .reward_model import RewardModel


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
