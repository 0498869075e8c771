"""The evaluation table of the SimPO model cards, from the results `simpo eval` writes.

`simpo eval` writes one `result.json` per model and benchmark, at `OUTPUT/NAME/BENCHMARK/result.json`:

    {"benchmark": "alpaca_eval" | "arena_hard" | "gsm" | "mmlu",
     "name": the row's label, "model": the model's path or hub name,
     "dataset": what was measured, e.g. "AlpacaEval 2 (gpt4_1106_preview reference)",
     "n": items scored, "total": items in the full benchmark,
     "judge": "openai:MODEL" | "local:MODEL" | "reward:MODEL" | null (no judge: exact-match scoring),
     "protocol": {element: value} of what produced it (`evals.protocol`),
     "differences": each element that differs from the gemma-2-9b-it-SimPO card's, "comparable": none does,
     "metrics": {"lc", "wr", "wr_se", "length"} | {"score", "ci_lower", "ci_upper", "length"} | {"accuracy", "length"},
     "length_unit": "characters" | "tokens (...)" | "characters of the reasoning" | null (no length),
     "notes": [what else a reader must know], "judge_counters": {"requests": n, "retries": n, "malformed": n, ...},
     "seconds": {"generate": s, "judge": s}, "settings": {...},
     "scoring": {...} only where more than the judgments decides the score (AlpacaEval's df_gamed.csv)}

The table has exactly the columns of the gemma-2-9b-it-SimPO card, one row per model; every cell
carries a mark ([a], [b], ...) whose footnote says what produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RecipeError
from .protocol import differences

BENCHMARKS = ("alpaca_eval", "arena_hard", "gsm", "mmlu")
# (column title, benchmark, metric)
COLUMNS = (
    ("AE2 LC", "alpaca_eval", "lc"), ("AE2 WR", "alpaca_eval", "wr"), ("AE2 Length", "alpaca_eval", "length"),
    ("AH", "arena_hard", "score"), ("AH Length", "arena_hard", "length"),
    ("GSM", "gsm", "accuracy"), ("GSM Length", "gsm", "length"),
    ("MMLU", "mmlu", "accuracy"), ("MMLU Length", "mmlu", "length"),
)


def load_results(folder: str | Path) -> dict[str, dict[str, dict]]:
    """{row name: {benchmark: result}} of every `NAME/BENCHMARK/result.json` under `folder`, rows in
    the order their folders were first written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecipeError(f"{folder} holds no evaluation results (run simpo eval first)")
    rows: dict[str, dict[str, dict]] = {}
    paths = sorted(folder.glob("*/*/result.json"), key=lambda p: (p.parent.parent.stat().st_mtime_ns, p.parent.parent.name))
    for path in paths:
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RecipeError(f"{path} is not valid JSON ({err}): delete it to evaluate that benchmark again") from None
        rows.setdefault(result["name"], {})[result["benchmark"]] = result
    return rows


def footnote(result: dict) -> str:
    """What produced a result, in one line: data, items, judge, comparability, notes."""
    parts = [f"{result['dataset']}: {result['n']} of {result['total']} items"]
    if result.get("judge"):
        parts.append(f"judge {result['judge']}")
    if result.get("length_unit"):
        parts.append(f"length in {result['length_unit']}")
    # Compared again here, so that a result written before protocols were recorded (or by an older
    # simpo with another idea of the card) is never shown as comparable.
    differ = differences(result["benchmark"], result["protocol"]) if "protocol" in result else ["its protocol was not recorded"]
    if differ:
        parts.append("not comparable to the card: " + ", ".join(differ))
    parts += result.get("notes", [])
    return "; ".join(parts)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def markdown_table(rows: dict[str, dict[str, dict]]) -> str:
    """The card's table: `Model | AE2 LC | AE2 WR | AE2 Length | AH | AH Length | GSM | GSM Length |
    MMLU | MMLU Length`, each cell marked with the footnote of what produced it."""
    marks: dict[str, str] = {}  # footnote -> mark
    lines = ["| Model | " + " | ".join(title for title, _, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, results in rows.items():
        cells = []
        for _, benchmark, metric in COLUMNS:
            result = results.get(benchmark)
            value = None if result is None else result["metrics"].get(metric)
            if value is None:
                cells.append("-")
                continue
            note = footnote(result)
            mark = marks.setdefault(note, chr(ord("a") + len(marks)))
            cells.append(f"{_cell(value)} [{mark}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- [{mark}] {note}" for note, mark in marks.items()]
    return "\n".join(lines)
