"""Which precision the matrix products run in: bfloat16 only where the hardware computes it natively.

bfloat16 under autocast is about 1.2-1.7x faster on GPUs and on CPUs with AVX512-BF16 or AMX, but a
CPU without them (AVX2 laptops and many cloud machines) emulates it, and the same products run 30-40x
slower than in float32. `auto` therefore checks the hardware first and, where bfloat16 is native,
times both on the model's own first-layer shape and takes bf16 only where it is clearly faster (an MLP's
1,024 hidden units: 1.4-2.3x on a 2-core AMX Xeon; a linear classifier's 10 outputs: 0.4-1.3x, so fp32).
"""
from __future__ import annotations

import statistics
import time

import torch

PRECISIONS = ("fp32", "bf16")
REQUESTABLE = ("auto", *PRECISIONS)
MIN_BF16_SPEEDUP = 1.3  # what `auto` asks of bf16 over fp32 (choose_by_speedup)


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


def bf16_speedup(device: torch.device, batch_size: int, input_dim: int, output_dim: int, repeats: int = 15) -> float:
    """fp32's time over bf16's for one forward and backward of a (batch_size, input_dim) x (input_dim,
    output_dim) layer: the least of calls that alternate, since other work on the machine only adds time
    (on a shared 2-core machine, medians of 7 gave 1.03-1.66 for the MLP's first layer, least times 1.62-1.75)."""
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

    fp32, bf16 = step(False), step(True)
    fp32(), bf16()  # warm-up: kernel selection, allocation
    times = {fp32: [], bf16: []}
    for _ in range(repeats):
        for run in (fp32, bf16):
            start = time.perf_counter()
            run()
            times[run].append(time.perf_counter() - start)
    return min(times[fp32]) / min(times[bf16])


def choose_by_speedup(speedup: float) -> str:
    """bf16 only where it is clearly faster: it rounds products to 8 bits of mantissa, and a layer where
    the two times are close (a linear classifier's 10 outputs) flips between them from run to run."""
    return "bf16" if speedup >= MIN_BF16_SPEEDUP else "fp32"


# (device, batch_size, input_dim, output_dim) -> the choice made in this process: every classifier of a stage
# that has the same shapes gets the same precision (so they can learn stacked), and the timing is paid once
_CHOSEN: dict[tuple[str, int, int, int], str] = {}


def resolve_precision(requested: str, device: torch.device, batch_size: int, input_dim: int, output_dim: int) -> str:
    """"fp32" or "bf16": `requested` itself, or for "auto" bf16 only where it is native and measured at least
    MIN_BF16_SPEEDUP times faster on this layer's shape (measured once a process for each shape)."""
    if requested not in REQUESTABLE:
        raise ValueError(f"precision must be one of {', '.join(REQUESTABLE)}; got {requested!r}")
    if requested != "auto":
        return requested
    if not native_bf16(device):
        return "fp32"
    key = (str(device), batch_size, input_dim, output_dim)
    if key not in _CHOSEN:
        _CHOSEN[key] = choose_by_speedup(bf16_speedup(device, batch_size, input_dim, output_dim))
    return _CHOSEN[key]
