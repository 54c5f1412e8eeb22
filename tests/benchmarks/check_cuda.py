"""Does training run on a CUDA GPU, and how fast against this machine's CPU? A check for a machine with a GPU.

Trains what the pipeline trains, on CIFAR-10-shaped synthetic rows (45,000 x 3,072 float32, ten
Gaussian classes, 5,000 validation rows) read from a `.npy` on disk through the data layer's row source
(`MappedRows`, standardized as read): the MLP (3,072 -> 1,024 -> 10, batch 128) with SGD in fp32 and in
bf16, and softmax with full-batch L-BFGS, on CUDA; then the fp32 MLP's epoch on the CPU in the same run.
Prints seconds an epoch, validation accuracy, the precision `auto` chooses, and the GPU/CPU ratio; exits
non-zero when a check fails (no GPU, a model that does not learn, weights left on the CPU).

    python tests/benchmarks/check_cuda.py [--epochs 3] [--rows 45000]
Needs torch, numpy and tqdm (no MLflow or DVC).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.mlp import MLP, MLPConfig  # noqa: E402
from models.precision import native_bf16, resolve_precision  # noqa: E402
from models.solvers import LBFGSConfig, fit_lbfgs  # noqa: E402
from models.training import TrainConfig, choose_device, evaluate, fit_standardization, row_batches, train  # noqa: E402
from pipeline.artifacts import MappedRows, StandardizedRows  # noqa: E402

N_CLASSES, DIM = 10, 3072


def synthetic_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten overlapping Gaussian classes: a linear model reaches well above chance, not 100%."""
    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.08, (N_CLASSES, DIM)).astype(np.float32)
    rows_rng = np.random.default_rng(seed)
    labels = rows_rng.integers(0, N_CLASSES, n)
    return (means[labels] + rows_rng.normal(0, 1, (n, DIM)).astype(np.float32)) * 40 + 120, labels


def timed_training(device: torch.device, precision: str, epochs: int, train_rows, train_labels, val_rows, val_labels) -> tuple[float, float, MLP]:
    model = MLP(MLPConfig(DIM, N_CLASSES, [1024]))
    config = TrainConfig(learning_rate=0.01, epochs=epochs, batch_size=128, precision=precision, seed=0)
    start = time.perf_counter()
    history = train(model, config, train_rows, train_labels, val_rows, val_labels, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(history), max(record.val_accuracy for record in history), model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=45000)
    parser.add_argument("--allow-cpu", action="store_true", help="run the checks on the CPU (to try the script without a GPU)")
    args = parser.parse_args()
    failures: list[str] = []
    device = choose_device("auto")
    print(f"torch {torch.__version__}; auto device: {device}", flush=True)
    if device.type != "cuda" and not args.allow_cpu:
        print("FAIL: no CUDA GPU visible to PyTorch")
        return 1
    print(f"GPU: {torch.cuda.get_device_name(0) if device.type == 'cuda' else None}; native bf16: {native_bf16(device)}; CPU threads: {torch.get_num_threads()}")
    chosen = resolve_precision("auto", device, 128, DIM, 1024)
    print(f"precision auto chooses: {chosen}")

    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for split, n, seed in (("train", args.rows, 1), ("val", 5000, 2)):
            rows, labels = synthetic_rows(n, seed)
            paths[split] = Path(folder) / f"{split}.npy"
            np.save(paths[split], rows)
            paths[split + "_labels"] = torch.as_tensor(labels)
        train_source, val_source = MappedRows(paths["train"]), MappedRows(paths["val"])
        mean, scale = fit_standardization(row_batches(np.load(paths["train"], mmap_mode="r")))
        train_rows, val_rows = StandardizedRows(train_source, mean, scale), StandardizedRows(val_source, mean, scale)
        train_labels, val_labels = paths["train_labels"], paths["val_labels"]

        results = {}
        for precision in ("fp32", "bf16"):
            seconds, accuracy, model = timed_training(device, precision, args.epochs, train_rows, train_labels, val_rows, val_labels)
            on = {parameter.device.type for parameter in model.parameters()}
            print(f"MLP on {device} {precision}: {seconds:.2f} s/epoch, best val accuracy {accuracy:.3f}, weights on {on}", flush=True)
            results[precision] = seconds
            if on != {device.type}:
                failures.append(f"MLP {precision} weights on {on}")
            if accuracy < 0.5:
                failures.append(f"MLP {precision} val accuracy {accuracy:.3f} < 0.5")

        softmax = MLP(MLPConfig(DIM, N_CLASSES, []))
        start = time.perf_counter()
        history = fit_lbfgs(softmax, LBFGSConfig(reg_strength=0.01, max_iterations=30), train_rows, train_labels, val_rows, val_labels, device)
        accuracy = evaluate(softmax, val_rows, val_labels)
        print(f"softmax L-BFGS on {device}: {time.perf_counter() - start:.2f} s for {history[-1].epoch} iterations, val accuracy {accuracy:.3f}", flush=True)
        if accuracy < 0.5:
            failures.append(f"softmax L-BFGS val accuracy {accuracy:.3f} < 0.5")

        cpu_seconds, cpu_accuracy, _ = timed_training(torch.device("cpu"), "fp32", 1, train_rows, train_labels, val_rows, val_labels)
        print(f"MLP on cpu fp32: {cpu_seconds:.2f} s/epoch (val accuracy after 1 epoch {cpu_accuracy:.3f})")
        print(f"GPU fp32 / CPU fp32 epoch: {cpu_seconds / results['fp32']:.1f}x faster; GPU bf16 / fp32: {results['fp32'] / results['bf16']:.2f}x")

    for failure in failures:
        print(f"FAIL: {failure}")
    print("OK" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
