"""What each benchmark asks the model, how it decodes by default, and how its answers are scored.

Generation defaults are the official evaluation settings: AlpacaEval samples as the
gemma-2-9b-it-SimPO entry of the `alpaca_eval` package's model configs does (temperature 0.5,
top_p 1.0, 4,096 new tokens); Arena-Hard answers as arena-hard-auto's answer generation does
(greedy, 4,096 new tokens); ZeroEval decodes greedily (4,096 new tokens). Every run stops at the
model's end-of-turn tokens and EOS, with the one BOS its chat template writes.

A task scores the outputs of one model: `judge_shard` asks the judge about one shard of items (the
unit a killed run resumes from), `score` turns outputs and judgments into the table's metrics.
"""

from __future__ import annotations

import hashlib

from . import arena_hard, benchmarks
from .judges import SHOWN_ORDER
from .loglik import mmlu_context, predict_letters
from .winrate import length_controlled_v1, length_controlled_win_rate, win_rate
from .zeroeval import multiple_choice_prompt, open_question_prompt, score_choice, score_open, summarize, wording


class Task:
    name, mode = "", "generate"
    temperature, top_p, max_new_tokens = 0.0, 1.0, 4096
    judged = False

    def load(self, options) -> tuple[str, list[dict]]:
        raise NotImplementedError

    def prompt(self, item: dict) -> str:
        raise NotImplementedError

    def shown(self, renderer, item: dict) -> str:
        """The exact text the model reads for `item`: its prompt under the model's chat template
        (kept in every record as `prompt`)."""
        return renderer.text([{"role": "user", "content": self.prompt(item)}])

    def judge_shard(self, judge, items: list[dict], outputs: list[str]) -> list:
        return []

    def judged_settings(self) -> dict:
        """What else, besides the answers and the judge, decides the judgments (it joins the judged
        folder's hash: a change asks the judge again)."""
        return {}

    def scoring_settings(self) -> dict:
        """What else decides the score of the same judgments (kept in the result: a result scored
        otherwise is scored again from the judgments, never read back stale)."""
        return {}

    def score(self, items: list[dict], outputs: list[str], judgments: list, count_tokens) -> dict:
        """{"metrics": ..., "length_unit": ..., "notes": [...], "records": [one dict per item]}"""
        raise NotImplementedError


class AlpacaEval(Task):
    """AlpacaEval 2. `load` also reads alpaca_eval's df_gamed.csv when there is one (`--alpaca-eval-gamed`,
    or the hub's with `--data hub`): `score` then computes the leaderboard's length_controlled_v1,
    else length_controlled_minimal."""

    name, temperature, top_p, judged = "alpaca_eval", 0.5, 1.0, True
    gamed = None  # (path, bytes, GamedAnnotations) of the df_gamed.csv of the last `load`

    def load(self, options):
        label, items = benchmarks.alpaca_eval(options.data)
        self.gamed = benchmarks.alpaca_eval_gamed(options.data, getattr(options, "alpaca_eval_gamed", None))
        return label, items

    def prompt(self, item):
        return item["instruction"]

    def judge_shard(self, judge, items, outputs):
        # As alpaca_eval's pairwise annotator does, an output equal to the reference is a draw (1.5),
        # never shown to the judge.
        preferences = [1.5 if output == item["reference"] else None for item, output in zip(items, outputs)]
        asked = [i for i, preference in enumerate(preferences) if preference is None]
        if asked:
            answers = judge.prefer([(items[i]["instruction"], outputs[i], items[i]["reference"]) for i in asked])
            for i, preference in zip(asked, answers):
                preferences[i] = preference
        return preferences

    def judged_settings(self):
        return {"order": "alpaca_eval", "equal_outputs": 1.5}

    def scoring_settings(self):
        return {} if self.gamed is None else {"alpaca_eval_gamed": hashlib.sha256(self.gamed[1]).hexdigest()}

    def score(self, items, outputs, judgments, count_tokens):
        kept = [i for i, p in enumerate(judgments) if p is not None]
        preferences = [judgments[i] for i in kept]
        wr = win_rate(preferences)
        if self.gamed is not None:
            variant = "length_controlled_v1"
            notes = [f"LC: length_controlled_v1, with the instruction difficulties and gamed baselines of {self.gamed[0]}"]
        else:
            variant = "length_controlled_minimal"
            notes = ["LC: length_controlled_minimal (the leaderboard's length_controlled_v1 needs alpaca_eval's df_gamed.csv: "
                     "--alpaca-eval-gamed PATH, or --data hub)"]
        try:
            if self.gamed is not None:
                lc = length_controlled_v1(judgments, [len(output) for output in outputs], [len(item["reference"]) for item in items],
                                          [item["id"] for item in items], self.gamed[2])["length_controlled_winrate"]
            else:
                lc = length_controlled_win_rate(preferences, [len(outputs[i]) for i in kept],
                                                [len(items[i]["reference"]) for i in kept])["length_controlled_winrate"]
        except ValueError as err:  # too few or perfectly separated judgments: the GLM has no fit
            lc = None
            notes.append(f"LC not computed: {err}")
        equal = sum(output == item["reference"] for item, output in zip(items, outputs))
        if equal:
            notes.append(f"{equal} outputs equal the reference: a draw (1.5) each, not judged")
        if len(kept) < len(items):
            notes.append(f"{len(items) - len(kept)} judgments failed and are left out")
        records = [{"id": item["id"], "instruction": item["instruction"], "output": output, "preference": preference}
                   for item, output, preference in zip(items, outputs, judgments)]
        metrics = {"lc": lc, "wr": wr["win_rate"], "wr_se": wr["standard_error"],
                   "length": sum(map(len, outputs)) / len(outputs)}
        protocol = {"lc": variant, "order": SHOWN_ORDER}
        return {"metrics": metrics, "length_unit": "characters", "notes": notes, "records": records, "protocol": protocol}


