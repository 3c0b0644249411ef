"""2.5D inference on a whole 197x233x189 MNI volume: our per-plane loop vs MONAI ``SliceInferer``; VINN vs U-Net.

- ``MultiPlaneSegmenter.segment_volume`` (thick slices of every plane in batches of ``slice_batch``, weighted sum
  of the per-plane logits) against MONAI's ``SliceInferer`` running the *same* per-plane 2D networks over the same
  thick-slice input (the neighbouring slices stacked as channels of the volume, one ``SliceInferer`` per plane
  with ``roi_size`` = the whole slice and ``sw_batch_size`` = ``slice_batch``), summed with the same weights.
  Outputs are compared (max abs difference of the logits).
- The same segmenter with VINN networks (``internal_spacing``) against plain U-Nets on the same input: at the
  native 1 mm grid (internal 1 mm: the cost of the two resampling steps alone) and at internal 2 mm (the
  encoder/decoder runs on a grid half the size, as in the study's 2 mm / 3 mm pair).

Networks at the study's quick settings (``channels`` [8, 16, 32], 3 slices thick, all three planes);
``python -m tests.benchmarks inference``.
"""

from __future__ import annotations

import os
import time

import torch

from common.data.seg_slices import PLANE_AXES
from common.networks.seg_planes import MultiPlaneSegmenter

THICKNESS = 3
CHANNELS = (8, 16, 32)
SLICE_BATCH = 32
REPEATS = 1  # a whole-volume pass takes tens of seconds on one thread; no warm-up needed at that scale


def mni_volume() -> torch.Tensor:
    """The MNI152 2009 T1 template at 1 mm, ``(1, 1, 197, 233, 189)`` scaled to [0, 1]."""
    from nilearn.datasets import load_mni152_template

    data = torch.as_tensor(load_mni152_template(resolution=1).get_fdata(), dtype=torch.float32)
    return (data / data.max())[None, None]


def stacked_neighbours(volume: torch.Tensor, axis: int, thickness: int) -> torch.Tensor:
    """``(B, 1, X, Y, Z)`` -> ``(B, thickness, X, Y, Z)``: channel ``t`` holds slice ``s + t - thickness // 2``."""
    half = thickness // 2
    dim = axis + 2
    padded = torch.nn.functional.pad(volume.movedim(dim, -1), (half, half)).movedim(-1, dim)
    return torch.cat([padded.narrow(dim, t, volume.shape[dim]) for t in range(thickness)], dim=1)


def slice_inferer_2p5d(model: MultiPlaneSegmenter, volume: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """The 2.5D prediction assembled from one MONAI ``SliceInferer`` per plane."""
    from monai.inferers import SliceInferer

    out = volume.new_zeros((volume.shape[0], model.out_channels, *volume.shape[2:]))
    for plane in model.planes:
        axis = PLANE_AXES[plane]
        in_plane = [s for a, s in enumerate(volume.shape[2:]) if a != axis]
        sp = spacing[:, [a for a in range(3) if a != axis]]
        inferer = SliceInferer(spatial_dim=axis, roi_size=in_plane, sw_batch_size=SLICE_BATCH, progress=False)

        def net(x, plane=plane, sp=sp):
            return model._run2d(x, plane, sp.expand(len(x), -1))

        out += model.weights[plane] * inferer(stacked_neighbours(volume, axis, model.thickness), net)
    return out


def best_time(fn, repeats: int = REPEATS) -> tuple[float, torch.Tensor]:
    """Minimum CPU time (s) of this process over ``repeats`` runs, and the last result.

    With one torch thread, CPU time is the work done whatever else runs on the machine; wall time on a shared
    machine mostly measures the other processes.
    """
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return min(times), result


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    volume = mni_volume()
    spacing = torch.ones(1, 3)
    print(
        f"MNI152 T1 volume {tuple(volume.shape[2:])} at 1 mm; torch {torch.__version__}, 1 thread, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; best of {REPEATS}"
    )
    print(f"networks: channels {list(CHANNELS)}, {THICKNESS} slices thick, planes axial+coronal+sagittal\n")
    plain = MultiPlaneSegmenter("all", THICKNESS, 4, CHANNELS, slice_batch=SLICE_BATCH).eval()
    with torch.inference_mode():
        ours_s, ours = best_time(lambda: plain(volume, spacing))
        monai_s, theirs = best_time(lambda: slice_inferer_2p5d(plain, volume, spacing))
    diff = float((ours - theirs).abs().max())
    print("| 2.5D inference, whole volume | CPU seconds | ratio to SliceInferer |")
    print("|---|---:|---:|")
    print(f"| MONAI SliceInferer (same networks, one per plane) | {monai_s:.2f} | 1.00 |")
    print(f"| MultiPlaneSegmenter.segment_volume | {ours_s:.2f} | {ours_s / monai_s:.2f} |")
    print(f"\nmax |logit difference| between the two: {diff:.2e}\n")
    print("| network (same input, same planes) | CPU seconds | ratio to plain U-Net |")
    print("|---|---:|---:|")
    print(f"| plain U-Net (SegUNet) | {ours_s:.2f} | 1.00 |")
    for internal in (1.0, 2.0):
        torch.manual_seed(0)
        vinn = MultiPlaneSegmenter("all", THICKNESS, 4, CHANNELS, internal_spacing=internal, slice_batch=SLICE_BATCH)
        with torch.inference_mode():
            vinn_s, _ = best_time(lambda vinn=vinn: vinn.eval()(volume, spacing))
        print(f"| VINN, internal {internal:g} mm | {vinn_s:.2f} | {vinn_s / ours_s:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
