import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import precision
from models.precision import MIN_BF16_SPEEDUP, choose_by_speedup, native_bf16, resolve_precision

ROOT = Path(__file__).resolve().parents[2]


def test_auto_runs_fp32_on_a_cpu_that_emulates_bf16_and_measures_where_it_is_native():
    cpu = torch.device("cpu")
    chosen = resolve_precision("auto", cpu, batch_size=32, input_dim=256, output_dim=64)
    if not native_bf16(cpu):
        # emulated bfloat16 is 30-40x slower than float32 (AVX2-only CPUs): never chosen there
        assert chosen == "fp32"
    else:
        assert chosen in ("fp32", "bf16")


def test_native_bf16_follows_the_cpu_flags_torch_reports():
    flags = [getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    assert native_bf16(torch.device("cpu")) == any(flags)


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_an_explicit_precision_is_kept_whatever_the_cpu(requested):
    assert resolve_precision(requested, torch.device("cpu"), 8, 8, 8) == requested


def test_an_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp16", torch.device("cpu"), 8, 8, 8)


def test_bf16_is_chosen_only_where_clearly_faster():
    assert choose_by_speedup(MIN_BF16_SPEEDUP * 1.2) == "bf16"
    assert choose_by_speedup(MIN_BF16_SPEEDUP) == "bf16"
    assert choose_by_speedup(1.1) == "fp32"  # a linear classifier's 10 outputs on an AMX CPU: close times
    assert choose_by_speedup(0.5) == "fp32"


def test_a_shape_is_measured_once_a_process_so_a_stage_s_classifiers_agree(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "_CHOSEN", {})
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    speedups = iter([2.0, 1.0])  # a second measurement would answer differently
    calls = []

    def measured(*shape):
        calls.append(shape)
        return next(speedups)

    monkeypatch.setattr(precision, "bf16_speedup", measured)
    first = resolve_precision("auto", cpu, 256, 6400, 10)
    second = resolve_precision("auto", cpu, 256, 6400, 10)
    assert first == second == "bf16" and len(calls) == 1
    assert resolve_precision("auto", cpu, 256, 120, 10) == "fp32" and len(calls) == 2


def test_auto_keeps_a_small_linear_layer_in_fp32_whatever_the_cpu():
    # 120 colour-histogram features to 10 classes: bf16's casts cost more than its product saves (0.5x on an
    # AMX Xeon), and emulated bf16 is never chosen
    assert resolve_precision("auto", torch.device("cpu"), 256, 120, 10) == "fp32"


def test_auto_measures_bf16_emulated_on_a_restricted_instruction_set_as_too_slow():
    # The same CPU held to AVX2 by the math libraries' own switches emulates bfloat16 (0.1x on an AMX Xeon):
    # where bf16 is native this goes through the measurement, elsewhere through the hardware check.
    restricted = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    code = "import torch; from models.precision import resolve_precision; print(resolve_precision('auto', torch.device('cpu'), 128, 3072, 1024))"
    chosen = subprocess.run([sys.executable, "-c", code], env=restricted, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert chosen == "fp32"
