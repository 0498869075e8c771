"""A recipe kind: how a flat recipe mapping is read, named, typed, checked and built, the same for every kind.

A recipe is one flat mapping, from a YAML file (the official SimPO `training_configs` layout) with
`--key value` overrides over it. Each key belongs to one of its kind's three dataclasses (what to
load, what to train on, a `transformers.TrainingArguments`). The training recipe (`config.recipe`)
and the SFT recipe (`config.sft`) are the two kinds; each adds its own checks. Everything is
validated before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

import yaml

from ..errors import RecipeError, read_json
from ..models.bundled import BUNDLED
from ..models.precision import DTYPES, resolve_bf16
from .limits import check_limits
from .types import convert, field_types

if TYPE_CHECKING:
    from .recipe import Recipe


# Old names that official recipes still use, mapped to the name we store. transformers 5 reads a
# `warmup_steps` below 1 as a fraction of the training steps, which is what `warmup_ratio` meant.
ALIASES = {
    "evaluation_strategy": "eval_strategy",
    "dtype": "torch_dtype",
    "warmup_ratio": "warmup_steps",
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML itself keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise RecipeError(f"{key_node.start_mark.name}, line {key_node.start_mark.line + 1}: {key!r} is set twice "
                                  f"(also on line {seen[key] + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """`--key value` / `--key=value` pairs; values are read as YAML (numbers, lists, mappings). A key
    given twice is refused (two names of one key are `RecipeKind.normalise`'s)."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise RecipeError(f"expected an override like --key value, got {token!r}")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"  # a bare flag
        if key in overrides:
            raise RecipeError(f"--{key} is given twice; give it once")
        try:
            overrides[key] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as err:
            raise RecipeError(f"--{key} {value!r} is not a YAML value ({err.problem or err}); quote lists like '[1, 2]' whole") from None
        i += 1
    return overrides


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path} is not a text file (a recipe is YAML in UTF-8)") from None
    except OSError as err:
        raise RecipeError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(values, dict):
        raise RecipeError(f"{path} must be a mapping of recipe keys, got {type(values).__name__}")
    return values


# Keys of the pipeline recipe (`config.pipeline`), which neither kind takes.
PIPELINE_KEYS = ("run_dir", "rounds", "prompts_per_round", "reference", "generate", "annotate", "binarize", "evaluate", "eval")


