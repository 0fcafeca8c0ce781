"""Pick the compute device and the numeric precision for it."""

from __future__ import annotations

import functools
import platform

import torch

from napari_unetseg.core.config import DEVICES, PRECISIONS
from napari_unetseg.core.errors import UserInputError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``: ``auto`` tries CUDA, then MPS, then CPU.

    Raises
    ------
    UserInputError
        If the named device is unknown or not available on this machine.
    """
    if name not in DEVICES:
        raise UserInputError(f"unknown device {name!r}", (f"choose one of {', '.join(DEVICES)}", "device"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            "device 'cuda' asked for but no CUDA GPU is available", ("use the CPU", "device")
        )
    if name == "mps" and not _mps_available():
        raise UserInputError(
            "device 'mps' asked for but Apple MPS is not available", ("use the CPU", "device")
        )
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_device(device: torch.device) -> str:
    """A short human-readable name, e.g. ``'CUDA: NVIDIA H100'`` or ``'CPU (8 threads)'``."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AVX512-BF16 or AMX).

    Without them PyTorch emulates bf16 and it is several times *slower* than fp32,
    so ``precision='auto'`` only picks bf16 on the CPU when this is true.
    """
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def resolve_precision(precision: str, device: torch.device, training_3d: bool = False) -> torch.dtype | None:
    """Return the autocast dtype for ``precision`` on ``device`` (``None`` = plain fp32).

    ``auto`` means: bf16 on CUDA GPUs that support it, else fp16 on CUDA; bf16 on CPUs
    with native bf16 units, but fp32 to train a 3D network there (``training_3d``):
    oneDNN's bf16 conv3d gave NaN gradients at some steps, and at every step with 4-channel
    layers, where fp32 gave none (``benchmarks/nan_3d.py``, docs/engine.md "Non-finite
    steps"); fp32 everywhere else.
    """
    if precision not in PRECISIONS:
        raise UserInputError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16() and not training_3d:
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a disabled one for fp32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)