class ArenaHard(Task):
    """Arena-Hard as arena-hard-auto scores it (`evals.arena_hard`): v0.1 or v2.0, as the loaded
    questions' `version` says."""

    name, judged = "arena_hard", True

    def load(self, options):
        arena_hard.require_token_counts()  # before any model loads
        return benchmarks.arena_hard(options.data, options.arena_hard_dir)

    def prompt(self, item):
        return item["question"]

    def judge_shard(self, judge, items, outputs):
        games = []
        for item, output in zip(items, outputs):  # game 1: the baseline is A; game 2: the model is A
            games += [(item["question"], item["category"], item["baseline_answer"], output),
                      (item["question"], item["category"], output, item["baseline_answer"])]
        verdicts = judge.verdicts(games)
        return [list(verdicts[i : i + 2]) for i in range(0, len(verdicts), 2)]

    def score(self, items, outputs, judgments, count_tokens):
        """`count_tokens(texts, encoding)`: tiktoken's token counts (`arena_hard.token_counts`)."""
        versions = {item["version"] for item in items}
        if len(versions) != 1:
            raise ValueError(f"the Arena-Hard items of one run are of one version, got {sorted(versions)}")
        version = versions.pop()
        games = [tuple(pair) for pair in judgments]
        baselines = ", ".join(sorted({item["baseline"] for item in items}))
        records = [{"id": item["id"], "category": item["category"], "output": output, "verdicts": pair}
                   for item, output, pair in zip(items, outputs, judgments)]
        unit = arena_hard.LENGTH_UNITS[version]
        if version == arena_hard.V01:
            result = arena_hard.score_v01(games)
            tokens = count_tokens(outputs, arena_hard.ENCODINGS[version])
            metrics = {"score": result["score"], "ci_lower": result["ci_lower"], "ci_upper": result["ci_upper"],
                       "length": sum(tokens) / len(tokens)}
            notes = [f"Arena-Hard v0.1: Bradley-Terry win rate against {baselines}, 95% bootstrap interval "
                     f"{result['ci_lower']:.1f}-{result['ci_upper']:.1f}" if result["score"] is not None else
                     "Arena-Hard v0.1: no game has a verdict, so there is no score (a judge that writes no [[..]] label)"]
            if result["dropped_games"]:
                notes.append(f"{result['dropped_games']} games without a v0.1 verdict are left out")
            protocol = {"verdicts": arena_hard.V01_VERDICTS, "category": arena_hard.V01_CATEGORY_RULE, "style_control": "none",
                        "length": unit}
            return {"metrics": metrics, "length_unit": unit, "notes": notes, "records": records, "protocol": protocol}
        model_style = arena_hard.style_metadata(outputs, count_tokens)
        baseline_style = arena_hard.style_metadata([item["baseline_answer"] for item in items], count_tokens)
        categories = [item["category"] for item in items]
        scores = arena_hard.score_v20(games, categories, model_style, baseline_style)
        empty = {"score": None, "ci_lower": None, "ci_upper": None}
        hard, creative = scores.get("hard_prompt", empty), scores.get("creative_writing", empty)

        def mean_tokens(category):
            tokens = [style[0] for style, of in zip(model_style, categories) if of == category]
            return sum(tokens) / len(tokens) if tokens else None

        metrics = {"score": hard["score"], "ci_lower": hard["ci_lower"], "ci_upper": hard["ci_upper"], "length": mean_tokens("hard_prompt"),
                   "creative_writing": creative["score"], "creative_writing_ci_lower": creative["ci_lower"],
                   "creative_writing_ci_upper": creative["ci_upper"], "creative_writing_length": mean_tokens("creative_writing")}
        notes = [f"Arena-Hard v2.0 (baselines {baselines}): AH is the hard_prompt score under style control (length and markdown)"
                 + (f", 90% bootstrap interval {hard['ci_lower']:.1f}-{hard['ci_upper']:.1f}" if hard["score"] is not None else "")
                 + "; AH Length over the hard-prompt answers"]
        if creative["score"] is not None:
            notes.append(f"creative_writing (no style control): {creative['score']:.1f}, 90% interval "
                         f"{creative['ci_lower']:.1f}-{creative['ci_upper']:.1f}")
        dropped = sum(result["dropped"] for result in scores.values())
        if dropped:
            notes.append(f"{dropped} questions without a verdict in both games are left out")
        protocol = {"verdicts": arena_hard.V20_VERDICTS, "category": arena_hard.V20_CATEGORY_RULE,
                    "style_control": arena_hard.V20_STYLE_CONTROL, "length": unit}
        return {"metrics": metrics, "length_unit": unit, "notes": notes, "records": records, "protocol": protocol}