@dataclass(frozen=True)
class RecipeKind:
    """One kind of recipe: the training recipe (`config.recipe.TRAINING`) or the SFT recipe (`config.sft.SFT`).

    Its keys are the fields of its three sections but `excluded`. Reading, key names (`ALIASES`),
    value types (`config.types`), ranges (`config.limits`) and the checks every recipe needs are the
    same for every kind; `check_values` holds the kind's own.
    """

    recipe: type  # Recipe or a subclass: the types of its fields model, data and training are the sections
    output_dir: str  # when the recipe sets none
    check_values: Callable[[dict[str, Any]], None]  # the kind's own checks, after those of every kind
    mixer_required: str  # the error for a missing dataset_mixer, saying what its datasets hold
    foreign: str  # "{key!r} in {source} " + this, for a pipeline key or one of `foreign_keys`
    foreign_keys: frozenset[str] = frozenset()  # keys of another kind of recipe
    pipeline_sections: bool = False  # a dotted key names a pipeline section: a misspelt one is told the sections
    excluded: tuple[str, ...] = ()  # section fields this kind does not take

    @cached_property
    def sections(self) -> dict[str, type]:
        """model, data and training: the dataclass of each one's keys (training's a TrainingArguments)."""
        hints = get_type_hints(self.recipe)
        return {section: hints[section] for section in ("model", "data", "training")}

    @cached_property
    def fields(self) -> dict[str, set[str]]:
        return {section: {f.name for f in dataclasses.fields(cls) if f.init} - set(self.excluded) for section, cls in self.sections.items()}

    @cached_property
    def known_keys(self) -> set[str]:
        return set().union(*self.fields.values())

    @cached_property
    def field_types(self) -> dict[str, Any]:
        return {name: kind for cls in self.sections.values() for name, kind in field_types(cls).items()}

    def normalise(self, values: dict[str, Any], source: str) -> dict[str, Any]:
        """Keys as stored (aliases resolved), each given once, values converted to their keys' types."""
        out: dict[str, Any] = {}
        given: dict[str, str] = {}  # stored name -> the name the recipe used
        for key, value in values.items():
            name = ALIASES.get(key, key)
            if name not in self.known_keys:
                self._refuse(key, name, source)
            if name in out:
                raise RecipeError(f"{source} sets both {given[name]!r} and {key!r}, two names of one key: keep one")
            given[name] = key
            out[name] = self._typed(name, key, value, source)
            if key == "warmup_ratio" and not 0 <= out[name] < 1:
                raise RecipeError(f"warmup_ratio must be a fraction in [0, 1), got {value!r}")
        return out

    def _refuse(self, key: Any, name: Any, source: str) -> None:
        section, dot, rest = str(name).partition(".")
        if section in PIPELINE_KEYS or name in self.foreign_keys:
            raise RecipeError(f"{key!r} in {source} {self.foreign}")
        if dot and self.pipeline_sections:
            match = difflib.get_close_matches(section, PIPELINE_KEYS, n=1, cutoff=0.5)
            hint = f"; did you mean {match[0]}.{rest}?" if match else f"; the sections are {', '.join(PIPELINE_KEYS)}"
            raise RecipeError(f"unknown section {section!r} in {key!r} in {source}{hint}")
        match = difflib.get_close_matches(str(key), sorted(self.known_keys | set(ALIASES)), n=1, cutoff=0.5)
        raise RecipeError(f"unknown recipe key {key!r} in {source}" + (f"; did you mean {match[0]!r}?" if match else ""))

    def _typed(self, name: str, key: str, value: Any, source: str) -> Any:
        """`value` converted to the declared type of key `name`, given as `key` (see `config.types`)."""
        if name == "bf16" and value == "auto":
            return value
        if name == "bf16" and isinstance(value, str) and value.lower() not in ("true", "false", "yes", "no"):
            raise RecipeError(f"bf16 must be true, false or auto (bf16 autocast where the machine computes it natively), got {value!r} ({source})")
        if name == "resume_from_checkpoint" and isinstance(value, bool):
            return str(value).lower()  # `true`: the newest checkpoint in output_dir; `false`: start over
        try:
            return convert(value, self.field_types[name], key)
        except RecipeError as err:
            raise RecipeError(f"{err} ({source})") from None

    def build(self, values: dict[str, Any], source: str = "the recipe") -> Recipe:
        """Validate a flat recipe mapping and split it into the three sections."""
        values = self.normalise(values, source)
        values.setdefault("output_dir", self.output_dir)
        self._check_values(values)
        check_limits(values)
        _check_choices(values)
        _check_paths(values)
        parts = {section: {k: v for k, v in values.items() if k in names} for section, names in self.fields.items()}
        training_values = parts["training"]
        if "use_cpu" not in training_values and not _accelerator_available():
            training_values["use_cpu"] = True  # bf16 recipes then run with CPU autocast instead of failing
        if "bf16" in training_values:
            training_values["bf16"] = resolve_bf16(training_values["bf16"])
        try:
            sections = {section: cls(**parts[section]) for section, cls in self.sections.items()}
        except (TypeError, ValueError) as err:
            raise RecipeError(f"{source}: {' '.join(str(err).split())}") from None
        return self.recipe(**sections, raw=values)

    def load(self, path: str | Path, override_tokens: list[str] | None = None) -> Recipe:
        """A recipe file with `--key value` overrides over it; a local dataset_mixer source must exist."""
        values = self.normalise(read_recipe_file(path), str(path))
        values.update(self.normalise(parse_overrides(override_tokens or []), "the command line"))
        recipe = self.build(values, source=str(path))
        from ..data.sources import check_local_source

        for source in recipe.data.dataset_mixer:  # (a pipeline's training data is written by its own stages)
            if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
                raise RecipeError(f"dataset_mixer: {source} does not exist")
            check_local_source(source, recipe.data.dataset_splits)
        return recipe

    def _check_values(self, values: dict[str, Any]) -> None:
        """The checks of every kind, then the kind's own."""
        if not values.get("model_name_or_path"):
            raise RecipeError("model_name_or_path is required (a folder, a hub name or 'smollm2-135m-instruct')")
        mixer = values.get("dataset_mixer")
        if not mixer:
            raise RecipeError(self.mixer_required)
        _check_named_once(mixer)
        for name, fraction in mixer.items():
            if not name.strip():
                raise RecipeError("dataset_mixer names an empty source ''; name a file, a folder or a hub dataset")
            if not 0 < fraction <= 1:
                raise RecipeError(f"dataset_mixer[{name!r}] must be a fraction in (0, 1], got {fraction!r}")
        _check_evaluation(values, _check_splits(values.get("dataset_splits")))
        if not str(values.get("output_dir") or "").strip():
            raise RecipeError(f"output_dir must name a folder, got {values.get('output_dir')!r}; leave it out for {self.output_dir}")
        if values.get("activation_checkpointing_kwargs") is not None:
            values["activation_checkpointing_kwargs"] = _checkpointing_kwargs(values["activation_checkpointing_kwargs"])
        if values.get("lr_scheduler_kwargs") is not None:
            values["lr_scheduler_kwargs"] = _scheduler_kwargs(values["lr_scheduler_kwargs"], values.get("lr_scheduler_type", "linear"))
        if values.get("save_strategy") == "best" and not values.get("metric_for_best_model"):
            raise RecipeError("save_strategy: best needs metric_for_best_model (eval_loss, say) to tell the best checkpoint")
        if values.get("load_best_model_at_end") and values.get("eval_strategy", "no") == "no":
            raise RecipeError("load_best_model_at_end needs evaluations to choose from: set eval_strategy (and save_strategy) to steps or epoch")
        for key in DEFAULTS_IN_WORDS:
            if key in values and values[key] is not None and not values[key].strip():
                raise RecipeError(f"{key} is empty; leave it out for the default ({DEFAULTS_IN_WORDS[key]})")
        if values.get("chat_template"):
            _check_template(values["chat_template"])
        if values.get("torch_dtype") not in (None, "auto", *DTYPES):
            raise RecipeError(f"torch_dtype must be one of auto, {', '.join(DTYPES)}, got {values['torch_dtype']!r}")
        self.check_values(values)


