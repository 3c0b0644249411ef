"""Per-degradation image-quality metrics of a super-resolution evaluator (Shrestha, Wang and Nakarmi 2023).

:class:`SRMetricsByDegradation` attaches to a MONAI evaluator whose batches carry a ``"degradation"`` kind per
image, the low-resolution input under ``"image"``, the high-resolution target under ``"label"`` and the
network output under ``"pred"``. The scores are :class:`common.metrics.SRQualityMetric` (a MONAI
``CumulativeIterationMetric`` aggregated by group): at the end of each evaluation it reports, per degradation
kind, the mean PSNR (MONAI ``PSNRMetric``, max 1), SSIM (MONAI ``SSIMMetric``, 11x11 Gaussian window, sigma 1.5,
k1 0.01, k2 0.03, data range 1), NRMSE and HFEN (``common.metrics``), and the same four for plain bicubic
interpolation of the same inputs (the no-network baseline). Predictions are clipped to [0, 1] first.
Results go to ``engine.state.metrics`` (``"psnr_gaussian"``, ``"bicubic_psnr_gaussian"``, ...), to TensorBoard
scalars ``<tag_prefix>/<metric>/<kind>`` and to :attr:`results`, a metrics record (:mod:`common.metrics.record`:
``metrics`` those names, ``per_sample`` one entry per image with its ``kind``, ``extra`` ``{"mean":
{metric: {kind: mean}}, "bicubic_interpolation": {...}, "num_images": {kind: n}}``), written atomically to
``output_file`` if given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from common.metrics.record import write_metrics
from common.metrics.sr_quality import SR_METRIC_NAMES, SRQualityMetric
from common.metrics.tissue_area import GreyMatterAreaMetric
from common.networks.sr import interpolate_up

METRIC_NAMES = SR_METRIC_NAMES


def _plain(x: Any) -> torch.Tensor:
    """A detached float32 CPU tensor without MetaTensor bookkeeping."""
    x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return x.detach().cpu().float()


def _items(batch: Any, output: Any) -> list[tuple[dict, dict]]:
    """(batch item, output item) pairs whether the engine decollated the batch or not."""
    if isinstance(output, Mapping):  # not decollated: split the batch tensors
        n = len(output["pred"])
        outs = [{k: v[i] for k, v in output.items() if isinstance(v, torch.Tensor) and len(v) == n} for i in range(n)]
        bats = [
            {k: v[i] for k, v in batch.items() if isinstance(v, (list, tuple, torch.Tensor)) and len(v) == n}
            for i in range(n)
        ]
        return list(zip(bats, outs))
    return list(zip(batch, output))


class SRMetricsByDegradation:
    """Mean PSNR / SSIM / NRMSE / HFEN per degradation kind, for the network and for bicubic interpolation.

    A thin handler around two :class:`common.metrics.SRQualityMetric` (the network, the bicubic baseline): it
    feeds them every image with its kind and, at the end of an evaluation, publishes their aggregates. The
    metrics' buffers are the only copy of the scores.

    Args:
        scale: up-sampling factor (for the bicubic baseline).
        group_key: batch key naming each image's degradation kind.
        output_file: JSON file for the results (``None``: none written).
        extra: the run's settings, the record's ``settings`` (model, loss, training degradation ...).
        summary_writer: a TensorBoard ``SummaryWriter`` for the scalars (``None``: none logged).
        tag_prefix: TensorBoard tag prefix.
        global_step_transform: engine -> step for the scalars (default: the engine's epoch).
        baseline: also score bicubic interpolation of the input.
        grey_matter_thresholds: ``(t_csf_gm, t_gm_wm)`` of the fixed downstream segmenter
            (:func:`common.data.sr_pairs.fit_grey_matter_segmenter`, fitted on training images): when given, every
            (clipped) SR output and its target are segmented and ``extra["downstream"]`` (and
            ``extra["downstream_bicubic_interpolation"]``) hold the median grey-matter area bias and Dice per kind
            (:class:`common.metrics.tissue_area.GreyMatterAreaMetric`).
    """

    def __init__(
        self,
        scale: int = 2,
        group_key: str = "degradation",
        output_file: str | os.PathLike | None = None,
        extra: Mapping[str, Any] | None = None,
        summary_writer: Any = None,
        tag_prefix: str = "test",
        global_step_transform: Any = None,
        baseline: bool = True,
        grey_matter_thresholds: Sequence[float] | None = None,
    ) -> None:
        self.scale = int(scale)
        self.group_key = group_key
        self.output_file = output_file
        self.extra = dict(extra or {})
        self.summary_writer = summary_writer
        self.tag_prefix = tag_prefix
        self.global_step_transform = global_step_transform or (lambda engine: engine.state.epoch)
        self.baseline = baseline
        self.network_metric = SRQualityMetric(data_range=1.0)
        self.bicubic_metric = SRQualityMetric(data_range=1.0)
        self.downstream = None
        if grey_matter_thresholds is not None:
            self.downstream = {
                "network": GreyMatterAreaMetric(grey_matter_thresholds),
                "bicubic": GreyMatterAreaMetric(grey_matter_thresholds),
            }
        self.results: dict[str, Any] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def reset(self) -> None:
        self.network_metric.reset()
        self.bicubic_metric.reset()
        for metric in (self.downstream or {}).values():
            metric.reset()

    def iteration_completed(self, engine: Engine) -> None:
        for item, out in _items(engine.state.batch, engine.state.output):
            kind = item[self.group_key]
            kind = kind if isinstance(kind, str) else str(kind[0] if isinstance(kind, (list, tuple)) else kind)
            target = _plain(out.get("label", item.get("label")))[None]
            pred = _plain(out["pred"])[None]
            self.network_metric(pred, target, groups=[kind])
            if self.downstream:
                self.downstream["network"](pred.clamp(0.0, 1.0), target, groups=[kind])
            if self.baseline:
                up = interpolate_up(_plain(out.get("image", item.get("image")))[None], self.scale)
                self.bicubic_metric(up, target, groups=[kind])
                if self.downstream:
                    self.downstream["bicubic"](up.clamp(0.0, 1.0), target, groups=[kind])

    def epoch_completed(self, engine: Engine) -> None:
        extra: dict[str, Any] = {"mean": self.network_metric.aggregate(), "num_images": self.network_metric.counts()}
        if self.baseline:
            extra["bicubic_interpolation"] = self.bicubic_metric.aggregate()
        if self.downstream:
            extra["downstream"] = self.downstream["network"].aggregate()
            if self.baseline:
                extra["downstream_bicubic_interpolation"] = self.downstream["bicubic"].aggregate()
        flat = {}
        step = self.global_step_transform(engine)
        for source, prefix in (("mean", ""), ("bicubic_interpolation", "bicubic_")):
            for name, per_kind in extra.get(source, {}).items():
                for kind, value in per_kind.items():
                    flat[f"{prefix}{name}_{kind}"] = value
                    engine.state.metrics[f"{prefix}{name}_{kind}"] = value
                    if self.summary_writer is not None:
                        self.summary_writer.add_scalar(f"{self.tag_prefix}/{prefix}{name}/{kind}", value, step)
        if self.summary_writer is not None:
            self.summary_writer.flush()
        self.results = write_metrics(self.output_file or None, self.extra, flat, self._samples(), extra)

    def _samples(self) -> list[dict[str, Any]]:
        """One record per test image (``id`` = kind and its index within the kind), built from the buffers."""
        seen: dict[str, int] = {}
        samples = []
        baseline = self.bicubic_metric.per_sample() if self.baseline else []
        for i, row in enumerate(self.network_metric.per_sample()):
            kind = row.pop("group")
            sample = {"id": f"{kind}_{seen.get(kind, 0)}", "kind": kind, **row}
            seen[kind] = seen.get(kind, 0) + 1
            if baseline:
                sample.update({f"bicubic_{name}": baseline[i][name] for name in METRIC_NAMES})
            samples.append(sample)
        return samples
