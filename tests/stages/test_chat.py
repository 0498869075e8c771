"""`simpo chat`: a one-shot answer equals plain greedy decoding up to the stop token, the interactive
session carries its history (and forgets it on /reset), Gemma's end-of-turn token stops it, and a
bad option is a one-line error."""

import io
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma2ForCausalLM, LlamaForCausalLM

from simpo.cli import main
from simpo.stages.chat import ChatSession

pytestmark = pytest.mark.usefixtures("one_thread")


def greedy_answer(folder, messages, max_new_tokens: int, stop_tokens: list[str]) -> tuple[str, bool]:
    """Greedy decoding written out: the full forward at every step, argmax, stop at any of `stop_tokens`;
    the answer's text and whether a stop token ended it."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    stops = {tokenizer.convert_tokens_to_ids(token) for token in stop_tokens}
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if token in stops:
                return tokenizer.decode(new, skip_special_tokens=True), True
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True), False


def recording_generate(monkeypatch, model_class) -> list[tuple[list[int], list[int]]]:
    """Patch `model_class.generate` to record (prompt ids, output ids) of each call."""
    calls = []
    original = model_class.generate

    def generate(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        calls.append((kwargs["input_ids"][0].tolist(), output[0].tolist()))
        return output

    monkeypatch.setattr(model_class, "generate", generate)
    return calls


# The tiny random Gemma-2 runs to the token limit; the bundled SmolLM2 answers and ends its turn.
@pytest.mark.parametrize(("kind", "stop_tokens", "stops"), [("gemma2", ["<eos>", "<end_of_turn>"], False), ("smollm2", ["<|im_end|>"], True)])
def test_one_shot_answer_is_greedy_decoding_up_to_the_stop_token(kind, stop_tokens, stops, tiny_model_dir, smollm2_dir, capsys):
    folder = smollm2_dir if kind == "smollm2" else tiny_model_dir(kind)
    question = "What is 2 + 3?"
    assert main(["chat", str(folder), "--prompt", question, "--max-new-tokens", "40", "--dtype", "float32"]) == 0
    expected, stopped = greedy_answer(folder, [{"role": "user", "content": question}], 40, stop_tokens)
    assert stopped == stops and expected.strip()
    assert capsys.readouterr().out == expected + "\n"


def test_interactive_session_keeps_the_history_and_reset_forgets_it(smollm2_dir, monkeypatch, capsys):
    folder = smollm2_dir
    tokenizer = AutoTokenizer.from_pretrained(folder)
    calls = recording_generate(monkeypatch, LlamaForCausalLM)
    monkeypatch.setattr(sys, "stdin", io.StringIO("first question\nsecond question\n/reset\nthird question\n/exit\nnever read\n"))
    assert main(["chat", str(folder), "--max-new-tokens", "8", "--dtype", "float32"]) == 0

    assert len(calls) == 3  # /exit ends the session before the last line
    prompts = [tokenizer.decode(prompt) for prompt, _ in calls]
    first_answer = tokenizer.decode(calls[0][1][len(calls[0][0]):], skip_special_tokens=True).strip()
    # The second turn's prompt is the first turn, its answer, and the new question.
    assert prompts[1].startswith(prompts[0] + first_answer + "<|im_end|>")
    assert "first question" in prompts[1] and prompts[1].rstrip().endswith("second question<|im_end|>\n<|im_start|>assistant")
    assert prompts[2] == prompts[0].replace("first question", "third question")  # after /reset: a fresh conversation
    assert "(conversation forgotten)" in capsys.readouterr().err


def test_gemma_session_stops_at_end_of_turn_and_folds_the_system_message(tiny_model_dir, gemma_tokenizer):
    model = Gemma2ForCausalLM.from_pretrained(tiny_model_dir("gemma2"), dtype=torch.float32)
    session = ChatSession(model, gemma_tokenizer, system="Answer briefly.")
    assert gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>") in session.stop_ids
    assert session.stop_ids == [gemma_tokenizer.eos_token_id, gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    prompt = gemma_tokenizer.decode(session.prompt_ids([{"role": "user", "content": "hi"}]))
    assert prompt == "<bos><start_of_turn>user\nAnswer briefly.\n\nhi<end_of_turn>\n<start_of_turn>model\n"


def test_a_long_conversation_drops_its_oldest_exchange(tiny_model_dir, gemma_tokenizer):
    model = Gemma2ForCausalLM.from_pretrained(tiny_model_dir("gemma2"), dtype=torch.float32)
    session = ChatSession(model, gemma_tokenizer, max_new_tokens=400)  # 512 positions: about 100 left for the prompt
    session.history = [{"role": "user", "content": "old " * 60}, {"role": "assistant", "content": "reply"}]
    err = io.StringIO()
    session.reply("new question", io.StringIO(), err)
    assert "its oldest exchange is left out" in err.getvalue()
    assert [turn["content"] for turn in session.history[:1]] == ["new question"]


@pytest.mark.parametrize(("tokens", "message"), [
    (["--temperature", "warm"], "argument --temperature: invalid float value: 'warm'"),
    (["--dtype", "half"], "argument --dtype: invalid choice: 'half'"),
    (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    (["--shout"], "unrecognized arguments: --shout"),
])
def test_a_bad_option_is_a_one_line_error(tokens, message, tiny_model_dir, capsys):
    folder = tiny_model_dir("llama")
    capsys.readouterr()  # what building the fixture printed
    assert main(["chat", str(folder), *tokens]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simpo: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_model_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["chat", str(tmp_path / "nowhere"), "--prompt", "hi"]) == 2
    assert capsys.readouterr().err.strip() == f"simpo: error: model folder {tmp_path / 'nowhere'} does not exist"


def test_input_that_is_not_utf8_is_one_line_naming_the_line():
    from simpo.errors import DataError
    from simpo.stages.chat import converse

    class Echo:
        def reply(self, text, out, err):
            out.write(text + "\n")

    lines = io.TextIOWrapper(io.BytesIO("hello\ncaf\u00e9\nnever read\n".encode("latin-1")), encoding="utf-8")  # as stdin
    out = io.StringIO()
    with pytest.raises(DataError, match=r"^standard input, line 2: byte 0xe9 is not UTF-8"):
        converse(Echo(), lines, out, io.StringIO())
    assert out.getvalue() == "hello\n"
