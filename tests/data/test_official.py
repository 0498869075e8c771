"""`tokenization: official` reproduces the official SimPO trainer's token sequences, truncation
included, for the Gemma-2, Llama-3 (before and after its end-of-turn EOS update), Mistral and Zephyr
templates: the official text construction and `tokenize_row`, written out here, against
`simpo inspect --json` on tokenizer-only folders (tokenizers trained here with each family's special
tokens), token for token. Tokenizers whose pre-tokenizer does not split at spaces make tokens merge
across the prompt/answer boundary, as the official code's merge handling is there for."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import REPO, write_jsonl

from simpo.cli import main
from simpo.data.bundled import make_rows
from simpo.data.collate import PairCollator

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
ZEPHYR_TEMPLATE = (  # the alignment-handbook's default
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
GEMMA_TEMPLATE = yaml.safe_load((REPO / "recipes" / "gemma-2-9b-it-simpo.yaml").read_text())["chat_template"]
# Not a real family: answers follow the prompt's "=" directly, so "=5" can merge where "=S" does not,
# and the two sides' prompts differ.
BARE_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'user' %}={% else %};{% endif %}{% endfor %}"

# family: (folder name, special tokens, bos, eos, template given to the tokenizer, regex pre-tokenizer)
FAMILIES = {
    "gemma2": ("gemma-2-tok", ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", GEMMA_TEMPLATE, True),
    "llama3": ("llama-3-tok", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>", "<|eot_id|>", LLAMA3_TEMPLATE, True),
    "llama3-before-update": ("llama-3-old-tok", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                                 "<|eot_id|>"], "<|begin_of_text|>", "<|end_of_text|>", LLAMA3_TEMPLATE, True),
    "mistral": ("mistral-7b-tok", ["<s>", "</s>"], "<s>", "</s>", ZEPHYR_TEMPLATE, False),  # the official code swaps the template
    "zephyr": ("zephyr-7b-tok", ["<s>", "</s>"], "<s>", "</s>", ZEPHYR_TEMPLATE, False),
    "bare": ("bare-tok", ["<s>", "</s>"], "<s>", "</s>", BARE_TEMPLATE, False),
}


def rows() -> list[dict]:
    """Bundled pairs, a multi-turn pair with a system message, one with a long prompt and long answers
    (cut at max_length 96, max_prompt_length 64), and answers starting with a digit and with a letter."""
    long_question = "Add these numbers one by one and report the total: " + ", ".join(str(n) for n in range(40, 80))
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    bot = lambda text: {"role": "assistant", "content": text}  # noqa: E731
    extra = [
        {"prompt": [{"role": "system", "content": "Be brief."}, user("What is 2 + 2?"), bot("4."), user("And 3 + 3?")],
         "chosen": [bot("6.")], "rejected": [bot("7.")]},
        {"prompt": [user(long_question)], "chosen": [bot("The total is " + " + ".join(map(str, range(40, 70))))],
         "rejected": [bot("It is 2380.")]},
        {"prompt": [user("2+3")], "chosen": [bot("5")], "rejected": [bot("Six")]},
    ]
    return make_rows(8, seed=11) + extra


def _tokenizer_folder(family: str, tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    name, specials, bos, eos, template, regex = FAMILIES[family]
    corpus = [turn["content"] for row in make_rows(300, seed=7) for turn in row["chosen"] + row["rejected"]]
    corpus += ["[INST] What is 2 + 2? [/INST] 4.", "\n<|assistant|>\n4.", "2+3=5;", "=5;"] * 200 + ["user", "assistant", "system", "model"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=regex)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=700, special_tokens=specials,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=eos)
    fast.chat_template = template
    folder = tmp_path / name
    fast.save_pretrained(folder)
    return folder, fast


def official_reference(tokenizer, row: dict, model_name: str, max_length: int, max_prompt_length: int):
    """The official run_simpo.py + tokenize_row, written out: [(prompt ids, answer ids)] of chosen, rejected,
    and whether a token merged across the boundary."""
    from simpo.data.official import MISTRAL_CHAT_TEMPLATE

    if "mistral" in model_name:
        tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    if isinstance(row["prompt"], list):
        prompt, chosen, rejected = list(row["prompt"]), row["chosen"], row["rejected"]
    else:
        prompt, chosen, rejected = list(row["chosen"][:-1]), row["chosen"][-1:], row["rejected"][-1:]
    template = tokenizer.chat_template
    if prompt[0]["role"] != "system" and ("system" in template or "<|im_start|>" in template):
        prompt.insert(0, {"role": "system", "content": ""})
    text_prompt = tokenizer.apply_chat_template(prompt, tokenize=False)
    answers = []
    for messages in (chosen, rejected):
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        answers.append(text[len(tokenizer.bos_token):] if text.startswith(tokenizer.bos_token) else text)
    sides, merged = [], False
    for answer in answers:
        full = tokenizer(text_prompt + answer, add_special_tokens=False)["input_ids"]
        alone = tokenizer(text_prompt, add_special_tokens=False)["input_ids"]
        merged = merged or alone != full[: len(alone)]
        start = len(alone) - 1 if alone != full[: len(alone)] else len(alone)
        prompt_ids, answer_ids = full[:start], full[start:]
        if not prompt_ids or prompt_ids[0] != tokenizer.bos_token_id:
            prompt_ids = [tokenizer.bos_token_id] + prompt_ids
        if not answer_ids or answer_ids[-1] != tokenizer.eos_token_id:
            answer_ids = answer_ids + [tokenizer.eos_token_id]
        sides.append([prompt_ids, answer_ids])
    longer = max(len(answer) for _, answer in sides)
    for side in sides:
        if len(side[0]) + longer > max_length:
            side[0] = side[0][-max_prompt_length:]  # keep_end
    for side in sides:
        if len(side[0]) + longer > max_length:
            side[1] = side[1][: max_length - max_prompt_length]
    return sides, merged


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_inspect_json_equals_the_official_tokens(family, tmp_path, monkeypatch, capsys):
    folder, tokenizer = _tokenizer_folder(family, tmp_path)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(folder), "dataset_mixer": {str(data): 1.0}, "tokenization": "official",
                                      "max_length": 96, "max_prompt_length": 64}))
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", str(recipe), "--json", "--rows", "20"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == len(rows())
    merged = differ = cut = 0
    for row, got in zip(rows(), printed):
        ((chosen_prompt, chosen), (rejected_prompt, rejected)), boundary_merged = official_reference(tokenizer, row, folder.name, 96, 64)
        assert (got["chosen_ids"], got["rejected_ids"]) == (chosen, rejected), (family, got["row"])
        assert got.get("chosen_prompt_ids", got["prompt_ids"]) == chosen_prompt
        assert got.get("rejected_prompt_ids", got["prompt_ids"]) == rejected_prompt
        differ += chosen_prompt != rejected_prompt
        cut += got["prompt_truncated"] or got["response_truncated"]
        merged += boundary_merged
    assert cut >= 1
    assert (merged >= 1) == (not FAMILIES[family][5])  # merges only where the pre-tokenizer does not split at spaces
    if family == "bare":
        assert differ >= 1  # "=5" merged, "=S" did not: each side keeps its own prompt


def test_eos_is_appended_only_where_the_template_does_not_end_with_it(tmp_path):
    """Llama-3 after the update (EOS = <|eot_id|>) ends answers with EOS already; before it, EOS
    (<|end_of_text|>) is appended after <|eot_id|>: one token more per response."""
    from simpo.data.official import official_ids
    from simpo.data.rows import read_pair

    lengths = {}
    for family in ("llama3", "llama3-before-update"):
        _, tokenizer = _tokenizer_folder(family, tmp_path / family)
        sides, _, _ = official_ids(tokenizer, read_pair(rows()[0], "row 1"), 4096, 2048, "keep_end", "row 1")
        lengths[family] = len(sides[0][1])
        assert tokenizer.convert_ids_to_tokens(sides[0][1][-2:])[-1] == tokenizer.eos_token
    assert lengths["llama3-before-update"] == lengths["llama3"] + 1


def test_unscored_prompt_tokens_are_read_but_not_scored():
    """A response's unscored leading tokens are the same as those tokens at the end of the prompt."""
    collate = PairCollator(0)
    moved = collate([{"prompt_ids": [5, 6], "chosen_ids": [7, 8, 9], "rejected_ids": [7, 3], "chosen_unscored": 1, "rejected_unscored": 1}])
    plain = collate([{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9], "rejected_ids": [3]}])
    for key in ("input_ids", "logit_index", "target_ids", "target_sequence"):
        assert moved[key].tolist() == plain[key].tolist(), key
