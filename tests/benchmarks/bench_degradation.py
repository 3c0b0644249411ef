"""Degradations against their nearest reference implementation on the 1 mm MNI152 T1 (197x233x189, float32).

References: scipy.ndimage filters followed by slicing ``[s//2::s]``, a numpy FFT version of the k-space kinds, and
MONAI ``Resize(mode="trilinear", anti_aliasing=True)`` for bicubic (MONAI has no 3D bicubic resize; the kernels
differ, so no difference is reported). Both sides run single-threaded; times are medians over ``REPEATS`` runs.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import scipy.ndimage as ndi
import torch
from monai.transforms import Resize

from common.transforms.degradation import DEGRADATION_KINDS, Degrade, degradation_taps

SCALE = 2
REPEATS = 3


def _timed(func) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), np.asarray(out)


def _numpy_kspace(volume: np.ndarray, kind: str, scale: int) -> np.ndarray:
    """Direct numpy version: centred FFT, central band, phase ramp to ``s//2``, line mask, inverse FFT."""
    spectrum = np.fft.fftshift(np.fft.fftn(volume, norm="forward"))
    band, ramp = [], np.ones(())
    for axis, n in enumerate(volume.shape):
        m = n // scale
        band.append(slice(n // 2 - m // 2, n // 2 - m // 2 + m))
        shape = [1] * volume.ndim
        shape[axis] = m
        line = np.exp(2j * np.pi * (np.arange(m) - m // 2) * (scale // 2) / n)
        if kind in ("kspace_hann", "kspace_hamming"):
            a = 0.5 if kind == "kspace_hann" else 0.54
            line = line * (a + (1 - a) * np.cos(2 * np.pi * (np.arange(m) - m // 2) / m))
        ramp = ramp * line.reshape(shape)
    spectrum = spectrum[tuple(band)] * ramp
    lines = spectrum.shape[0]
    offset = np.arange(lines) - lines // 2
    if kind == "partial_fourier":
        spectrum[np.arange(lines) >= np.ceil(0.625 * lines)] = 0
    elif kind == "undersample":
        n_center = max(1, round(0.08 * lines))
        centre = (offset >= -(n_center // 2)) & (offset < n_center - n_center // 2)
        spectrum[~((offset % 4 == 0) | centre)] = 0
    image = np.fft.ifftn(np.fft.ifftshift(spectrum), norm="forward")
    return np.abs(image) if kind in ("partial_fourier", "undersample") else image.real


def _reference(kind: str, volume: np.ndarray, scale: int):
    keep = (slice(scale // 2, None, scale),) * volume.ndim
    if kind == "bicubic":
        resize = Resize([n // scale for n in volume.shape], mode="trilinear", anti_aliasing=True)
        return lambda: resize(torch.from_numpy(volume)[None])[0].numpy()
    if kind == "gaussian":
        return lambda: ndi.gaussian_filter(volume, scale / 2, mode="mirror", truncate=4.0)[keep]
    if kind == "mean":
        return lambda: ndi.uniform_filter(volume, scale + 1, mode="mirror")[keep]
    if kind == "median":
        return lambda: ndi.median_filter(volume, scale + 1, mode="mirror")[keep]
    if kind in ("hann", "hamming"):
        taps = degradation_taps(kind, scale, "legacy").numpy()

        def separable():
            out = volume
            for axis in range(volume.ndim):
                out = ndi.correlate1d(out, taps, axis=axis, mode="mirror")
            return out[keep]

        return separable
    return lambda: _numpy_kspace(volume, kind, scale).astype(np.float32)


def main() -> None:
    from nilearn.datasets import load_mni152_template

    torch.set_num_threads(1)
    volume = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    volume /= volume.max()
    cropped = np.ascontiguousarray(volume[tuple(slice(0, (n // SCALE) * SCALE) for n in volume.shape)])
    tensor = torch.from_numpy(volume)[None]
    print(f"volume {volume.shape} float32, scale {SCALE}, median of {REPEATS} runs, 1 thread each side\n")
    print("| kind | ours ms | reference | reference ms | ratio ref/ours | max abs diff |")
    print("|---|---:|---|---:|---:|---:|")
    names = {"bicubic": "MONAI Resize trilinear+AA", "median": "scipy median_filter"}
    for kind in DEGRADATION_KINDS:
        transform = Degrade(kind, SCALE, phase="legacy")  # the references keep samples s // 2 + k s
        ours_ms, ours = _timed(lambda transform=transform: transform(tensor)[0].numpy())
        ref_ms, ref = _timed(_reference(kind, cropped, SCALE))
        diff = "-" if kind == "bicubic" else f"{np.abs(ours - ref).max():.2e}"
        name = names.get(kind, "numpy FFT" if kind in DEGRADATION_KINDS[6:] else "scipy ndimage + slice")
        print(f"| {kind} | {ours_ms:.0f} | {name} | {ref_ms:.0f} | {ref_ms / ours_ms:.2f} | {diff} |", flush=True)
