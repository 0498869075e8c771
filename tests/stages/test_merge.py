"""A LoRA run end to end (`simpo train` with use_peft, then `simpo merge`): the output folder holds the
adapter, its checkpoints resume bitwise, the merged model's log-probs equal the adapted model's, and
the adapter folder itself loads (merged in memory) with the merged model's logits."""

import json
import shutil

import pytest
import torch
import yaml
from helpers import plain_response_stats, recipe_values, write_jsonl
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from simpo.cli import main
from simpo.config.recipe import ModelConfig
from simpo.data.bundled import make_rows
from simpo.models.loading import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """(the base folder, the recipe file, the run's output_dir): 2 steps of LoRA SimPO, a checkpoint each step."""
    torch.set_num_threads(1)  # one_thread is function-scoped; the killed-and-resumed comparison needs one thread throughout
    folder, tmp = tiny_model_dir("llama"), tmp_path_factory.mktemp("lora-run")
    data = write_jsonl(tmp / "pairs.jsonl", make_rows(8, seed=5))
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_values(folder, data, tmp / "out", use_peft=True, lora_r=4, learning_rate=1e-2,
                                                   max_steps=2, save_strategy="steps", save_steps=1)))
    assert main(["train", str(recipe)]) == 0
    return folder, recipe, tmp / "out"


def test_the_run_folder_holds_the_adapter_and_a_checkpoint_resumes_it(lora_run, tmp_path, caplog):
    folder, recipe, out = lora_run
    files = {path.name for path in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "generation_config.json",
            "trainer_state.json", "recipe.yaml"} <= files and "model.safetensors" not in files
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(folder.resolve())
    assert {"adapter_model.safetensors", "optimizer.pt"} <= {path.name for path in (out / "checkpoint-1").iterdir()}
    # A run stopped after checkpoint-1, started again with the same recipe: it resumes and ends bitwise equal.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-1", resumed / "checkpoint-1")
    shutil.copy(out / "recipe.yaml", resumed / "recipe.yaml")
    assert main(["train", str(recipe), "--output_dir", str(resumed)]) == 0
    assert f"resuming from {resumed / 'checkpoint-1'}" in caplog.text
    final, again = load_file(out / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert final.keys() == again.keys() and all(torch.equal(final[name], again[name]) for name in final)
    assert main(["card", str(out)]) == 0  # the model card of a LoRA run says what the folder holds
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and "LoRA adapter of that base model (rank 4)" in card and f"simpo merge {out}" in card


def test_merged_model_equals_the_adapted_one_and_the_adapter_folder_loads_merged(lora_run, tmp_path):
    folder, _, out = lora_run
    merged_dir = tmp_path / "merged"
    assert main(["merge", str(out), "--output", str(merged_dir)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()  # plain transformers
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), out).eval()
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = make_rows(4, seed=11)
    for side in ("chosen", "rejected"):
        expected = plain_response_stats(adapted, tokenizer, rows, side)["average"]
        torch.testing.assert_close(plain_response_stats(merged, tokenizer, rows, side)["average"], expected, atol=1e-5, rtol=0)
        assert not torch.allclose(plain_response_stats(base, tokenizer, rows, side)["average"], expected, atol=1e-3)  # it trained
    # The run's stop tokens (a list: the end of an assistant turn), not the base's generation config (an id).
    assert json.loads((merged_dir / "generation_config.json").read_text())["eos_token_id"] == tokenizer.convert_tokens_to_ids(["<|im_end|>"])

    # The adapter folder given as a model (generate, eval, evaluate, chat load through load_model).
    loaded = load_model(ModelConfig(model_name_or_path=str(out))).eval()
    ids = torch.tensor([tokenizer.apply_chat_template(rows[0]["chosen"], tokenize=True, return_dict=False)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, merged(ids).logits, atol=1e-6, rtol=0)
    assert loaded.generation_config.eos_token_id == merged.generation_config.eos_token_id


def test_a_full_disk_during_the_merge_leaves_no_folder(lora_run, tmp_path, monkeypatch):
    import errno
    import os

    from transformers import PreTrainedTokenizerBase

    _, _, out = lora_run
    save = PreTrainedTokenizerBase.save_pretrained

    def disk_full_midway(self, directory, *args, **kwargs):  # the real save, then the disk fills in tokenizer.json
        save(self, directory, *args, **kwargs)
        with open(os.path.join(directory, "tokenizer.json"), "r+b") as file:
            file.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full_midway)
        main(["merge", str(out), "--output", str(tmp_path / "merged")])
    assert sorted(os.listdir(tmp_path)) == []  # neither the folder nor its partial copy
    assert main(["merge", str(out), "--output", str(tmp_path / "merged")]) == 0
    assert AutoTokenizer.from_pretrained(tmp_path / "merged").chat_template
