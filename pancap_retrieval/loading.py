"""Model loading in one place: the device, the dtype, and where a model's files are.

Every component that loads weights (captioners, embedders, the caption rewriter and the PancapScore judge,
redrawers, fidelity scores, the torch search backend) asks here. :func:`choose_device` picks the device: the one
asked, else this process's GPU under a distributed launcher (``LOCAL_RANK``), else the CPU. :func:`choose_dtype` is
the one table of precision names; a component keeps its own default on a GPU by passing it. :func:`resolve_model`
and :func:`model_dir` turn a hub id or a local folder into something ``from_pretrained`` can load now, or into one
clear :class:`ModelLoadError` when the weights cannot be had. This module sits on the ground floor: it imports
nothing of pancap but its errors, and no torch at module load (the CLI's ``--help`` and ``list`` stay fast).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.errors import ModelLoadError, OptionError

if TYPE_CHECKING:
    import torch

# Precision names a user may give, and the torch dtype each one means.
DTYPES: dict[str, str] = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUTHY = {"1", "true", "yes", "on"}


def device_type(device: Any) -> str:
    """``"cuda"``, ``"cpu"``, ... of a torch device or a device string.

    >>> device_type("cuda:1"), device_type(None)
    ('cuda', 'cpu')
    """
    if device is None:
        return "cpu"
    return str(getattr(device, "type", str(device).split(":", 1)[0]))


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to run on: the one asked, else this process's GPU (``LOCAL_RANK``) when present, else CPU.

    Under ``torchrun`` or ``accelerate launch`` every process gets its own GPU this way, whichever component asks.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device and str(device) != "auto":
        try:
            return torch.device(str(device))
        except RuntimeError as exc:
            raise OptionError(f"unknown device {device!r} ({exc}); use cpu, cuda or cuda:N") from None
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def choose_dtype(device: Any, dtype: str | torch.dtype | None = None, gpu_default: str = "bf16") -> torch.dtype:
    """The dtype asked (a name of :data:`DTYPES` or a torch dtype), else ``gpu_default`` on a GPU and fp32 elsewhere.

    A bf16 default falls back to fp16 on a GPU without bf16. Components keep their own GPU default by passing it
    (the diffusion redrawers and the embedders: fp16).

    >>> import torch
    >>> choose_dtype("cpu"), choose_dtype("cpu", "bf16"), choose_dtype(torch.device("cpu"), torch.float16)
    (torch.float32, torch.bfloat16, torch.float16)
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = "auto" if dtype is None else str(dtype).lower().removeprefix("torch.")
    if name == "auto":
        if device_type(device) != "cuda":
            return torch.float32
        name = gpu_default
        if DTYPES.get(name) == "bfloat16" and not torch.cuda.is_bf16_supported():
            return torch.float16
    if name not in DTYPES:
        raise OptionError(f"unknown dtype {dtype!r}; known: bf16, fp16, fp32 (or auto)")
    return getattr(torch, DTYPES[name])


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be reached (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    if any(
        os.environ.get(v, "").strip().lower() in _TRUTHY for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False


def resolve_model(
    model: str | os.PathLike[str], marker: str | None = "config.json", what: str = "model"
) -> str:
    """A local model folder, or a hub id that can be loaded now; otherwise one clear :class:`ModelLoadError`.

    A folder must hold ``marker`` (``config.json``; ``model_index.json`` for a diffusers pipeline; None: anything).
    A hub id that is not in the local cache while the hub is offline is refused before any loading starts.
    """
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir() or (marker and not (path / marker).is_file()):
            missing = f" (no {marker} in it)" if marker else ""
            raise ModelLoadError(f"{path} is not a {what} directory{missing}")
        return str(path)
    if not _HUB_ID.match(text):
        raise ModelLoadError(f"{what} {text!r}: no such directory, and not a hub id of the form owner/name")
    if Path(text.partition("/")[0]).expanduser().is_dir():  # `checkpoints/x` where ./checkpoints exists
        raise ModelLoadError(
            f"{what} folder not found: {path.resolve()} ({path.parent} exists, {path.name!r} is not in it); "
            "check the path (in a suite, relative paths are read from the suite file's folder)"
        )
    if marker and hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(text, marker), str):
            raise ModelLoadError(
                f"{what} {text!r} is not in the local Hugging Face cache and the hub is offline: weights must be "
                f"local when offline; pass a local model directory instead (a local folder holding {marker})"
            )
    return text


def model_dir(
    model: str | os.PathLike[str],
    marker: str | None = "config.json",
    *,
    what: str = "model",
    revision: str | None = None,
    local_only: bool = False,
) -> Path:
    """The local folder holding a model: the folder named, or the hub id's snapshot in the Hugging Face cache.

    The snapshot is downloaded only when the hub is reachable and ``local_only`` is False; otherwise a model that
    is not in the cache is one :class:`ModelLoadError` that says to pass a local directory.
    """
    source = resolve_model(model, marker, what)
    if Path(source).is_dir():
        return Path(source).resolve()
    offline = local_only or hub_offline()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, revision=revision, local_files_only=offline)).resolve()
    except Exception as exc:  # LocalEntryNotFoundError, OfflineModeIsEnabled, a bad revision, a network error
        if offline:
            raise ModelLoadError(
                f"{what} {source!r} is not in the local cache and weights must be local offline: "
                f"pass a local directory ({type(exc).__name__})"
            ) from None
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(f"cannot download the {what} {source!r}: {type(exc).__name__}: {first}") from None


__all__ = ["DTYPES", "choose_device", "choose_dtype", "device_type", "hub_offline", "model_dir", "resolve_model"]
