"""Arena-Hard v0.1 and v2.0 scores against arena-hard-auto's formulas written out here (v0.1's
show_result.py: a scikit-learn Bradley-Terry fit on duplicated battles; v2.0's show_result.py and
utils/math_utils.py: bootstrap means, and the style-controlled torch L-BFGS fit), its verdict labels,
its style features against the official metadata in the wheel, and tiktoken's token counts."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from simpo.errors import RecipeError
from simpo.evals import arena_hard, benchmarks
from simpo.evals.arena_hard import V01, V20, markdown_counts, score_v01, score_v20, style_metadata, token_counts
from simpo.evals.judge_prompts import parse_arena_hard_verdict_v01
from simpo.evals.protocol import CARD, differences
from simpo.evals.tasks import ArenaHard

FIVE = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
TEN = FIVE + ["A<<B", "A<B", "B=A", "B<A", "B<<A"]


def random_games(count: int, seed: int, labels=FIVE, missing: float = 0.0, lean: float = 0.0):
    """Pairs of verdicts (baseline as A, model as A); `lean` > 0 favours the model."""
    rng = random.Random(seed)
    weights = [1 - lean, 1, 1, 1, 1 + lean]  # A>>B ... B>>A in game 1: B is the model
    games = []
    for _ in range(count):
        first = rng.choices(FIVE, weights)[0]
        second = rng.choices(FIVE, weights[::-1])[0]
        if labels is TEN and rng.random() < 0.3:  # some mirrored labels, the same verdicts
            mirror = {"A>>B": "B<<A", "A>B": "B<A", "A=B": "B=A", "B>A": "A<B", "B>>A": "A<<B"}
            first, second = mirror[first], mirror[second]
        games.append((None if rng.random() < missing else first, None if rng.random() < missing else second))
    return games


# --- v0.1: show_result.py of mid-2024, written out ---

def official_v01_battles(games, model="model", baseline="gpt-4-0314"):
    """get_battles_from_judgment: game 1 the baseline is model_a; game 2 the model is A, so A's win is model_b's."""
    battles = []
    for first, second in games:
        for game, label in ((1, first), (2, second)):
            winner = {"A=B": "tie", "A>B": "model_a", "A>>B": "model_a", "B>A": "model_b", "B>>A": "model_b"}.get(label)
            if winner is None:
                continue
            if game == 2 and winner != "tie":
                winner = "model_b" if winner == "model_a" else "model_a"
            battles += [(baseline, model, winner)] * (3 if label in ("A>>B", "B>>A") else 1)
    return battles


def official_v01_elo(battles, baseline="gpt-4-0314"):
    """compute_mle_elo: logistic regression without intercept or penalty on the battles twice over,
    a tie one win for A (first copy) and one for B (second copy); ratings 400 * coef + 1000,
    the baseline anchored at 1000."""
    from sklearn.linear_model import LogisticRegression

    models = sorted({name for a, b, _ in battles for name in (a, b)})
    doubled = battles + battles
    features = np.zeros((len(doubled), len(models)))
    labels = np.zeros(len(doubled))
    for row, (a, b, winner) in enumerate(doubled):
        features[row, models.index(a)] = math.log(10)
        features[row, models.index(b)] = -math.log(10)
        labels[row] = 1.0 if winner == "model_a" or (winner == "tie" and row < len(battles)) else 0.0
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8).fit(features, labels)  # penalty=None
    ratings = 400 * fit.coef_[0] + 1000
    return dict(zip(models, ratings - ratings[models.index(baseline)] + 1000))


def win_rate(elo_model, elo_baseline=1000.0):
    return 1 / (1 + 10 ** ((elo_baseline - elo_model) / 400))


def test_v01_score_is_the_bradley_terry_win_rate_and_interval_of_show_result():
    games = random_games(60, seed=5, lean=0.6) + [(None, "A>B"), ("A<B", "B=A"), ("oops", None)]
    got = score_v01(games, seed=42, rounds=100)
    battles = official_v01_battles(games)
    elo = official_v01_elo(battles)
    assert got["score"] == pytest.approx(100 * win_rate(elo["model"]), abs=1e-5)
    # Another model in the same judgment folder does not move this one's score.
    other = official_v01_battles(random_games(40, seed=6), model="other")
    assert 100 * win_rate(official_v01_elo(battles + other)["model"]) == pytest.approx(got["score"], abs=1e-5)
    np.random.seed(42)
    draws = np.random.randint(0, len(battles), size=(100, len(battles)))
    boot = [official_v01_elo([battles[i] for i in rows])["model"] for rows in draws]
    assert got["ci_lower"] == pytest.approx(100 * win_rate(np.percentile(boot, 2.5)), abs=1e-4)
    assert got["ci_upper"] == pytest.approx(100 * win_rate(np.percentile(boot, 97.5)), abs=1e-4)
    assert got["ci_lower"] < got["score"] < got["ci_upper"]
    # Per game: None, a label not of the five (A<B, B=A, oops) drop that game alone.
    assert (got["dropped_games"], got["n_questions"], got["battles"]) == (5, 61, len(battles))


def test_v01_counts_only_the_five_labels_and_weighs_strong_ones_three_times():
    got = score_v01([("A>>B", "B>>A"), ("B>A", "A=B"), ("B<A", "A<<B")], rounds=10)
    # model's battles: game 1 A>>B: 0,0,0; game 2 B>>A: 0,0,0; B>A: 1; A=B: 0.5; mirrored labels: dropped
    assert got["score"] == pytest.approx(100 * 1.5 / 8)
    assert (got["dropped_games"], got["n_questions"]) == (2, 2)
    assert score_v01([("B<A", None)]) == {"score": None, "ci_lower": None, "ci_upper": None, "n_questions": 0, "dropped_games": 2,
                                          "battles": 0}
    with pytest.raises(ValueError, match="rounds is 0"):
        score_v01([("A>B", "B>A")], rounds=0)


# --- v2.0: show_result.py and utils/math_utils.py of April 2025, written out ---

LABEL_TO_SCORE = {"A>B": [1], "A>>B": [1] * 3, "A=B": [0.5], "A<<B": [0] * 3, "A<B": [0], "B>A": [0], "B>>A": [0] * 3,
                  "B=A": [0.5], "B<<A": [1] * 3, "B<A": [1]}


def official_v20_battles(games):
    """load_judgments: a question whose either game has no score is left out; its scores are game 2's
    labels' then 1 minus game 1's."""
    rows = []
    for index, (first, second) in enumerate(games):
        if first is None or second is None:
            continue
        rows += [(index, s) for s in LABEL_TO_SCORE[second] + [1 - s for s in LABEL_TO_SCORE[first]]]
    return rows


def test_v20_without_style_control_is_the_mean_of_bootstrap_means():
    games = random_games(80, seed=8, labels=TEN, missing=0.05, lean=0.3)
    got = score_v20(games, ["creative_writing"] * len(games), seed=7, rounds=100)["creative_writing"]
    scores = np.array([s for _, s in official_v20_battles(games)], dtype=float)
    np.random.seed(7)
    means = scores[np.random.randint(0, len(scores), size=(100, len(scores)))].mean(axis=1)
    assert got["score"] == pytest.approx(100 * means.mean(), abs=1e-10)
    assert got["ci_lower"] == pytest.approx(100 * np.quantile(means, 0.05), abs=1e-10)
    assert got["ci_upper"] == pytest.approx(100 * np.quantile(means, 0.95), abs=1e-10)
    missing = sum(first is None or second is None for first, second in games)
    assert (got["dropped"], got["n_questions"], got["style_control"]) == (missing, 80 - missing, False)


def official_style_features(model_meta, baseline_meta):
    """print_leaderboard_with_style_features: length and markdown-density differences, standardised."""
    model, base = torch.tensor(model_meta, dtype=torch.float32), torch.tensor(baseline_meta, dtype=torch.float32)
    final = torch.zeros_like(model)
    final[:, 0] = (model[:, 0] - base[:, 0]) / (model[:, 0] + base[:, 0])
    model_density = model[:, 1:] / (model[:, :1] + 1)
    base_density = base[:, 1:] / (base[:, :1] + 1)
    final[:, 1:] = (model_density - base_density) / (model_density + base_density + 1)
    return (final - torch.mean(final, axis=0)) / torch.std(final, axis=0)


def official_fit(features, outcomes):
    """fit_pairwise_model with the "bt" loss: L-BFGS from 0.5, lr 0.1, 50 iterations, tolerances 1e-9."""
    logits = torch.nn.Parameter(torch.nn.init.constant_(torch.empty(features.shape[1]), 0.5))
    optimizer = torch.optim.LBFGS([logits], lr=0.1, max_iter=50, tolerance_grad=1e-9, tolerance_change=1e-9)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ logits, outcomes.float(), reduction="sum")
        loss.backward()
        return loss

    optimizer.step(closure)
    return logits.detach()


def simulated_style(count, seed):
    rng = random.Random(seed)
    model = [(rng.randint(50, 900), rng.randint(0, 6), rng.randint(0, 15), rng.randint(0, 9)) for _ in range(count)]
    baseline = [(rng.randint(80, 700), rng.randint(0, 4), rng.randint(0, 10), rng.randint(0, 6)) for _ in range(count)]
    return model, baseline


def test_v20_hard_prompts_are_the_median_of_style_controlled_bradley_terry_fits():
    count = 70
    games = random_games(count, seed=9, labels=TEN, missing=0.05, lean=0.8)
    model_meta, baseline_meta = simulated_style(count, seed=10)
    got = score_v20(games, ["hard_prompt"] * count, model_meta, baseline_meta, seed=3, rounds=30)["hard_prompt"]
    battles = official_v20_battles(games)
    features = official_style_features([model_meta[i] for i, _ in battles], [baseline_meta[i] for i, _ in battles])
    one_hot = torch.tensor([[1.0, -1.0]] * len(battles))  # the model's column +1, the baseline's -1
    design = torch.cat([one_hot, features], dim=1)
    outcomes = torch.tensor([s for _, s in battles])
    np.random.seed(3)
    draws = np.random.randint(0, len(battles), size=(30, len(battles)))
    rates = []
    for rows in draws:
        coefs = official_fit(design[rows], outcomes[rows])
        rates.append(float(torch.exp(coefs[0]) / (torch.exp(coefs[0]) + torch.exp(coefs[1]))))
    assert got["score"] == pytest.approx(100 * np.quantile(rates, 0.5), abs=1e-4)
    assert got["ci_lower"] == pytest.approx(100 * np.quantile(rates, 0.05), abs=1e-4)
    assert got["ci_upper"] == pytest.approx(100 * np.quantile(rates, 0.95), abs=1e-4)
    assert got["style_control"] is True and got["battles"] == len(battles)
    # The official optimiser stops near the maximum-likelihood fit (Newton's method, exact): within 0.5 points.
    x = np.column_stack([np.ones(len(battles)), features.numpy().astype(np.float64)])
    y = outcomes.numpy().astype(np.float64)
    weights = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ weights))
        weights -= np.linalg.solve(x.T @ (x * (p * (1 - p))[:, None]), x.T @ (p - y))
    fitted = arena_hard.fit_bradley_terry(design, outcomes.float())
    assert float(torch.sigmoid(fitted[0] - fitted[1])) == pytest.approx(1 / (1 + math.exp(-weights[0])), abs=0.005)


def test_v20_scores_each_category_apart():
    hard, creative = random_games(40, seed=11, lean=0.5), random_games(30, seed=12, lean=-0.5)
    games = [game for pair in zip(hard[:30], creative) for game in pair] + hard[30:]
    categories = ["hard_prompt", "creative_writing"] * 30 + ["hard_prompt"] * 10
    model_meta, baseline_meta = simulated_style(len(games), seed=13)
    got = score_v20(games, categories, model_meta, baseline_meta, rounds=20)
    hard_only = score_v20([g for g, c in zip(games, categories) if c == "hard_prompt"], ["hard_prompt"] * 40,
                          [m for m, c in zip(model_meta, categories) if c == "hard_prompt"],
                          [b for b, c in zip(baseline_meta, categories) if c == "hard_prompt"], rounds=20)
    creative_only = score_v20(creative, ["creative_writing"] * 30, rounds=20)
    assert got == {**hard_only, **creative_only}
    assert list(got) == ["hard_prompt", "creative_writing"]
    assert got["hard_prompt"]["score"] > 50 > got["creative_writing"]["score"]


def test_v20_edge_cases():
    # every verdict missing: no score; unknown labels count as missing (the official code would stop on them)
    got = score_v20([(None, "A>B"), ("A>>>B", "B>A")], ["creative_writing"] * 2)["creative_writing"]
    assert (got["score"], got["dropped"], got["battles"]) == (None, 2, 0)
    # two empty answers and a feature without spread give 0, not NaN
    meta = [(0, 0, 0, 0), (0, 0, 0, 0), (10, 0, 1, 0)]
    got = score_v20([("A>B", "B>A"), ("B>A", "A>B"), ("B>>A", "A>>B")], ["hard_prompt"] * 3, meta, [(0, 0, 0, 0)] * 2 + [(5, 0, 0, 0)],
                    rounds=5)["hard_prompt"]
    assert 0 < got["score"] < 100
    with pytest.raises(ValueError, match="one category per question"):
        score_v20([("A>B", "B>A")], [])


# --- verdicts, style features, token counts ---

@pytest.mark.parametrize("judgment, expected", [
    ("My final verdict is tie: [[A=B]]", ("A=B", False)),
    ("[[B>A]] ... so again [[B>A]]", ("B>A", False)),  # one distinct label
    ("First [[A>>B]], on reflection [[B>A]].", (None, False)),  # several different: no verdict, not asked again
    ("my final verdict: [[b>>a]]", (None, True)),  # case-sensitive: no label, asked again
    ("Assistant B is better: [B>A]", (None, True)),  # single brackets do not count
    ("no verdict at all", (None, True)),
    ("\n[[A>>>B]]", ("A>>>B", False)),  # a label, but not one of the five: the judge gives no verdict
])
def test_v01_verdict_parsing(judgment, expected):
    assert parse_arena_hard_verdict_v01(judgment) == expected


def wheel_answers():
    root = Path(importlib.util.find_spec("eval_framework").submodule_search_locations[0]) / "tasks/arena_hard/data/arena-hard-v2.0"
    return [json.loads(line) for path in sorted((root / "model_answer").glob("*.jsonl")) for line in path.read_text().split("\n") if line.strip()]


def test_style_metadata_equals_the_official_metadata_of_the_baseline_answers():
    """The wheel's baseline answers carry arena-hard-auto's metadata: o200k token_len (tiktoken
    encoding_for_model("gpt-4o")) and the markdown counts."""
    rows = wheel_answers()[::5]
    texts = [row["messages"][-1]["content"]["answer"] for row in rows]
    expected = [(row["metadata"]["token_len"], *(sum(row["metadata"][key].values()) for key in ("header_count", "list_count", "bold_count")))
                for row in rows]
    assert len(rows) == 300 and style_metadata(texts) == expected


def test_markdown_counts_remove_code_block_contents_first():
    text = "# Title\n## Sub\n1. one\n  - two\n* three\n**bold** and __also__\n```\n# not a header\n- no item\n```\n#no header"
    assert markdown_counts(text) == (2, 3, 2)


OFFICIAL_CL100K = [  # arena-hard-auto data/arena-hard-v0.1/model_answer at commit e0a8ea1: text, token_len
    ("NO RULE BROKEN", 4), ("$20,000 decrease.", 6), ('NUMBER_OF_RECORDS > "8" NUMBER_OF_RECORDS < "15"', 16),
    ("After waiting for 1.65 hours, it will be 2:39 AM.", 18),
]


def test_cl100k_counts_equal_the_official_v01_token_len():
    assert token_counts([text for text, _ in OFFICIAL_CL100K], "cl100k_base") == [count for _, count in OFFICIAL_CL100K]
    assert token_counts(["hello world"], "cl100k_base") == [2]


def test_token_counts_equal_tiktoken_on_varied_texts(tmp_path, monkeypatch):
    """tiktoken itself, given the encoding files bpe-openai ships: tiktoken checks each against the
    sha256 it pins for OpenAI's file, so these are tiktoken's own encodings."""
    tiktoken = pytest.importorskip("tiktoken")
    import bpe_openai

    data = Path(bpe_openai.__file__).parent / "data"
    for name in ("cl100k_base", "o200k_base"):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes()))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    rng = random.Random(0)
    pieces = [" ", "  ", "\n", "\n\n", "\t", "\r\n", "The", "'s", "'LL", "123456", "١٢٣", "日本語", "한국어", "🙂", "👩‍👩‍👧", "e\u0301",
              "\u200b", "<|endoftext|>", "```py\n", "**bold**", "# H", "- item", "İ", "ß", "\u00a0", "x" * 40, "don't", "   \n\n   "]
    texts = ["", "hello world"] + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 25))) for _ in range(400)]
    texts += [row["messages"][-1]["content"]["answer"] for row in wheel_answers()[:40]]
    for name in ("cl100k_base", "o200k_base"):
        reference = tiktoken.get_encoding(name)
        assert token_counts(texts, name) == [len(reference.encode(text, disallowed_special=())) for text in texts]


def test_a_missing_token_counter_is_a_one_line_recipe_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "bpe_openai" else real(name, *args))
    with pytest.raises(RecipeError, match=r"^Arena-Hard's lengths are tiktoken token counts, made offline by bpe-openai==0.1.4: "
                                          r"pip install bpe-openai==0.1.4$"):
        arena_hard.require_token_counts()


# --- the data's version, label and the protocol a result records ---

def write_v01_folder(folder: Path, layout: str, baseline="gpt-4-0314"):
    (folder / "model_answer").mkdir(parents=True)
    questions, answers = [], []
    for i in range(3):
        if layout == "2024":
            questions.append({"question_id": f"q{i}", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": f"Why {i}?"}]})
            answers.append({"question_id": f"q{i}", "model_id": baseline, "choices": [{"index": 0, "turns": [{"content": f"Because {i}."}]}]})
        else:
            questions.append({"uid": f"q{i}", "category": "arena-hard-v0.1", "cluster": "c", "prompt": f"Why {i}?"})
            answers.append({"uid": f"q{i}", "model": baseline, "messages": [{"role": "user", "content": f"Why {i}?"},
                                                                             {"role": "assistant", "content": {"answer": f"Because {i}."}}]})
    (folder / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (folder / "model_answer" / f"{baseline}.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))


@pytest.mark.parametrize("layout", ["2024", "2025"])
def test_a_v01_folder_is_the_cards_data(tmp_path, layout):
    write_v01_folder(tmp_path / "any-name", layout)
    label, items = benchmarks.arena_hard("offline", str(tmp_path / "any-name"))
    assert label == CARD["arena_hard"]["data"] == "Arena-Hard v0.1 (gpt-4-0314 baseline)"
    assert [(item["id"], item["question"], item["baseline_answer"], item["version"]) for item in items] == [
        (f"q{i}", f"Why {i}?", f"Because {i}.", V01) for i in range(3)]


def test_the_offline_data_is_v20_and_unknown_categories_are_refused(tmp_path):
    label, items = benchmarks.arena_hard("offline")
    assert label == "Arena-Hard v2.0 (o3-mini-2025-01-31 / gemini-2.0-flash-001 baselines)" != CARD["arena_hard"]["data"]
    assert {item["version"] for item in items} == {V20}
    (tmp_path / "question.jsonl").write_text(json.dumps({"uid": "q", "category": "poetry", "prompt": "?"}) + "\n")
    with pytest.raises(RecipeError, match=r"categories \['poetry'\] are neither Arena-Hard v0.1's \(arena-hard-v0.1\) nor v2.0's"):
        benchmarks.arena_hard("offline", str(tmp_path))


def fake_count(texts, encoding):
    return [len(text.split()) * (1 if encoding == "cl100k_base" else 2) for text in texts]


def test_a_v01_result_records_the_cards_protocol(tmp_path):
    write_v01_folder(tmp_path / "v01", "2025")
    _, items = benchmarks.arena_hard("offline", str(tmp_path / "v01"))
    scored = ArenaHard().score(items, ["a b c", "d e", "f"], [["B>A", "A>B"], ["A>>B", "B>>A"], [None, "A=B"]], fake_count)
    assert scored["metrics"]["score"] == pytest.approx(100 * 2.5 / 9)
    assert scored["metrics"]["length"] == 2.0 and scored["length_unit"] == "tiktoken cl100k tokens"
    protocol = {"data": CARD["arena_hard"]["data"], "items": 500, "decoding": "greedy, 4096 new tokens",
                "judge": "openai:gpt-4-1106-preview", **scored["protocol"]}
    assert differences("arena_hard", protocol) == []


def test_a_v20_result_scores_hard_prompts_and_says_how_it_differs_from_the_card(monkeypatch):
    monkeypatch.setattr(arena_hard, "ROUNDS", 10)  # the official 100 style-controlled fits take seconds each ten
    _, items = benchmarks.arena_hard("offline")
    items = benchmarks.subset(items, 12)
    outputs = [f"answer {i} " * (i + 1) for i in range(len(items))]
    judgments = [["B>A", "A>B"] if i % 3 else ["A>B", "B>A"] for i in range(len(items))]
    scored = ArenaHard().score(items, outputs, judgments, token_counts)
    categories = [item["category"] for item in items]
    expected = score_v20([tuple(j) for j in judgments], categories, style_metadata(outputs),
                         style_metadata([item["baseline_answer"] for item in items]))
    metrics = scored["metrics"]
    assert (metrics["score"], metrics["creative_writing"]) == (expected["hard_prompt"]["score"], expected["creative_writing"]["score"])
    hard_lengths = [meta[0] for meta, c in zip(style_metadata(outputs), categories) if c == "hard_prompt"]
    assert metrics["length"] == sum(hard_lengths) / len(hard_lengths) and scored["length_unit"] == "tiktoken o200k tokens"
    protocol = {**CARD["arena_hard"], **scored["protocol"]}
    assert [d.split(" ")[0] for d in differences("arena_hard", protocol)] == ["verdicts", "category", "style_control", "length"]


@pytest.mark.parametrize("cap", [[], ["--judge-max-tokens", "512"]])
def test_simpo_eval_scores_a_v01_folder_as_the_card_did(tiny_model_dir, tmp_path, monkeypatch, one_thread, cap):
    from simpo.evals import judges
    from simpo.stages.eval import parse_options, run_eval

    class FixedJudge(judges.Judge):
        def verdicts(self, games):
            return [["B>A", "A>B", "A>>B", "B>>A", "A<B", "A=B"][i % 6] for i in range(len(games))]

    monkeypatch.setattr(judges, "open_judge", lambda *args, **kwargs: FixedJudge("openai:gpt-4-1106-preview"))
    write_v01_folder(tmp_path / "v01", "2024")
    model = tiny_model_dir("llama")
    run_eval(parse_options([str(model), "--output", str(tmp_path / "out"), "--benchmarks", "arena_hard", "--names", "tiny",
                            "--arena-hard-dir", str(tmp_path / "v01"), "--max-new-tokens", "6",
                            "--judge", "openai:gpt-4-1106-preview", "--judge-base-url", "http://127.0.0.1:9/v1", *cap]))
    folder = tmp_path / "out" / "tiny" / "arena_hard"
    result = json.loads((folder / "result.json").read_text())
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    assert [record["verdicts"] for record in records] == [["B>A", "A>B"], ["A>>B", "B>>A"], ["A<B", "A=B"]]
    assert result["metrics"]["score"] == score_v01([tuple(record["verdicts"]) for record in records])["score"] == pytest.approx(100 * 2.5 / 9)
    outputs = [record["output"] for record in records]
    assert result["metrics"]["length"] == sum(token_counts(outputs, "cl100k_base")) / 3
    assert result["dataset"] == CARD["arena_hard"]["data"] and result["length_unit"] == "tiktoken cl100k tokens"
    assert [d.split(" ")[0] for d in result["differences"]] == ["items", "decoding", "judge"]  # 3 questions, 6 tokens, another endpoint
    judge = "openai:gpt-4-1106-preview served at http://127.0.0.1:9/v1" + (", judgments cut at 512 tokens" if cap else "")
    assert result["protocol"]["judge"] == judge and not result["comparable"]
