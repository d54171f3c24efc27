"""Which arithmetic training runs in: bfloat16 autocast where the hardware does it natively.

``train.amp`` is ``off`` (float32 throughout), ``bf16`` (bfloat16 autocast always) or
``auto``: bfloat16 autocast on a CUDA device that supports it and on a CPU with Intel AMX
(Advanced Matrix Extensions, Sapphire Rapids and later), whose tile unit multiplies bfloat16
matrices several times faster than AVX-512 multiplies float32 ones; float32 everywhere else,
where emulated bfloat16 would be slower. Weights, optimizer state and the loss stay float32
(autocast casts only the inputs of matrix products and convolutions), and the model a run
saves and probes is float32.
"""

from __future__ import annotations

import torch


def cpu_has_amx_bf16() -> bool:
    """True when this CPU has AMX tiles and AVX-512 BF16 and PyTorch can use them (oneDNN)."""
    cpu = torch.cpu
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and cpu._is_amx_tile_supported()  # type: ignore[attr-defined]
            and cpu._is_avx512_bf16_supported()  # type: ignore[attr-defined]
        )
    except AttributeError:  # a PyTorch without these probes: assume no AMX
        return False


def use_bf16(amp: str, device: torch.device) -> bool:
    """Whether training on ``device`` autocasts to bfloat16 under ``train.amp`` = ``amp``."""
    if amp == "bf16":
        return True
    if amp != "auto":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx_bf16()
