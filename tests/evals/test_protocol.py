"""A result is comparable to the gemma-2-9b-it-SimPO card only when every element of its protocol is the card's."""

from __future__ import annotations

import pytest

from simpo.evals.protocol import CARD, decoding_text, differences
from simpo.evals.table import footnote, markdown_table

ELEMENTS = [(benchmark, element) for benchmark, card in CARD.items() for element in card]


@pytest.mark.parametrize("benchmark", sorted(CARD))
def test_the_cards_own_protocol_is_comparable(benchmark):
    assert differences(benchmark, dict(CARD[benchmark])) == []


@pytest.mark.parametrize(("benchmark", "element"), ELEMENTS, ids=[f"{b}-{e}" for b, e in ELEMENTS])
def test_one_element_changed_or_missing_is_never_comparable(benchmark, element):
    card = CARD[benchmark]
    changed = {**card, element: f"not {card[element]}"}
    assert differences(benchmark, changed) == [f"{element} not {card[element]} (the card: {card[element]})"]
    missing = {key: value for key, value in card.items() if key != element}
    assert differences(benchmark, missing) == [f"{element} unknown (the card: {card[element]})"]


def test_the_item_count_is_an_element():
    protocol = {**CARD["gsm"], "items": 50}
    assert differences("gsm", protocol) == ["items 50 (the card: 1319)"]


def test_decoding_is_written_as_the_card_writes_it():
    assert decoding_text(0.0, 1.0, 4096) == CARD["gsm"]["decoding"] == "greedy, 4096 new tokens"
    assert decoding_text(0.5, 1.0, 4096) == CARD["alpaca_eval"]["decoding"]
    assert decoding_text(0.5, 1.0, 512) != CARD["alpaca_eval"]["decoding"]


def _result(protocol: dict) -> dict:
    differ = differences("mmlu", protocol)
    return {"benchmark": "mmlu", "dataset": protocol["data"], "n": protocol["items"], "total": 2778, "judge": None,
            "protocol": protocol, "differences": differ, "comparable": not differ, "length_unit": "characters of the reasoning",
            "metrics": {"accuracy": 61.0, "length": 300.0}, "notes": []}


def test_the_footnote_names_each_element_that_differs():
    same = _result(dict(CARD["mmlu"]))
    assert "not comparable" not in footnote(same)
    other = _result({**CARD["mmlu"], "prompt": "simpo's wording of ZeroEval's layout", "items": 100})
    note = footnote(other)
    assert note.endswith("not comparable to the card: items 100 (the card: 2778), "
                         "prompt simpo's wording of ZeroEval's layout (the card: ZeroEval's templates)")
    table = markdown_table({"base": {"mmlu": same}, "simpo": {"mmlu": other}})
    assert "| base | - | - | - | - | - | - | - | 61.0 [a] | 300 [a] |" in table
    assert "| simpo | - | - | - | - | - | - | - | 61.0 [b] | 300 [b] |" in table


def test_a_result_without_a_recorded_protocol_is_not_comparable():
    old = {"benchmark": "mmlu", "dataset": "MMLU", "n": 10, "total": 10, "comparable": True, "notes": []}  # written before protocols were recorded
    assert footnote(old).endswith("not comparable to the card: its protocol was not recorded")
