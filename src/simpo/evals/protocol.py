"""What the gemma-2-9b-it-SimPO card's numbers were measured with, element by element, and where a
result's protocol differs from it.

A result is comparable to the card only when every element of its protocol equals the card's: data
set and version, item count, prompt wording, decoding, judge, and each benchmark's own elements
(AlpacaEval's LC variant and order of outputs, Arena-Hard's version, category and style control,
the unit of a length). A footnote names each element that differs, with both values.

`simpo eval` builds a result's protocol from the run (data, items, decoding, judge) and from the
task's scoring (the rest); `CARD` holds the card's values. Where an element is unknown to simpo (an
endpoint that serves a model under a name), the protocol says what was asked for, and the
footnote says so.
"""

from __future__ import annotations

# The official evaluation of gemma-2-9b-it-SimPO (DESIGN.md section 1): AlpacaEval 2 by the
# weighted gpt-4-turbo annotator, Arena-Hard v0.1, GSM and MMLU-Redux by ZeroEval.
GREEDY_4096 = "greedy, 4096 new tokens"
OPENAI_GPT4_1106 = "openai:gpt-4-1106-preview"
CARD: dict[str, dict[str, object]] = {
    "alpaca_eval": {
        "data": "tatsu-lab/alpaca_eval (gpt4_1106_preview reference)", "items": 805,
        "decoding": "temperature 0.5, top_p 1.0, 4096 new tokens", "judge": OPENAI_GPT4_1106,
        "lc": "length_controlled_v1", "order": "alpaca_eval's, seeded by the instruction",
    },
    "arena_hard": {
        "data": "Arena-Hard v0.1 (gpt-4-0314 baseline)", "items": 500, "decoding": GREEDY_4096, "judge": OPENAI_GPT4_1106,
        "verdicts": "v0.1: [[..]] only", "category": "all questions pooled", "style_control": "none",
        "length": "tiktoken cl100k tokens",
    },
    "gsm": {"data": "yuchenlin/zero-eval gsm (test)", "items": 1319, "decoding": GREEDY_4096, "prompt": "ZeroEval's templates"},
    "mmlu": {"data": "yuchenlin/zero-eval mmlu-redux (test)", "items": 2778, "decoding": GREEDY_4096, "prompt": "ZeroEval's templates"},
}


def differences(benchmark: str, protocol: dict) -> list[str]:
    """Each element of `protocol` that differs from the card's, as 'element X (the card: Y)'; an
    element the card has and the protocol lacks counts as different."""
    card = CARD[benchmark]
    return [f"{element} {protocol.get(element, 'unknown')} (the card: {value})"
            for element, value in card.items() if protocol.get(element) != value]


def decoding_text(temperature: float, top_p: float, max_new_tokens: int) -> str:
    """A decoding setting as the protocol names it: 'greedy, 4096 new tokens' or 'temperature 0.5, top_p 1.0, 4096 new tokens'."""
    sampling = "greedy" if temperature == 0 else f"temperature {temperature:g}, top_p {top_p:.1f}"
    return f"{sampling}, {max_new_tokens} new tokens"
