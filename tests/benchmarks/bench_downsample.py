"""Forward + backward time of each down-sampling operator against ``maxpool`` on one (16, 64, 128, 128) batch."""

from __future__ import annotations

import statistics
import time

import torch

from common.networks.pooling import DOWNSAMPLE_NAMES, downsample

SHAPE = (16, 64, 128, 128)  # (B, C, H, W)
REPEATS = 3


def time_forward_backward(name: str, x: torch.Tensor, repeats: int = REPEATS) -> float:
    """Median wall time in ms of ``op(x).sum().backward()`` over ``repeats`` runs, after one warm-up run."""
    op = downsample(name, spatial_dims=x.ndim - 2, channels=x.shape[1])
    times = []
    for i in range(repeats + 1):
        x.grad = None
        op.zero_grad(set_to_none=True)
        start = time.perf_counter()
        op(x).sum().backward()
        if i:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(SHAPE, requires_grad=True)
    print(f"input {SHAPE} float32, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS}")
    results = {name: time_forward_backward(name, x) for name in DOWNSAMPLE_NAMES}
    print("| operator | fwd+bwd ms | ratio to maxpool |")
    print("|---|---:|---:|")
    for name, ms in results.items():
        print(f"| {name} | {ms:.1f} | {ms / results['maxpool']:.2f} |")


if __name__ == "__main__":
    main()
