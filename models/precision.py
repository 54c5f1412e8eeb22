"""Which precision the matrix products run in: bfloat16 only where the hardware computes it natively.

bfloat16 under autocast is about 1.2-1.7x faster on GPUs and on CPUs with AVX512-BF16 or AMX, but a
CPU without them (AVX2 laptops and many cloud machines) emulates it, and the same products run 30-40x
slower than in float32. `auto` therefore checks the hardware first and, where bfloat16 is native,
times both on the model's own first-layer shape before choosing.
"""
from __future__ import annotations

import statistics
import time

import torch

PRECISIONS = ("fp32", "bf16")
REQUESTABLE = ("auto", *PRECISIONS)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def median_seconds(step, repeats: int) -> float:
    """Median wall time of `repeats` calls of step(), after one untimed warm-up call."""
    step()  # warm-up: kernel selection, allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bf16_is_faster(device: torch.device, batch_size: int, input_dim: int, output_dim: int, repeats: int = 5) -> bool:
    """Time one forward and backward of a (batch_size, input_dim) x (input_dim, output_dim) layer both ways."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, input_dim, generator=generator).to(device)
    layer = torch.nn.Linear(input_dim, output_dim).to(device)

    def step(bf16: bool):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = layer(x).float().sum()
            out.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    return median_seconds(step(True), repeats) < median_seconds(step(False), repeats)


def resolve_precision(requested: str, device: torch.device, batch_size: int, input_dim: int, output_dim: int) -> str:
    """"fp32" or "bf16": `requested` itself, or for "auto" bf16 only where it is native and measured faster."""
    if requested not in REQUESTABLE:
        raise ValueError(f"precision must be one of {', '.join(REQUESTABLE)}; got {requested!r}")
    if requested != "auto":
        return requested
    if not native_bf16(device):
        return "fp32"
    return "bf16" if bf16_is_faster(device, batch_size, input_dim, output_dim) else "fp32"
