"""A decoder's dimensions from its config.json, and its parameter count from them, for `simpo plan`.

The count is written out from the dimensions, module by module, as transformers builds these
models (tests compare it with `sum(p.numel())` of real models):

    embeddings  V * h
    per layer   attention  h * nh * hd (q) + 2 * h * nkv * hd (k, v) + nh * hd * h (o), plus biases
                MLP        3 * h * i (gate, up, down), plus biases
                norms      n * h (n = 2; Gemma-2: 4, before and after attention and MLP)
    final norm  h
    head        V * h, unless tied to the embeddings

with V the vocabulary, h the hidden size, i the MLP's, nh and nkv the query and key-value heads
and hd the head size. Reading a config needs no weights: a model folder, a bundled alias, the
Hugging Face hub cache (offline), or the copies of the official recipes' models shipped in
`models/configs/`, in that order; `--config` names a file instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError

SHIPPED = Path(__file__).with_name("configs")  # hub name "org/name" -> configs/org--name.json


@dataclass(frozen=True)
class Family:
    norms_per_layer: int
    lean: bool  # the Llama-style MLP and RMSNorm that `ops.recompute` makes keep less for backward
    qkv_bias: bool = False  # biases on q, k and v whatever the config says (Qwen2)
    norm_in_fp32: bool = False  # Gemma's RMSNorm computes (and keeps) its input and output in fp32


FAMILIES = {
    "llama": Family(2, lean=True),
    "mistral": Family(2, lean=True),
    "qwen2": Family(2, lean=True, qkv_bias=True),
    "gemma": Family(2, lean=False, norm_in_fp32=True),
    "gemma2": Family(4, lean=False, norm_in_fp32=True),
}


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    attention_bias: bool = False  # on q, k, v and o (Llama, Gemma)
    mlp_bias: bool = False  # on gate, up and down (Llama)
    logit_softcap: float | None = None  # Gemma-2's final logit soft-cap
    attention_softcap: float | None = None  # Gemma-2's attention logit soft-cap
    silu: bool = True  # the MLP's activation is SiLU (what `ops.recompute` rewrites)

    @classmethod
    def from_config(cls, config: dict, where: str = "config.json") -> ModelShape:
        model_type = config.get("model_type")
        if model_type not in FAMILIES:
            raise RecipeError(f"{where}: simpo plan knows the layout of {', '.join(FAMILIES)} models, not model_type {model_type!r}")
        def size(key: str, default=None) -> int:
            """A dimension: a whole number of at least 1 (a config's null or absent value takes `default`)."""
            value = config.get(key)
            if value is None:
                if default is None:
                    raise RecipeError(f"{where}: no {key} in the model's config")
                return default
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
                raise RecipeError(f"{where}: {key} must be a whole number of at least 1, got {value!r:.40}")
            return int(value)

        heads, hidden = size("num_attention_heads"), size("hidden_size")
        kv_heads = size("num_key_value_heads", heads)
        if heads % kv_heads:
            raise RecipeError(f"{where}: num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})")
        if config.get("head_dim") is None and hidden % heads:
            raise RecipeError(f"{where}: hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}), and no head_dim is given")
        softcaps = {key: config.get(key) for key in ("final_logit_softcapping", "attn_logit_softcapping")}
        for key, value in softcaps.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise RecipeError(f"{where}: {key} must be a positive number or null, got {value!r:.40}")
        return cls(
            model_type=model_type, vocab=size("vocab_size"), hidden=hidden, intermediate=size("intermediate_size"),
            layers=size("num_hidden_layers"), heads=heads, kv_heads=kv_heads, head_dim=size("head_dim", hidden // heads),
            tied=bool(config.get("tie_word_embeddings", model_type.startswith("gemma"))),
            attention_bias=bool(config.get("attention_bias")), mlp_bias=bool(config.get("mlp_bias")),
            logit_softcap=softcaps["final_logit_softcapping"], attention_softcap=softcaps["attn_logit_softcapping"],
            silu=(config.get("hidden_act") or config.get("hidden_activation")) == "silu",
        )

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_type]

    def attention_parameters(self) -> int:
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        weights = h * q + 2 * h * kv + q * h
        if self.attention_bias:
            return weights + q + 2 * kv + h
        return weights + (q + 2 * kv if self.family.qkv_bias else 0)

    def mlp_parameters(self) -> int:
        h, i = self.hidden, self.intermediate
        return 3 * h * i + (2 * i + h if self.mlp_bias else 0)

    def layer_parameters(self) -> int:
        return self.attention_parameters() + self.mlp_parameters() + self.family.norms_per_layer * self.hidden

    def embedding_parameters(self) -> int:
        return self.vocab * self.hidden

    def head_parameters(self) -> int:
        """The output head's own parameters: none when it is the embedding matrix."""
        return 0 if self.tied else self.vocab * self.hidden

    def parameters(self) -> int:
        return self.embedding_parameters() + self.layers * self.layer_parameters() + self.hidden + self.head_parameters()

    def parameter_lines(self) -> list[str]:
        """The count as arithmetic, one line per part."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        bias = " + biases" if self.attention_bias or self.family.qkv_bias else ""
        mlp_bias = " + biases" if self.mlp_bias else ""
        norms = self.family.norms_per_layer
        return [
            f"embeddings     V x h = {self.vocab:,} x {h:,} = {self.embedding_parameters():,}",
            f"attention      h x (nh + 2 nkv) x hd + nh x hd x h{bias} = {h:,} x ({self.heads} + 2 x {self.kv_heads}) x {self.head_dim}"
            f" + {q:,} x {h:,}{bias} = {self.attention_parameters():,}  (kv width {kv:,})",
            f"MLP            3 x h x i{mlp_bias} = 3 x {h:,} x {i:,}{mlp_bias} = {self.mlp_parameters():,}",
            f"norms          {norms} x h = {norms * h:,}",
            f"layers         {self.layers} x {self.layer_parameters():,} = {self.layers * self.layer_parameters():,}",
            f"final norm     h = {h:,}",
            "output head    tied to the embeddings: 0" if self.tied else f"output head    V x h = {self.head_parameters():,}",
            f"parameters     {self.parameters():,}",
        ]


def shipped_config_path(name: str) -> Path:
    return SHIPPED / (name.replace("/", "--") + ".json")


def find_model_config(name: str, revision: str = "main") -> tuple[Path, str]:
    """The config.json of `name` (a folder, a bundled alias or a hub name) without downloading
    anything, and where it came from in words."""
    from .bundled import BUNDLED, bundled_model_dir

    if name in BUNDLED:
        return bundled_model_dir(name) / "config.json", f"the bundled {name}"
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise RecipeError(f"model_name_or_path: the folder {folder} has no config.json")
        return folder / "config.json", str(folder)
    if name.startswith((".", "/", "~")):
        raise RecipeError(f"model_name_or_path: {name} does not exist")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if isinstance(cached, str):
        return Path(cached), f"{name} from the hub cache"
    if shipped_config_path(name).is_file():
        return shipped_config_path(name), f"{name} (the copy shipped with simpo, {shipped_config_path(name).name})"
    raise RecipeError(f"model_name_or_path {name}: no config.json in the hub cache and no copy shipped with simpo; "
                      "download it (huggingface-cli download NAME config.json) or pass --config PATH/config.json")


def read_config(path: Path, trust_remote_code: bool = False) -> dict:
    """The config as transformers completes it (defaults of keys the file leaves out included). A
    config whose class is the model's own code is read only when the recipe trusts that code: never
    transformers' question at the terminal."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        values = json.loads(Path(path).read_text())
        if not isinstance(values, dict):
            raise ValueError(f"a JSON {type(values).__name__}, not an object")
        own_code = "AutoConfig" in (values.get("auto_map") or {}) and values.get("model_type") not in CONFIG_MAPPING
        if own_code and not trust_remote_code:
            raise RecipeError(f"{path}: this model's config is its own code (auto_map); set trust_remote_code: true "
                              "in the recipe if you trust that code")
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except RecipeError:
        raise
    except OSError as err:
        raise RecipeError(f"{path}: cannot be read ({' '.join(str(err).split())[:200]})") from None
    except (ValueError, TypeError, ArithmeticError, KeyError, AttributeError, StrictDataclassError) as err:
        # what transformers' config classes (strict dataclasses of huggingface_hub) raise on bad values
        reason = " ".join(str(err.__cause__ or err).split())[:200]
        raise RecipeError(f"{path}: not a model config.json ({reason})") from None
    return config.to_dict()
