"""Volume bias and flip decomposition on a 256^3 label map against plain NumPy versions, timed side by side."""

from __future__ import annotations

import importlib
import statistics
import time

import numpy as np
import torch

from common.metrics.volume import volume_bias

SIZE = 256
NUM_CLASSES = 5
REPEATS = 3


def _median_ms(fn, repeats: int = REPEATS):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def numpy_volume_bias(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Plain version: one boolean mask and sum per class."""
    out = []
    for c in range(1, num_classes):
        v_pred, v_gt = np.count_nonzero(pred == c), np.count_nonzero(gt == c)
        out.append((v_pred - v_gt) / v_gt)
    return np.array(out)


def numpy_flip(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    fg = gt != 0
    n = np.count_nonzero(fg)
    correct = np.count_nonzero(fg & (pred == gt))
    miss = np.count_nonzero(fg & (pred == 0))
    return correct / n, (n - correct - miss) / n, miss / n


def main() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, NUM_CLASSES, size=(SIZE,) * 3, dtype=np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.9, gt, rng.integers(0, NUM_CLASSES, size=gt.shape, dtype=np.uint8))
    pred_t, gt_t = torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None]
    print(
        f"label map {SIZE}^3 uint8, {NUM_CLASSES} classes, torch {torch.get_num_threads()} threads, median of {REPEATS}"
    )
    print("| computation | ours ms | plain numpy ms | ratio ours/numpy |")
    print("|---|---:|---:|---:|")

    ours_ms, ours = _median_ms(lambda: volume_bias(pred_t, gt_t, num_classes=NUM_CLASSES))
    ref_ms, ref = _median_ms(lambda: numpy_volume_bias(pred, gt, NUM_CLASSES))
    np.testing.assert_allclose(ours[0].numpy(), ref, rtol=1e-12)
    print(f"| volume_bias | {ours_ms:.0f} | {ref_ms:.0f} | {ours_ms / ref_ms:.2f} |")

    try:
        flip_decomposition = importlib.import_module("common.metrics.flip").flip_decomposition
    except (ImportError, AttributeError):
        print("| flip_decomposition | skipped: common.metrics.flip_decomposition not available | | |")
        return
    ours_ms, ours = _median_ms(lambda: flip_decomposition(pred_t, gt_t))
    ref_ms, ref = _median_ms(lambda: numpy_flip(pred, gt))
    got = ours["global"] if isinstance(ours, dict) and "global" in ours else ours
    if isinstance(got, dict):
        np.testing.assert_allclose([got["correct"], got["flip"], got["miss"]], ref, rtol=1e-5)
    print(f"| flip_decomposition | {ours_ms:.0f} | {ref_ms:.0f} | {ours_ms / ref_ms:.2f} |")


if __name__ == "__main__":
    main()
