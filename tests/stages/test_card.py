"""`simpo card` on a real tiny run: every section filled from the run's own files, the front matter's
model-index equal to the result.json values, the stop tokens those of `simpo chat`, the snippet
runnable; no results say how to make them; a folder that is not a run is a one-line error."""

import contextlib
import io
import json
import re

import pytest
import torch
import yaml
from helpers import recipe_values, write_jsonl
from transformers import AutoTokenizer

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.data.chat import stop_token_ids
from simpo.errors import RecipeError
from simpo.evals.table import load_results, markdown_table
from simpo.stages.card import write_card


def result(benchmark: str, name: str, model, metrics: dict, **extra) -> dict:
    """A result.json as `simpo eval` writes it (schema in simpo.evals.table)."""
    return {
        "benchmark": benchmark, "name": name, "model": str(model), "dataset": f"{benchmark} test set", "n": 20, "total": 805,
        "judge": "reward:tiny-judge" if benchmark == "alpaca_eval" else None, "comparable": False, "metrics": metrics,
        "length_unit": "characters", "notes": ["a test run"], "seconds": {"generate": 2.0}, "settings": {}, **extra,
    }


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_model_dir):
    """A pipeline-style run folder: model/ trained for real, benchmarks/ with two rows, pipeline.json."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("card")
    run, data = root / "run", root / "pairs"
    write_jsonl(data / "train.jsonl", make_rows(16, seed=5))
    write_jsonl(data / "test.jsonl", make_rows(4, seed=6))
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_values(tiny_model_dir("gemma2"), data, run / "model", max_steps=3, beta=3,
                                                   gamma_beta_ratio=0.4, learning_rate=2e-3, do_eval=True)))
    assert main(["train", str(recipe)]) == 0
    torch.set_num_threads(2)
    results = {
        ("trained", "alpaca_eval"): result("alpaca_eval", "trained", run / "model", {"lc": 12.5, "wr": 10.25, "wr_se": 1.5, "length": 812.0}),
        ("trained", "gsm"): result("gsm", "trained", run / "model", {"accuracy": 41.0, "length": 230.5}),
        ("base", "gsm"): result("gsm", "base", tiny_model_dir("gemma2"), {"accuracy": 35.0, "length": 250.0}),
    }
    for (name, benchmark), values in results.items():
        write_jsonl(run / "benchmarks" / name / benchmark / "result.json", [values])
    (run / "pipeline.json").write_text(json.dumps({"runs": [  # two runs: the card sums their stage seconds
        {"status": "failed", "seconds": {"generate": 9.0}}, {"status": "finished", "seconds": {"generate": 3.0, "train": 30.4}}]}))
    # The manifests the generate and annotate stages leave (their settings, see stages.shards.claim).
    write_jsonl(run / "generations" / "manifest.json", [{
        "stage": "generate", "model": "base", "prompts": "0f3a", "seeds": [13, 21], "temperature": 0.8, "top_p": 0.95,
        "max_new_tokens": 64, "backend": "transformers", "dtype": "float32", "total_rows": 20, "shard_size": 10}])
    write_jsonl(run / "scores" / "manifest.json", [{"stage": "annotate", "rewards": [{"type": "numeric_answer", "weight": 1.0}]}])
    return run, results


def test_card_of_a_pipeline_run_fills_every_section(pipeline_run, tiny_model_dir, capsys):
    run, results = pipeline_run
    capsys.readouterr()
    assert main(["card", str(run)]) == 0
    card = run / "model" / "README.md"
    assert capsys.readouterr().out.strip() == str(card)
    text = card.read_text()

    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["base_model"] == str(tiny_model_dir("gemma2")) and meta["license"] == "other" and "datasets" not in meta
    index = meta["model-index"][0]
    assert index["name"] == "run"
    measured = {entry["dataset"]["type"]: {metric["type"]: metric["value"] for metric in entry["metrics"]} for entry in index["results"]}
    assert measured == {"alpaca_eval": results[("trained", "alpaca_eval")]["metrics"], "gsm": results[("trained", "gsm")]["metrics"]}

    # The hyperparameters are the recipe's; the machine and times come from the run's own records.
    for key, value in (("beta", "3"), ("gamma_beta_ratio", "0.4"), ("learning_rate", "0.002"), ("max_steps", "3"),
                       ("max_length", "128"), ("max_prompt_length", "64"), ("seed", "0")):
        assert f"| `{key}` | {value} |" in text
    info = json.loads((run / "model" / "run_info.json").read_text())
    assert f"Trained on {info['hardware']}, torch {torch.__version__}" in text
    assert "The training loop ran 3 optimizer steps in" in text
    assert "stage by stage: generate 12 s, train 30 s." in text
    assert "(16 train pairs, 4 test pairs)" in text
    assert ("the base model answered each of 20 prompts 2 times (seeds 13, 21; temperature 0.8, top_p 0.95, at most 64 new "
            "tokens), every answer was scored by numeric_answer (weight 1)") in text

    # The stop tokens shown are the ones `simpo chat` stops at.
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    stops = stop_token_ids(tokenizer)
    shown = ", ".join(f"`{token}` (id {token_id})" for token, token_id in zip(tokenizer.convert_ids_to_tokens(stops), stops))
    assert f"It ends its turn with {shown}:" in text and "<end_of_turn>" in shown
    assert f"eos_token_id={stops})" in text
    assert f"simpo chat {run / 'model'}\n" in text

    assert markdown_table(load_results(run / "benchmarks")) in text
    assert "| trained | 12.5 [a] | 10.2 [a] | 812 [a] |" in text
    assert "![training curves](training_curves.png)" in text and (run / "model" / "training_curves.png").is_file()
    assert "arXiv:2405.14734" in text and "arXiv:2404.04475" in text and "arXiv:2406.11939" not in text


@pytest.mark.usefixtures("one_thread")
def test_the_card_snippet_answers_as_simpo_chat_does(pipeline_run, capsys):
    run, _ = pipeline_run
    text = write_card(run).read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "max_new_tokens=256" in snippet
    snippet = snippet.replace("max_new_tokens=256", "max_new_tokens=24")  # the same code, a shorter answer
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, {})
    capsys.readouterr()
    assert main(["chat", str(run / "model"), "--prompt", "What is 12 * 7?", "--max-new-tokens", "24", "--dtype", "float32"]) == 0
    assert printed.getvalue().strip() and capsys.readouterr().out == printed.getvalue()


def test_without_results_the_card_says_how_to_make_them(pipeline_run, tmp_path):
    run, _ = pipeline_run
    output = tmp_path / "card" / "README.md"
    assert write_card(run / "model", output=output) == output  # the training output_dir itself, no benchmarks/ in it
    text = output.read_text()
    assert "model-index" not in text.split("---\n")[1]
    assert f"No evaluation results were found in `{run / 'model' / 'benchmarks'}`" in text
    assert f"simpo eval {run / 'model'} --output {run / 'model' / 'benchmarks'}\n" in text and "## Evaluation" in text
    assert (output.parent / re.search(r"!\[training curves\]\((.*?)\)", text).group(1)).resolve() == (run / "model" / "training_curves.png").resolve()


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(RecipeError, match="is not a run folder: expected a pipeline run folder"):
        write_card(tmp_path)
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simpo: error: {tmp_path} is not a run folder") and len(err.strip().splitlines()) == 1


def test_an_eval_folder_that_does_not_exist_is_an_error(pipeline_run, tmp_path):
    run, _ = pipeline_run
    with pytest.raises(RecipeError, match="holds no evaluation results"):
        write_card(run, eval_folder=tmp_path / "missing")


def test_a_readme_the_user_wrote_is_never_replaced(pipeline_run, tmp_path, capsys, monkeypatch):
    import errno

    from simpo.models.card import MARKER

    run, _ = pipeline_run
    output = tmp_path / "README.md"
    assert main(["card", str(run), "--output", str(output)]) == 0
    card = output.read_text()
    assert MARKER in card and card.index(MARKER) > card.index("---\n", 4)  # after the front matter the hub reads
    # A card simpo wrote is replaced.
    output.write_text(card.replace("# run", "# an older card"))
    assert main(["card", str(run), "--output", str(output)]) == 0
    assert output.read_text() == card
    # A README.md the user wrote, or a card whose marker line the user deleted to keep their edits: refused, untouched.
    for mine in ("# My model\n\nNotes I wrote.\n", card.replace(MARKER + "\n", "")):
        output.write_text(mine)
        capsys.readouterr()
        assert main(["card", str(run), "--output", str(output)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"simpo: error: {output} was not written by simpo card (it has no '<!-- written by simpo card' line), so it is left "
            "as it is: move it away, or write the card elsewhere with --output"]
        assert output.read_text() == mine
    # A full disk while writing: the old card stays whole, no partial file is left.
    output.write_text(card.replace("# run", "# an older card"))

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr("os.fsync", disk_full)
        write_card(run, output=output)
    assert output.read_text() == card.replace("# run", "# an older card") and sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
