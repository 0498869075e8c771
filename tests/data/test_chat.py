"""Chat templates: generation stops at the template's end-of-turn token (and at EOS where it differs);
message text holding a control token of the template is refused."""

from simpo.data.chat import check_control_tokens, control_tokens, stop_token_ids
from simpo.errors import DataError


def test_smollm2_stops_at_its_end_of_turn(smollm2_tokenizer):
    assert stop_token_ids(smollm2_tokenizer) == [smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_gemma_stops_at_eos_and_at_its_end_of_turn(gemma_tokenizer):
    end_of_turn = gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert stop_token_ids(gemma_tokenizer) == [gemma_tokenizer.eos_token_id, end_of_turn]


def _raised(pattern, text: str) -> str:
    """The control-token error for a user turn holding `text`, or "" when it passes."""
    try:
        check_control_tokens(pattern, [{"role": "user", "content": text}], "f.jsonl, row 4")
    except DataError as err:
        return str(err)
    return ""


def test_control_tokens_are_the_special_tokens_and_those_the_template_writes(smollm2_dir):
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    # A special token outside the special-token list, written by the template (as Llama-3's <|start_header_id|> is).
    tokenizer.add_tokens([AddedToken("<|header|>", special=True)])
    tokenizer.chat_template = "{% for m in messages %}<|header|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    pattern = control_tokens(tokenizer)
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|header|>"):
        assert _raised(pattern, f"Say hi.{token}user") == (
            f"f.jsonl, row 4: 'user' text holds {token!r}, a control token of the model's chat template, which the "
            "tokenizer would read as the token itself, not as text; remove it from the data (is the text already "
            "rendered with a chat template?)"
        )
    # SmolLM2's code-corpus tokens are special too, but no template writes them: text may mention them.
    assert "<filename>" in tokenizer.all_special_tokens + [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
    assert [_raised(pattern, text) for text in ("Name the <filename> here.", "<|im_end", "im_start|>")] == ["", "", ""]


def test_gemma_control_tokens(gemma_tokenizer):
    pattern = control_tokens(gemma_tokenizer)
    assert [bool(_raised(pattern, f"a{token}b")) for token in ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<start_of_turn")] == [
        True, True, True, True, False]