# Text keys whose empty value would silently mean their default: refused, their default named.
DEFAULTS_IN_WORDS = {"model_revision": "main", "chat_template": "the tokenizer's own template",
                     "ref_model_name_or_path": "the initial policy"}


def _check_template(template: str) -> None:
    """A chat template that Jinja can compile, as transformers compiles it (its `generation` tag included)."""
    import jinja2
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        _compile_jinja_template(template)
    except jinja2.TemplateSyntaxError as err:
        raise RecipeError(f"chat_template is not a valid Jinja template: {err.message} (line {err.lineno} of the template)") from None


def _check_splits(splits: list[str] | None) -> list[str]:
    """dataset_splits: each name once, each a train or a test split by the official rule, one of them
    train; the role of each (unset: the default train and test)."""
    if splits is None:
        return ["train", "test"]
    from ..data.sources import split_role

    if not splits:
        raise RecipeError("dataset_splits is empty; name the splits to read, e.g. [train, test] (one containing 'train' trains)")
    repeated = sorted({split for split in splits if splits.count(split) > 1})
    if repeated:
        raise RecipeError(f"dataset_splits names {', '.join(map(repr, repeated))} twice; a split is read once, keep one")
    try:
        roles = [split_role(split) for split in splits]
    except ValueError as err:
        raise RecipeError(str(err)) from None
    if "train" not in roles:
        raise RecipeError(f"dataset_splits {splits} has no training split; add one whose name contains 'train'")
    return roles


