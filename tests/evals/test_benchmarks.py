"""The benchmark data read from the PyPI wheels on disk, and the fixed stratified subset."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from simpo.errors import RecipeError
from simpo.evals import benchmarks


def test_alpaca_eval_offline_has_805_instructions_with_gpt4_turbo_references():
    label, items = benchmarks.alpaca_eval("offline")
    assert len(items) == 805
    assert {item["reference_generator"] for item in items} == {"gpt4_1106_preview"}
    assert "gpt4_1106_preview" in label
    assert Counter(item["stratum"] for item in items)["helpful_base"] == 129


def test_arena_hard_v2_has_750_questions_each_with_its_category_baseline():
    label, items = benchmarks.arena_hard("offline")
    assert label == "Arena-Hard v2.0 (o3-mini-2025-01-31 / gemini-2.0-flash-001 baselines)"
    assert len(items) == 750
    baselines = Counter((item["category"], item["baseline"]) for item in items)
    assert baselines == {("hard_prompt", "o3-mini-2025-01-31"): 500, ("creative_writing", "gemini-2.0-flash-001"): 250}
    assert all(item["baseline_answer"] for item in items)


def test_arena_hard_dir_reads_a_v01_layout(tmp_path):
    folder = tmp_path / "arena-hard-v0.1"
    (folder / "model_answer").mkdir(parents=True)
    (folder / "question.jsonl").write_text(json.dumps({"uid": "q1", "category": "arena-hard-v0.1", "cluster": "c",
                                                       "turns": [{"content": "Why?"}]}) + "\n")
    answer = {"question_id": "q1", "uid": "q1", "choices": [{"turns": [{"content": "Because."}]}]}
    (folder / "model_answer" / "gpt-4-0314.jsonl").write_text(json.dumps(answer) + "\n")
    label, items = benchmarks.arena_hard("offline", str(folder))
    assert label == "Arena-Hard v0.1 (gpt-4-0314 baseline)"
    assert items[0]["question"] == "Why?" and items[0]["baseline_answer"] == "Because." and items[0]["baseline"] == "gpt-4-0314"


def test_mmlu_offline_has_14042_questions_without_the_header_rows():
    label, items = benchmarks.mmlu("offline")
    assert len(items) == 14042
    assert Counter(item["answer"] for item in items).keys() == {"A", "B", "C", "D"}
    assert len({item["stratum"] for item in items}) == 57
    assert all(len(item["choices"]) == 4 for item in items)


def test_gsm_symbolic_is_labelled_as_such_and_reproducible_by_seed():
    label, items = benchmarks.gsm("offline", seed=42)
    again = benchmarks.gsm("offline", seed=42)[1]
    other = benchmarks.gsm("offline", seed=7)[1]
    assert label == "GSM-Symbolic (reasoning-gym, seed 42)" and "GSM8K" not in label
    assert len(items) == 1319 and items == again and items != other
    assert all(float(item["reference"]) == float(item["reference"]) for item in items[:20])


def test_subset_is_fixed_proportional_and_keeps_order():
    items = [{"id": i, "stratum": s} for i, s in enumerate("a" * 60 + "b" * 30 + "c" * 9 + "d")]
    chosen = benchmarks.subset(items, 10)
    # quotas 6, 3, 0.9, 0.1: a and b get theirs, the one left goes to c (larger remainder)
    assert Counter(item["stratum"] for item in chosen) == {"a": 6, "b": 3, "c": 1}
    assert [item["id"] for item in chosen] == [0, 1, 2, 3, 4, 5, 60, 61, 62, 90]
    assert benchmarks.subset(items, 10) == chosen
    assert benchmarks.subset(items, 500) == items and benchmarks.subset(items, None) == items


def test_subset_of_mmlu_has_exactly_limit_items():
    _, items = benchmarks.mmlu("offline")
    chosen = benchmarks.subset(items, 50)
    assert len(chosen) == 50 and len({item["id"] for item in chosen}) == 50


def test_missing_arena_hard_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="no question.jsonl"):
        benchmarks.arena_hard("offline", str(tmp_path))
    with pytest.raises(RecipeError, match="--arena-hard-dir"):
        benchmarks.arena_hard("hub")


GAMED_HEADER = "model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline,generator_2\n"


def test_alpaca_eval_gamed_reads_the_columns_length_controlled_v1_needs(tmp_path):
    path = tmp_path / "df_gamed.csv"
    path.write_text(GAMED_HEADER + "verbose,0,0.25,-1.5,0.3,False,verbose\nverbose,1,,0.5,-0.7,False,verbose\n"
                    "concise,0,nan,1.25,0.3,False,concise\nconcise,1,1.0,2.0,-0.7,True,concise\n")
    assert benchmarks.alpaca_eval_gamed("offline", None) is None  # offline without a file: the minimal LC
    found, content, gamed = benchmarks.alpaca_eval_gamed("offline", str(path))
    assert (found, content) == (str(path), path.read_bytes())
    assert gamed.difficulty == {0: 0.3, 1: -0.7}
    assert gamed.std_delta_len.tolist() == [-1.5, 0.5, 1.25, 2.0]
    assert gamed.instruction_difficulty.tolist() == [0.3, -0.7, 0.3, -0.7]
    assert gamed.not_gamed_baseline.tolist() == [False, False, False, True]
    assert gamed.preference[[0, 3]].tolist() == [0.25, 1.0] and all(map(math.isnan, gamed.preference[[1, 2]]))


@pytest.mark.parametrize(
    "text,message",
    [
        ("model,index,preference,std_delta_len,not_gamed_baseline\nm,0,0.5,0.1,False\n", "no column 'instruction_difficulty'"),
        (GAMED_HEADER, "no rows"),
        (GAMED_HEADER + "m,0,1.5,0.1,0.2,False,m\n", "line 2: preference is '1.5'; expected a soft label in [0, 1]"),
        (GAMED_HEADER + "m,0,0.5,0.1,0.2,False,m\nm,x,0.5,0.1,0.2,False,m\n", "line 3: index is 'x'; expected an instruction's index"),
        (GAMED_HEADER + "m,0,0.5,inf,0.2,False,m\n", "line 2: std_delta_len is 'inf'; expected a number"),
        (GAMED_HEADER + "m,0,0.5,0.1,0.2,1,m\n", "line 2: not_gamed_baseline is '1'; expected True or False"),
    ],
)
def test_a_bad_alpaca_eval_gamed_file_is_a_one_line_error_naming_it(tmp_path, text, message):
    path = tmp_path / "df_gamed.csv"
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        benchmarks.alpaca_eval_gamed("offline", str(path))
    assert str(error.value).startswith(str(path)) and message in str(error.value) and "\n" not in str(error.value)