class GSM(Task):
    name = "gsm"

    def load(self, options):
        label, items = benchmarks.gsm(options.data, options.gsm_seed)
        return label, _with_wording(items, options)

    def prompt(self, item):
        return open_question_prompt(item["question"], item["wording"])

    def score(self, items, outputs, judgments, count_tokens):
        scored = [score_open(output, item["reference"]) for item, output in zip(items, outputs)]
        return _zeroeval_result(items, outputs, scored)


class MMLU(Task):
    name = "mmlu"

    def load(self, options):
        label, items = benchmarks.mmlu(options.data)
        return label, _with_wording(items, options)

    def prompt(self, item):
        return multiple_choice_prompt(item["question"], item["choices"], item["wording"])

    def score(self, items, outputs, judgments, count_tokens):
        scored = [score_choice(output, item["answer"]) for item, output in zip(items, outputs)]
        return _zeroeval_result(items, outputs, scored)


class MMLULogLik(MMLU):
    """MMLU by the answer letter's log-likelihood: no generation, so no reasoning and no Length."""

    mode = "loglik"

    def predict(self, model, tokenizer, items: list[dict], batch_size: int) -> list[str]:
        return predict_letters(model, tokenizer, items, batch_size)

    def shown(self, renderer, item):
        return mmlu_context(item["question"], item["choices"])  # each choice's " X" is scored after it

    def score(self, items, outputs, judgments, count_tokens):
        records = [{"id": item["id"], "output": letter, "correct": letter == item["answer"]} for item, letter in zip(items, outputs)]
        accuracy = 100 * sum(record["correct"] for record in records) / len(records)
        return {"metrics": {"accuracy": accuracy, "length": None}, "length_unit": None,
                "notes": ["answer-letter log-likelihood (lm-eval style), zero-shot, no chat template"], "records": records,
                "protocol": {"prompt": "answer-letter log-likelihood, no generation"}}


def _with_wording(items: list[dict], options) -> list[dict]:
    """The items with the prompt wording they are asked in (ZeroEval's templates from
    `--zeroeval-dir`, else simpo's own), read now so that a bad checkout fails before any model loads."""
    words = wording(getattr(options, "zeroeval_dir", None))
    return [{**item, "wording": words} for item in items]


def _zeroeval_result(items, outputs, scored) -> dict:
    summary = summarize(scored)
    records = [{"id": item["id"], "output": output, **row} for item, output, row in zip(items, outputs, scored)]
    notes = ["ZeroEval zero-shot JSON protocol, greedy", f"{summary['no_answer']:.1f}% of the outputs hold no answer"]
    return {"metrics": {"accuracy": summary["accuracy"], "length": summary["length"]},
            "length_unit": "characters of the reasoning", "notes": notes, "records": records,
            "protocol": {"prompt": items[0]["wording"].source}}


TASKS = {task.name: task for task in (AlpacaEval(), ArenaHard(), GSM(), MMLU())}


def task_for(benchmark: str, mmlu_mode: str = "zeroeval") -> Task:
    return MMLULogLik() if benchmark == "mmlu" and mmlu_mode == "loglik" else TASKS[benchmark]