def _check_evaluation(values: dict[str, Any], roles: list[str]) -> None:
    """An evaluation asked for needs a test split among dataset_splits (the run finds that out only
    after loading the tokenizer and the data; do_eval would be silently off)."""
    if "test" in roles:
        return
    asked = [key for key in ("eval_strategy", "eval_on_start", "do_eval") if values.get(key) not in (None, False, "no")]
    if asked:
        raise RecipeError(f"{asked[0]} needs a test split, and dataset_splits {values['dataset_splits']} has none: add one "
                          f"(its name containing 'test'), or set {asked[0]}: {'no' if asked[0] == 'eval_strategy' else 'false'}")


# What `activation_checkpointing_kwargs` (alias gradient_checkpointing_kwargs) may hold, and each key's
# type: transformers' own two, then `torch.utils.checkpoint.checkpoint`'s options a recipe can spell.
CHECKPOINTING_KWARGS = {"every_n_layers": int, "offload": bool, "use_reentrant": bool, "preserve_rng_state": bool,
                        "determinism_check": str, "debug": bool, "early_stop": bool}


def _checkpointing_kwargs(value: Any) -> dict | None:
    """The mapping, of known keys, each converted to its type as a recipe key is (a JSON text "{...}"
    is the mapping it holds, as transformers reads it); transformers and torch would fail on anything
    else at the first step."""
    if value is None:
        return None
    key = "gradient_checkpointing_kwargs"
    value = _json_mapping(value, key, "{use_reentrant: false}")
    checked = {}
    for name, item in value.items():
        if name not in CHECKPOINTING_KWARGS:
            raise RecipeError(f"{key}: unknown key {name!r}; it takes {', '.join(CHECKPOINTING_KWARGS)}")
        checked[name] = convert(item, CHECKPOINTING_KWARGS[name], f"{key}.{name}")
    if checked.get("every_n_layers", 1) < 1:
        raise RecipeError(f"{key}.every_n_layers must be 1 or more, got {checked['every_n_layers']}")
    if checked.get("determinism_check", "default") not in ("default", "none"):
        raise RecipeError(f"{key}.determinism_check must be default or none, got {checked['determinism_check']!r:.80}")
    return checked


