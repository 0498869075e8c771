"""`simpo annotate`: a score for every generated response, resumable, in shards.

Each response's score is the weighted sum of the recipe's rewards (`rewards.scorer`).
"""

from __future__ import annotations

from ..config.pipeline import AnnotateConfig
from ..generation.prompts import prompt_messages
from ..rewards.programmatic import check_references
from ..rewards.scorer import Scorer
from .lock import folder_lock
from .shards import ShardedOutput, fingerprint, read_stage


def _messages(row: dict) -> list[dict]:
    return prompt_messages(row["prompt"], f"prompt {row['prompt_id']}")


def run_annotate(config: AnnotateConfig) -> str:
    from tqdm.auto import tqdm

    config.validate()
    rows = read_stage(config.input)
    check_references(config.rewards, rows, config.input)
    settings = {"stage": "annotate", "rewards": config.rewards, "input": fingerprint(rows)}
    with folder_lock(config.output):  # written from here on, its input checked
        output = ShardedOutput(config.output, settings, len(rows), config.shard_size)
        pending = output.pending()
        if pending:
            scorer = Scorer(config.rewards)
            progress = tqdm(total=len(rows), initial=len(rows) - sum(len(output.shard_rows(i)) for i in pending), unit="prompt", desc="annotate")
            for index in pending:
                shard = [rows[i] for i in output.shard_rows(index)]
                scores = scorer.score_rows(shard, _messages)
                output.write(index, [{**row, "all_rm_scores": row_scores} for row, row_scores in zip(shard, scores)])
                progress.update(len(shard))
            progress.close()
        output.mark_complete()
    return config.output
