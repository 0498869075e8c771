"""Reading a preference row: every layout to the same pair, malformed rows named, useless rows dropped."""

import pytest
from helpers import RIGHT, USER, WRONG

from simpo.data.rows import DataError, Pair, read_pair, read_prompt

EXPECTED = Pair(prompt=[USER], chosen=RIGHT, rejected=WRONG)
SYSTEM = {"role": "system", "content": "Answer with a number."}
OTHER_USER = {"role": "user", "content": "And 1 + 1?"}
EARLIER = {"role": "assistant", "content": "2 + 3 = 5."}


@pytest.mark.parametrize("row", [
    {"prompt": USER["content"], "chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # UltraFeedback / armorm
    {"prompt": USER["content"], "chosen": RIGHT["content"], "rejected": WRONG["content"]},  # TRL standard
    {"prompt": [USER], "chosen": [RIGHT], "rejected": [WRONG]},  # TRL conversational
    {"chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # no prompt column
    {"prompt": f"  {USER['content']}\n", "chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # the prompt compared stripped
    {"prompt": [USER], "chosen": [USER, RIGHT], "rejected": [USER, WRONG]},  # a list prompt equal to the prompt turns
])
def test_every_layout_reads_to_the_same_pair(row):
    assert read_pair(row, "f.jsonl, row 1") == EXPECTED


def test_a_multi_turn_conversation_keeps_its_turns_and_takes_a_prompt_of_any_user_turn():
    turns = [SYSTEM, USER, EARLIER, OTHER_USER]
    row = {"prompt": OTHER_USER["content"], "chosen": [*turns, RIGHT], "rejected": [*turns, WRONG]}
    assert read_pair(row, "r") == Pair(prompt=turns, chosen=RIGHT, rejected=WRONG)
    assert read_pair({**row, "prompt": USER["content"]}, "r") == Pair(prompt=turns, chosen=RIGHT, rejected=WRONG)


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


ORDER = "a conversation is an optional first 'system' message, then 'user' and 'assistant' turns alternating, starting with the user"
AGREE = ("r: 'prompt' is not the prompt of the 'chosen' conversation (its turns before the answer); beside a 'prompt', "
         "'chosen' and 'rejected' hold either the answer alone or the whole conversation, prompt turns included")


@pytest.mark.parametrize("row,message", [
    ({"prompt": [{"role": "usr", "content": "hi"}], "chosen": "a", "rejected": "b"},
     "r: turn 1 of 'prompt' has role 'usr'; the roles are 'system', 'user' and 'assistant'"),
    ({"chosen": [USER, RIGHT], "rejected": [USER, {"role": "model", "content": "6"}]},
     "r: turn 2 of 'rejected' has role 'model'; the roles are 'system', 'user' and 'assistant'"),
    ({"chosen": [EARLIER, USER, RIGHT], "rejected": [EARLIER, USER, WRONG]}, f"r: turn 1 of 'chosen' is 'assistant' where 'user' is due; {ORDER}"),
    ({"prompt": [USER, OTHER_USER], "chosen": "a", "rejected": "b"}, f"r: turn 2 of 'prompt' is 'user' where 'assistant' is due; {ORDER}"),
    ({"prompt": [USER, SYSTEM], "chosen": "a", "rejected": "b"}, f"r: turn 2 of 'prompt' is 'system' where 'assistant' is due; {ORDER}"),
    ({"prompt": [SYSTEM, EARLIER, USER], "chosen": "a", "rejected": "b"}, f"r: turn 2 of 'prompt' is 'assistant' where 'user' is due; {ORDER}"),
    ({"prompt": [USER, EARLIER], "chosen": "a", "rejected": "b"},
     "r: the prompt's last turn is 'assistant'; a prompt ends with the user's turn that the answer replies to"),
    ({"prompt": [SYSTEM], "chosen": "a", "rejected": "b"},
     "r: the prompt's last turn is 'system'; a prompt ends with the user's turn that the answer replies to"),
    # Before this check, a conversation ending with the user was reported as differing before its last turn.
    ({"chosen": [USER, RIGHT, USER], "rejected": [USER, WRONG, USER]},
     "r: the last turn of 'chosen' has role 'user'; 'chosen' ends with the assistant's answer"),
    # Before this check, the prompt was silently replaced by the first assistant turn.
    ({"prompt": USER["content"], "chosen": [RIGHT, RIGHT], "rejected": [WRONG, WRONG]}, AGREE),
    ({"prompt": "What is 1 + 1?", "chosen": [USER, RIGHT], "rejected": [USER, WRONG]}, AGREE),
    ({"prompt": [SYSTEM, USER], "chosen": [USER, RIGHT], "rejected": [USER, WRONG]}, AGREE),
    ({"prompt": USER["content"], "chosen": [USER, RIGHT], "rejected": WRONG["content"]},
     "r: 'chosen' is a whole conversation but 'rejected' only the answer; give both the whole conversation or both the answer alone"),
])
def test_conversations_out_of_order_raise_with_the_rule(row, message):
    with pytest.raises(DataError) as raised:
        read_pair(row, "r")
    assert str(raised.value) == message


def test_a_prompt_reads_in_order_ending_with_the_user():
    assert read_prompt("hi", "r") == [{"role": "user", "content": "hi"}]
    assert read_prompt([SYSTEM, USER, EARLIER, OTHER_USER], "r") == [SYSTEM, USER, EARLIER, OTHER_USER]
    with pytest.raises(DataError, match="r: the prompt's last turn is 'system'"):
        read_prompt([SYSTEM], "r")


@pytest.mark.parametrize("row,reason", [
    ({"prompt": "q", "chosen": "  ", "rejected": "a"}, "empty response"),
    ({"prompt": "q", "chosen": "same", "rejected": "same "}, "chosen identical to rejected"),
    ({"prompt": " ", "chosen": "a", "rejected": "b"}, "empty prompt"),
])
def test_useless_rows_get_a_drop_reason(row, reason):
    assert read_pair(row, "f.jsonl, row 1") == reason
