"""Pipeline recipes and stage overrides that cannot run (`simpo pipeline` and the stage commands);
each fails before the first sample is generated."""

from __future__ import annotations

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
