"""The bundled preference dataset: verifiable tasks, the correct answer chosen, a wrong one rejected.

Every task has one checkable answer (arithmetic, word problems, comparisons, parity, counting,
ordering). The rejected answer has the same wording with the kind of mistake a small model makes
(a dropped carry, an off-by-one, the wrong operand), so only correctness separates the two.
Rows use the UltraFeedback layout of `gemma2-ultrafeedback-armorm`: a `prompt` string and
`chosen`/`rejected` conversations. `python -m simpo.data.bundled pairs DIR` writes train.jsonl
and test.jsonl; the copy in `data/verifiable-prefs` was written by it with the default seeds.

The bundled prompts (`data/verifiable-prompts`, `python -m simpo.data.bundled prompts DIR`) are
questions with a numeric `answer`, for on-policy generation and held-out greedy accuracy. The
bundled conversations (`data/verifiable-conversations`, `python -m simpo.data.bundled conversations
DIR`) are `messages` rows of the same tasks answered correctly, for `simpo sft`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jack", "Lena", "Omar", "Priya", "Sam"]
ITEMS = ["apples", "books", "marbles", "stickers", "pencils", "coins", "cards", "shells", "stamps", "cookies"]
WORDS = ["banana", "strawberry", "mississippi", "committee", "balloon", "letter", "bookkeeper", "assessment",
         "parallel", "coffee", "success", "address", "tomorrow", "pepper", "referee", "giraffe", "umbrella"]


def _wrong_number(rng: random.Random, right: int) -> int:
    """A plausible slip: off by one, off by ten (a lost carry), or two digits swapped."""
    candidates = {right + 1, right - 1, right + 10, right - 10}
    digits = str(abs(right))
    if len(digits) >= 2 and digits[-1] != digits[-2]:
        candidates.add(int(digits[:-2] + digits[-1] + digits[-2]) * (1 if right >= 0 else -1))
    candidates.discard(right)
    return rng.choice(sorted(candidates))


def addition(rng):
    a, b = rng.randint(12, 99), rng.randint(12, 99)
    right = a + b
    wrong = _wrong_number(rng, right)
    return f"What is {a} + {b}?", f"{a} + {b} = {right}. The answer is {right}.", f"{a} + {b} = {wrong}. The answer is {wrong}."


def subtraction(rng):
    a, b = rng.randint(40, 150), rng.randint(11, 39)
    right = a - b
    wrong = _wrong_number(rng, right)
    return f"What is {a} - {b}?", f"{a} - {b} = {right}. The answer is {right}.", f"{a} - {b} = {wrong}. The answer is {wrong}."


def multiplication(rng):
    a, b = rng.randint(2, 9), rng.randint(3, 19)
    right = a * b
    wrong = rng.choice([right + a, right - a, right + 1, a + b])
    return f"What is {a} x {b}?", f"{a} x {b} = {right}. The answer is {right}.", f"{a} x {b} = {wrong}. The answer is {wrong}."


def word_problem(rng):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    have, more = rng.randint(5, 40), rng.randint(3, 25)
    if rng.random() < 0.5:
        question = f"{name} has {have} {item} and gets {more} more. How many {item} does {name} have now?"
        right, wrong = have + more, rng.choice([have - more, have + more + 1, have + more - 1])
        work = f"{have} + {more}"
    else:
        have += more
        question = f"{name} has {have} {item} and gives away {more}. How many {item} are left?"
        right, wrong = have - more, rng.choice([have + more, have - more + 1, have - more - 1])
        work = f"{have} - {more}"
    return question, f"{work} = {right}, so {name} has {right} {item}.", f"{work} = {wrong}, so {name} has {wrong} {item}."


def comparison(rng):
    a = rng.randint(1, 9) / 10
    b = round(a + rng.choice([-1, 1]) * rng.randint(1, 9) / 100, 2)
    larger, smaller = (a, b) if a > b else (b, a)
    question = f"Which number is larger, {a} or {b}?"
    return question, f"{larger} is larger than {smaller}.", f"{smaller} is larger than {larger}."


def parity(rng):
    n = rng.randint(101, 999)
    right, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    return f"Is {n} even or odd?", f"{n} is {right}, because its last digit is {n % 10}.", f"{n} is {wrong}, because its last digit is {n % 10}."


def letter_count(rng):
    word = rng.choice(WORDS)
    letter = rng.choice(sorted(set(word)))
    right = word.count(letter)
    wrong = right + 1 if right == 1 or rng.random() < 0.5 else right - 1
    question = f"How many times does the letter '{letter}' appear in the word '{word}'?"
    plural = lambda n: "time" if n == 1 else "times"  # noqa: E731
    return question, f"The letter '{letter}' appears {right} {plural(right)} in '{word}'.", f"The letter '{letter}' appears {wrong} {plural(wrong)} in '{word}'."


def ordering(rng):
    numbers = rng.sample(range(1, 60), 4)
    right = sorted(numbers)
    wrong = right[:]
    i = rng.randrange(3)
    wrong[i], wrong[i + 1] = wrong[i + 1], wrong[i]
    question = f"Sort these numbers from smallest to largest: {', '.join(map(str, numbers))}."
    return question, f"From smallest to largest: {', '.join(map(str, right))}.", f"From smallest to largest: {', '.join(map(str, wrong))}."


TASKS = (addition, subtraction, multiplication, word_problem, comparison, parity, letter_count, ordering)


def make_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        question, right, wrong = rng.choice(TASKS)(rng)
        user = {"role": "user", "content": question}
        rows.append({
            "prompt": question,
            "chosen": [user, {"role": "assistant", "content": right}],
            "rejected": [user, {"role": "assistant", "content": wrong}],
        })
    return rows


SYSTEM_PROMPTS = ["You are a careful assistant. Check your arithmetic.", "Answer briefly and show the calculation."]


def make_conversations(count: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """`count` SFT conversations (`messages`): one to three questions, each answered correctly, a
    quarter of them after a system message; no question in `exclude`."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.25 else []
        for _ in range(rng.choice((1, 1, 2, 3))):
            question, right, _ = rng.choice(TASKS)(rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": right}]
        if not any(turn["content"] in exclude for turn in messages):
            rows.append({"messages": messages})
    return rows


def write_conversations(folder: str | Path, train_size: int = 300, test_size: int = 40, seed: int = 0) -> Path:
    """Held-out conversations first, then training ones that share no question with them."""
    test_rows = make_conversations(test_size, seed + 1)
    questions = {turn["content"] for row in test_rows for turn in row["messages"] if turn["role"] == "user"}
    return _write_splits(folder, {"train": make_conversations(train_size, seed, exclude=questions), "test": test_rows})


def times_table(rng):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return (f"What is {a} x {b}?" if rng.random() < 0.5 else f"What is {a} times {b}?"), a * b


def small_sum(rng):
    a, b = rng.randint(10, 49), rng.randint(2, 9)
    return f"What is {a} + {b}?", a + b


def small_difference(rng):
    a, b = rng.randint(11, 30), rng.randint(2, 9)
    return f"What is {a} - {b}?", a - b


# Chosen so that SmolLM2-135M-Instruct is right sometimes (greedy: about half of the products,
# a fifth of the sums and differences), which on-policy pairs need: a prompt it always or never
# gets right gives no pair.
PROMPT_TASKS = (times_table, times_table, small_sum, small_difference)


def make_prompts(count: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """`count` distinct prompts with a numeric reference `answer`, none of them in `exclude`."""
    rng = random.Random(seed)
    rows, seen, misses = [], set(exclude), 0
    while len(rows) < count:
        task = rng.choice(PROMPT_TASKS)
        question, answer = task(rng)
        if question in seen:
            misses += 1
            if misses > 100_000:  # the tasks have about 720 questions in all
                raise ValueError(f"{count} distinct prompts asked for, but only {len(rows)} are left besides the {len(exclude)} excluded")
            continue
        misses = 0
        seen.add(question)
        rows.append({"prompt": question, "answer": answer, "task": task.__name__})
    return rows


def write_prompts(folder: str | Path, train_size: int = 240, test_size: int = 100, seed: int = 0) -> Path:
    """Held-out prompts first, then training prompts that differ from all of them."""
    test_rows = make_prompts(test_size, seed + 1)
    train_rows = make_prompts(train_size, seed, exclude={row["prompt"] for row in test_rows})
    return _write_splits(folder, {"train": train_rows, "test": test_rows})


def _write_splits(folder: str | Path, splits: dict[str, list[dict]]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(folder / f"{split}.jsonl", "w") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
    return folder


def write_dataset(folder: str | Path, train_size: int = 2000, test_size: int = 200, seed: int = 0) -> Path:
    test_rows = make_rows(test_size, seed + 1)
    held_out = {row["prompt"] for row in test_rows}
    train_rows = [row for row in make_rows(train_size + test_size, seed) if row["prompt"] not in held_out][:train_size]
    return _write_splits(folder, {"train": train_rows, "test": test_rows})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["pairs", "prompts", "conversations"])
    parser.add_argument("folder")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--test-size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    write = {"pairs": write_dataset, "prompts": write_prompts, "conversations": write_conversations}[options.kind]
    sizes = {key: value for key, value in (("train_size", options.train_size), ("test_size", options.test_size)) if value}
    print(write(options.folder, seed=options.seed, **sizes))
