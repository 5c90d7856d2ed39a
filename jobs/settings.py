"""Config → typed settings: variant presets, validation at start-up, resource resolution.

Variants (``method.variant``):

=============  ========  =====  =============  =========  =========  =====================
variant        template  mode   uncond_prefix  score_eos  score      keep score == max?
=============  ========  =====  =============  =========  =========  =====================
default        alpaca    clean  bos            false      ifd_loss   yes
cherry         alpaca    cherry header         false      ifd_loss   yes  (reference code)
superfilter    none      clean  bos            false      ifd_ppl    no   (strict < 1)
=============  ========  =====  =============  =========  =========  =====================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from records.readers import FORMATS, Fields
from scoring.passes import RenderConfig
from scoring.render import Limits

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, dict[str, Any]] = {
    "default": dict(
        template="alpaca",
        mode="clean",
        uncond_prefix="bos",
        score_eos=False,
        score="ifd_loss",
        max_inclusive=True,
    ),
    "cherry": dict(
        template="alpaca",
        mode="cherry",
        uncond_prefix="header",
        score_eos=False,
        score="ifd_loss",
        max_inclusive=True,
    ),
    "superfilter": dict(
        template="none",
        mode="clean",
        uncond_prefix="bos",
        score_eos=False,
        score="ifd_ppl",
        max_inclusive=False,
    ),
}
BACKENDS = ("hf", "vllm")


def variant_preset(variant: str) -> dict[str, Any]:
    """The presets of a ``method.variant``; an unknown name is an error naming the choices."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown method.variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def variant_value(cfg: Any, key: str, section: str = "method") -> Any:
    """A knob's configured value, or the variant's preset when the config leaves it null."""
    value = cfg[section].get(key)
    return variant_preset(cfg.method.variant)[key] if value is None else value


def resolve_data_path(path: str) -> Path:
    """Relative paths resolve against the working directory first, then the project root; a URL
    (``s3://...``) is fetched into the local cache (``records.remote.fetch``)."""
    from records import remote

    if remote.is_url(path):
        return remote.fetch(str(path))
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = ROOT / p
    return alt if alt.exists() else p


def as_config(d: dict[str, Any]) -> Any:
    """A plain dict (e.g. a manifest's recorded config) as a config node."""
    from omegaconf import OmegaConf

    return OmegaConf.create(d)


def with_model(cfg: Any, model: Path | str) -> Any:
    """A copy of ``cfg`` whose ``model.name`` is ``model`` (a fine-tuned model directory)."""
    import copy

    from omegaconf import open_dict

    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.model.name = str(model)
    return out


def data_path(cfg: Any) -> Path:
    """The pool's input file (``data.path``), resolved."""
    return resolve_data_path(cfg.data.path)


def fields(cfg: Any) -> Fields:
    """Field names of the pool's records (``data.fields``)."""
    return fields_from(cfg.data.fields)


def fields_from(f: Any) -> Fields:
    """Field names from a ``fields`` config node (``data.fields`` or ``kb.fields``)."""
    return Fields(
        instruction=f.instruction,
        input=f.input,
        output=f.output,
        conversation=tuple(f.conversation),
        role_keys=tuple(f.role_keys),
        content_keys=tuple(f.content_keys),
    )


def render_config(cfg: Any, passes: tuple[str, ...] = ("cond", "uncond")) -> RenderConfig:
    m = cfg.method
    rc = RenderConfig(
        template=variant_value(cfg, "template"),
        mode=variant_value(cfg, "mode"),
        uncond_prefix=variant_value(cfg, "uncond_prefix"),
        score_eos=bool(variant_value(cfg, "score_eos")),
        limits=Limits(
            max_length=int(cfg.model.max_length),
            max_response_tokens=m.max_response_tokens,
            truncate_response=bool(m.truncate_response),
        ),
        passes=passes,
    )
    rc.validate()
    return rc


def device(cfg: Any) -> str:
    dev = cfg.backend.device
    if dev == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev not in ("cpu", "cuda"):
        raise ValueError(f"unknown backend.device {dev!r}; choose auto, cpu or cuda")
    return dev


def validate_backend(cfg: Any) -> None:
    b = cfg.backend
    if b.name not in BACKENDS:
        raise ValueError(f"unknown backend {b.name!r}; choose one of {', '.join(BACKENDS)}")
    dev = device(cfg)
    if b.name == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "backend=vllm needs the vllm package: on GPU nodes pip install '.[vllm]'; on a "
                "CPU-only machine run `make vllm-env` and use .venv-vllm (see README)"
            )
        for k in ("tensor_parallel", "pipeline_parallel"):
            if int(b[k]) < 1:
                raise ValueError(f"backend.{k} must be >= 1, got {b[k]}")
        if dev == "cpu" and int(b.tensor_parallel) * int(b.pipeline_parallel) > 1:
            raise ValueError("backend.tensor_parallel / pipeline_parallel > 1 need GPUs (device=cuda)")
    elif dev == "cuda" and float(b.num_gpus_per_actor) > 1:
        raise ValueError(
            "the HF backend runs one model copy per GPU (backend.num_gpus_per_actor <= 1); for a "
            "model that needs several GPUs use backend=vllm backend.tensor_parallel=N"
        )
    if int(b.get("max_task_retries", 2)) < 0:
        raise ValueError(f"backend.max_task_retries must be >= 0, got {b.max_task_retries}")
    width = str(b.get("pack_width", 0))
    if width != "auto" and not width.isdigit():
        raise ValueError(f"backend.pack_width must be auto or a token count >= 0 (0: padded rows), got {width}")


def validate_common(cfg: Any) -> None:
    """Checks every scoring job shares: input format, row limit, batch size and backend."""
    if cfg.data.format not in FORMATS:
        raise ValueError(f"unknown data.format {cfg.data.format!r}; choose one of {', '.join(FORMATS)}")
    limit = cfg.data.limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"data.limit must be a positive row count (or null for all rows), got {limit!r}")
    bs = cfg.backend.get("batch_size", "auto")
    if bs != "auto" and (isinstance(bs, bool) or not isinstance(bs, int) or bs <= 0):
        raise ValueError(f"backend.batch_size must be auto or a positive row count, got {bs!r}")
    validate_backend(cfg)


def check_chat_template(rc: RenderConfig, model_path: Path, trust_remote_code: bool = False) -> None:
    """``template=chat`` needs the tokenizer's own chat template: refuse on the driver, before scoring,
    instead of failing every row."""
    if rc.template != "chat":
        return
    from scoring.models import load_tokenizer

    if not getattr(load_tokenizer(model_path, trust_remote_code), "chat_template", None):
        raise ValueError(
            f"method.template=chat needs a tokenizer with a chat template, and the one in "
            f"{model_path} has none; choose method.template=alpaca, vicuna or none"
        )


def check_budget(cfg: Any) -> None:
    """``selection.budget``: an integer row count or a fraction in (0, 1], checked at start."""
    from selection.budget import resolve_budget

    resolve_budget(cfg.selection.budget, 1)


def compose(name: str, overrides: list[str]) -> Any:
    """Compose ``conf/<name>.yaml`` with overrides, as the CLI does (for tests, benches, notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=overrides)
