"""Which dtype a device computes natively: bf16 on CPUs with AVX512-BF16 or AMX, else float32."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from cascadekit.exceptions import CascadeInputError

__all__ = ["cpu_supports_bf16", "resolve_dtype"]


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matmul (AVX512-BF16 or AMX-BF16), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """Turn ``"auto"`` into bf16 where the device computes it natively, else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        dev = torch.device(device)
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        msg = f"resolve_dtype: `dtype` must be 'auto', one of {sorted(names)} or a torch.dtype, got {dtype!r}."
        raise CascadeInputError(msg)
    return names[dtype]