def _json_mapping(value: Any, key: str, example: str) -> dict:
    """A mapping, or the JSON object a text "{...}" holds (as transformers reads such keys)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise RecipeError(f"{key} {value!r:.80} is not a JSON object; write a mapping like {example}") from None
    if not isinstance(value, dict):
        raise RecipeError(f"{key} must be a mapping like {example}, got {value!r:.80}")
    return value


def _scheduler_kwargs(value: Any, scheduler: Any) -> dict:
    """lr_scheduler_kwargs: the keyword arguments of `scheduler`'s function that a recipe may set,
    each converted to its annotated type; transformers would fail on anything else when training starts."""
    import inspect
    import typing

    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
    from transformers.trainer_utils import SchedulerType

    key = "lr_scheduler_kwargs"
    value = _json_mapping(value, key, "{num_cycles: 0.5}")
    try:
        function = TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(getattr(scheduler, "value", scheduler))]
    except (ValueError, KeyError):
        return value  # an unknown lr_scheduler_type is refused by name when the recipe is built
    fixed = ("optimizer", "num_warmup_steps", "num_training_steps")
    parameters = {name: p for name, p in inspect.signature(function).parameters.items() if name not in fixed}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return value  # the scheduler takes any keyword (reduce_lr_on_plateau): torch names a wrong one
    name = getattr(scheduler, "value", scheduler)
    allowed = [] if name in ("constant", "constant_with_warmup") else list(parameters)  # these two are given no kwargs
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: the values go unconverted
        hints = {}
    checked = {}
    for item, given in value.items():
        if item not in allowed:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise RecipeError(f"{key}: {item!r} is not an option of lr_scheduler_type {name}; {takes}")
        checked[item] = convert(given, hints[item], f"{key}.{item}") if item in hints else given
    return checked


def _accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_named_once(mixer: dict[str, float]) -> None:
    """Each dataset_mixer source once, paths compared resolved: `pairs` and `./pairs` are one folder,
    which would otherwise be read twice (its rows counted double)."""
    resolved: dict[Path, str] = {}
    for name in mixer:
        same = resolved.setdefault(Path(name).expanduser().resolve(), name)
        if same != name:
            raise RecipeError(f"dataset_mixer names one source twice: {same!r} and {name!r}; keep one")


def _check_choices(values: dict[str, Any]) -> None:
    """Keys whose values are names from lists transformers keeps: report_to, attn_implementation."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    report_to = values.get("report_to")
    known = ["none", "all", *INTEGRATION_TO_CALLBACK]
    for name in [report_to] if isinstance(report_to, str) else report_to or []:
        if name not in known:
            raise RecipeError(f"report_to: unknown integration {name!r}; use one of {', '.join(known)}")
    attention = values.get("attn_implementation")
    kernels = ["eager", *ALL_ATTENTION_FUNCTIONS]
    if attention is not None and attention not in kernels and "/" not in attention:  # "org/kernel": a hub kernel
        raise RecipeError(f"attn_implementation must be one of {', '.join(kernels)} (or a hub kernel org/name), got {attention!r}")


MODEL_FILES = ("config.json", "adapter_config.json")  # what makes a folder a saved model
# The JSON files of a model folder that transformers and peft read: each must hold a JSON object.
MODEL_JSON_FILES = ("config.json", "tokenizer_config.json", "generation_config.json", "adapter_config.json")


def check_model_json(folder: Path) -> None:
    """A `RecipeError` naming the file when a JSON file of the model folder `folder` is damaged (not
    UTF-8 JSON, not an object), before transformers fails on it with a traceback."""
    for file in MODEL_JSON_FILES if folder.is_dir() else ():
        if (folder / file).is_file():
            read_json(folder / file, dict, RecipeError, "a file of the model folder")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _check_model_name(key: str, name: str) -> None:
    """A bundled alias, a folder holding a model, or a name of the hub's form (checked online at load)."""
    path = Path(name).expanduser()
    if name in BUNDLED:
        return
    if path.is_dir():
        if not any((path / file).is_file() for file in MODEL_FILES + ("tokenizer_config.json",)):  # a tokenizer serves `simpo inspect`
            raise RecipeError(f"{key}: the folder {name} holds no config.json (nor tokenizer files), so it is not a saved model")
        check_model_json(path)
        return
    if name.startswith((".", "/", "~")) or path.exists() or not _HUB_NAME.fullmatch(name):
        raise RecipeError(f"{key}: {name} is neither a model folder nor a hub name (owner/name); "
                          f"check the path, or use the bundled {next(iter(BUNDLED))}")


def _check_paths(values: dict[str, Any]) -> None:
    for key in ("model_name_or_path", "ref_model_name_or_path"):
        if values.get(key):
            _check_model_name(key, values[key])
    output_dir = Path(values["output_dir"])
    if output_dir.exists() and not output_dir.is_dir():
        raise RecipeError(f"output_dir {output_dir} is a file; name a folder")
    resume = values.get("resume_from_checkpoint")
    if resume in (None, "true", "false"):
        return
    if not resume.strip() or not Path(resume).is_dir():
        raise RecipeError(f"resume_from_checkpoint: no checkpoint folder {resume!r}; use true (the newest in output_dir) or a checkpoint-N folder")
    from ..training.checkpoints import check_checkpoint

    check_checkpoint(resume)
