"""Pipeline recipes and stage overrides that cannot run (`simpo pipeline` and the stage commands);
each fails before the first sample is generated."""

from __future__ import annotations

import hashlib
import json

from . import REMOVE, pipeline_case

NAN = float("nan")

CASES = [
    pipeline_case("seeds-overflow", "generate.seeds", args=("--generate.seeds", "[99999999999999999999, 1]")),
    pipeline_case("seeds-unclosed", "--generate.seeds", args=("--generate.seeds", "[1,2")),
    pipeline_case("seeds-one", "generate.seeds", {"generate.seeds": [1]}),
    pipeline_case("seeds-repeated", "generate.seeds", {"generate.seeds": [1, 1]}),
    pipeline_case("temperature-nan", "generate.temperature", args=("--generate.temperature", ".nan")),
    pipeline_case("temperature-word", "generate.temperature", {"generate.temperature": "hot"}),
    pipeline_case("top-p-zero", "generate.top_p", {"generate.top_p": 0}),
    pipeline_case("max-new-tokens-zero", "generate.max_new_tokens", {"generate.max_new_tokens": 0}),
    pipeline_case("run-dir-number", "run_dir", {"run_dir": 5}),
    pipeline_case("run-dir-is-a-file", "run_dir", {"run_dir": "taken"}, files={"taken": "a file"}),
    pipeline_case("binarize-seed-word", "binarize.seed", args=("--binarize.seed", "abc")),
    pipeline_case("min-gap-nan", "binarize.min_score_gap", {"binarize.min_score_gap": NAN}),
    pipeline_case("test-size-nan", "binarize.test_size", args=("--binarize.test_size", ".nan")),
    pipeline_case("test-size-negative", "binarize.test_size", {"binarize.test_size": -0.1}),
    pipeline_case("test-size-all", "binarize.test_size", {"binarize.test_size": 1000}),
    pipeline_case("reward-unknown", "annotate.rewards[0]", {"annotate.rewards": [{"type": "vibes"}]}),
    pipeline_case("reward-weight-nan", "annotate.rewards[0].weight", {"annotate.rewards": [{"type": "numeric_answer", "weight": NAN}]}),
    pipeline_case("rewards-missing", "annotate.rewards", {"annotate.rewards": REMOVE}),
    pipeline_case("prompts-missing", "generate.prompts", {"generate.prompts": REMOVE}),
    pipeline_case("prompts-folder-missing", "no-such-prompts", {"generate.prompts": "./no-such-prompts"}),
    pipeline_case("section-typo", "generatee", args=("--generatee.seeds", "[1, 2]")),
    pipeline_case("section-key-typo", "generate.sedes", args=("--generate.sedes", "[1, 2]")),
    pipeline_case("section-not-a-mapping", "generate", {"generate": [1, 2]}),
    pipeline_case("backend-unknown", "generate.backend", {"generate.backend": "tpu"}),
    pipeline_case("eval-benchmark-unknown", "eval.benchmarks", {"eval.benchmarks": ["mmlu", "bbh"]}),
    pipeline_case("eval-judge-unknown", "judge", {"eval.judge": "gpt4"}),
    pipeline_case("training-key-in-pipeline", "learning_rate", {"learning_rate": "fast"}),
    pipeline_case("evaluate-split-missing", "evaluate", {"evaluate.split": "test_hard"}),
    pipeline_case("generate-stage-typo", "generate.tempreature", args=("--generate.tempreature", "0.5"), command="generate"),
]

# Reward specs are typed like the training recipe's keys: a quoted "false" is false, so a reward
# model's own code (which would write `code-ran`) never runs without a real true.
RM_CUSTOM_CODE = {
    "rm/config.json": '{"model_type": "llama", "architectures": ["CustomRewardModel"], "auto_map": '
                      '{"AutoConfig": "custom.CustomConfig", "AutoModelForSequenceClassification": "custom.CustomRewardModel"}, '
                      '"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 128}',
    "rm/custom.py": "open('code-ran', 'w').close()\n",
}
CASES += [
    *[pipeline_case(f"reward-trust-{word}", "trust_remote_code: true",
                    {"annotate.rewards": [{"type": "numeric_answer"}, {"type": "reward_model", "model": "./rm", "trust_remote_code": word}]},
                    files=RM_CUSTOM_CODE)
      for word in ("false", "no", "off")],
    pipeline_case("reward-trust-word", "annotate.rewards[0].trust_remote_code",
                  {"annotate.rewards": [{"type": "reward_model", "model": "./rm", "trust_remote_code": "perhaps"}]}),
    pipeline_case("reward-batch-size-zero", "annotate.rewards[0].batch_size",
                  {"annotate.rewards": [{"type": "reward_model", "model": "./rm", "batch_size": 0}]}),
    pipeline_case("reward-max-length-negative", "annotate.rewards[0].max_length",
                  {"annotate.rewards": [{"type": "reward_model", "model": "./rm", "max_length": -5}]}),
    pipeline_case("reward-weight-zero", "annotate.rewards[0].weight", {"annotate.rewards": [{"type": "numeric_answer", "weight": 0}]}),
    pipeline_case("reward-weight-word", "annotate.rewards[0].weight", {"annotate.rewards": [{"type": "numeric_answer", "weight": "heavy"}]}),
]
CASES += [
    pipeline_case("eval-zeroeval-dir-missing", "eval.zeroeval_dir", {"eval.zeroeval_dir": "./no-zeroeval"}),
    pipeline_case("eval-gamed-missing", "eval.alpaca_eval_gamed", {"eval.alpaca_eval_gamed": "./df_gamed.csv"}),
    pipeline_case("eval-arena-hard-dir-a-file", "eval.arena_hard_dir", {"eval.arena_hard_dir": "q.jsonl"}, files={"q.jsonl": "{}"}),
]

