import pytest
import torch

from models.precision import native_bf16, resolve_precision


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
