"""Reading a preference row: every layout to the same pair, malformed rows named, useless rows dropped."""

import pytest
from helpers import RIGHT, USER, WRONG

from simpo.data.rows import DataError, Pair, read_pair

EXPECTED = Pair(prompt=[USER], chosen=RIGHT, rejected=WRONG)


@pytest.mark.parametrize("row", [
    {"prompt": USER["content"], "chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # UltraFeedback / armorm
    {"prompt": USER["content"], "chosen": RIGHT["content"], "rejected": WRONG["content"]},  # TRL standard
    {"prompt": [USER], "chosen": [RIGHT], "rejected": [WRONG]},  # TRL conversational
    {"chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # no prompt column
])
def test_every_layout_reads_to_the_same_pair(row):
    assert read_pair(row, "f.jsonl, row 0") == EXPECTED


@pytest.mark.parametrize("row,message", [
    ({"prompt": "q", "rejected": "a"}, "f.jsonl, row 3: missing 'chosen'"),
    ({"prompt": "q", "chosen": 5, "rejected": "a"}, "f.jsonl, row 3: 'chosen' must be a string or a non-empty list"),
    ({"prompt": "q", "chosen": [{"role": "assistant"}], "rejected": "a"}, "has a message that is not"),
    ({"chosen": "a", "rejected": "b"}, "missing 'prompt'"),
    ({"chosen": [USER, RIGHT], "rejected": [{"role": "user", "content": "other"}, WRONG]}, "differ before their last turn"),
    ({"prompt": [USER], "chosen": [USER], "rejected": [WRONG]}, "last turn of 'chosen' has role 'user'"),
])
def test_malformed_rows_raise_naming_the_row(row, message):
    with pytest.raises(DataError, match=message):
        read_pair(row, "f.jsonl, row 3")


@pytest.mark.parametrize("row,reason", [
    ({"prompt": "q", "chosen": "  ", "rejected": "a"}, "empty response"),
    ({"prompt": "q", "chosen": "same", "rejected": "same "}, "chosen identical to rejected"),
    ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty prompt"),
])
def test_useless_rows_get_a_drop_reason(row, reason):
    assert read_pair(row, "f.jsonl, row 0") == reason