# A complete generate stage whose shard was cut in half afterwards: annotate refuses it in one line
# naming the shard, never a traceback deep in json. COMPLETE records each shard's size and SHA-256;
# a COMPLETE written before it did (empty) leaves each line to be read as JSON.
_SHARD = "".join(json.dumps({"prompt_id": str(i), "prompt": "What is 2 + 3?", "answer": 5, "row": i, "seeds": [1, 2],
                             "all_generated_responses": ["5", "6"]}) + "\n" for i in range(2))
_RECORD = json.dumps({"files": {"shard-00000.jsonl": {"bytes": len(_SHARD), "sha256": hashlib.sha256(_SHARD.encode()).hexdigest()}}})
_GENERATIONS = {"gen/manifest.json": json.dumps({"stage": "generate", "total_rows": 2, "shard_size": 2}),
                "gen/shard-00000.jsonl": _SHARD[: len(_SHARD) // 2]}
CASES += [
    pipeline_case("annotate-complete-shard-cut-in-half", f"gen/shard-00000.jsonl is not the file its stage wrote ({len(_SHARD) // 2} "
                  f"bytes, {len(_SHARD)} when the stage finished): delete it and run its stage again",
                  {"annotate.input": "gen"}, files={**_GENERATIONS, "gen/COMPLETE": _RECORD}, command="annotate"),
    pipeline_case("annotate-old-complete-shard-cut-in-half", "gen/shard-00000.jsonl, line 2: not a whole JSON row, so the file "
                  "is damaged", {"annotate.input": "gen"}, command="annotate",
                  files={**_GENERATIONS, "gen/shard-00000.jsonl": _SHARD[: len(_SHARD) * 3 // 4], "gen/COMPLETE": ""}),
]

# A stage key given twice on the command line is refused, as --nproc is.
CASES += [
    pipeline_case("section-override-twice", "--generate.seeds is given twice", args=("--generate.seeds", "[1, 2]", "--generate.seeds", "[3, 4]")),
    pipeline_case("stage-override-twice", "--generate.temperature is given twice",
                  args=("--generate.temperature", "0.5", "--generate.temperature=0.7"), command="generate"),
]

# A pipeline that cannot finish is refused before the first sample, not after generating or training.
JUDGED = {"eval.benchmarks": ["alpaca_eval"], "eval.judge": "openai:gpt-4o"}
CASES += [
    pipeline_case("temperature-zero", "generate.temperature is 0 (greedy)", {"generate.temperature": 0}),
    pipeline_case("temperature-zero-dry-run", "generate.temperature is 0 (greedy)", {"generate.temperature": 0}, args=("--dry-run",)),
    pipeline_case("evaluate-without-programmatic-reward", "evaluate needs a programmatic reward",
                  {"annotate.rewards": [{"type": "reward_model", "model": "./rm"}]}),
    pipeline_case("openai-judge-without-key", "judge openai:gpt-4o needs an API key", JUDGED, env={"OPENAI_API_KEY": None}),
    pipeline_case("openai-judge-empty-key", "judge openai:gpt-4o needs an API key", JUDGED, env={"OPENAI_API_KEY": ""}),
    pipeline_case("openai-judge-official-url-without-key", "needs an API key",
                  {**JUDGED, "eval.judge_base_url": "https://api.openai.com/v1/"}, env={"OPENAI_API_KEY": None}),
    pipeline_case("judge-base-url-not-a-url", "eval.judge_base_url 'not a url' is not an endpoint URL",
                  {**JUDGED, "eval.judge_base_url": "not a url"}, env={"OPENAI_API_KEY": "sk-test"}),
    pipeline_case("judge-base-url-for-local-judge", "eval.judge_base_url is for openai:MODEL judges only",
                  {"eval.benchmarks": ["alpaca_eval"], "eval.judge_base_url": "http://localhost:8000/v1"}),
    pipeline_case("judge-max-tokens-for-local-judge", "eval.judge_max_tokens is for openai:MODEL judges only",
                  {"eval.benchmarks": ["arena_hard"], "eval.judge_max_tokens": 64}),
]
