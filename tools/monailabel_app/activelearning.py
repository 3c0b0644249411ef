"""MONAI Label scoring method and active-learning strategy that put the most suspect labels first.

``SuspectLabelScoring`` (``POST /scoring/suspect_label``) scores every labelled image of the datastore with
:class:`suspect_labels.BundleLossScorer` (the current model's loss against the stored label) and stores the
score in the image's info; ``SuspectLabelStrategy`` (``POST /activelearning/suspect_label``) returns the
labelled image with the highest stored score, so an annotator reviews the worst labels first. Pass
``{"exclude": [ids]}`` in the strategy request to skip images already reviewed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

try:  # inside a served app folder the module sits next to this one; in the repository it is a package module
    from suspect_labels import FINAL_TAG, BundleLossScorer, most_suspect, rank_suspect, score_labelled_images
except ImportError:
    from tools.monailabel_app.suspect_labels import (
        FINAL_TAG,
        BundleLossScorer,
        most_suspect,
        rank_suspect,
        score_labelled_images,
    )

logger = logging.getLogger(__name__)


class SuspectLabelScoring(ScoringMethod):
    """Score each labelled image by the model's loss against its label (reloads the weights on every call).

    Args:
        bundle_dir: the bundle whose ``models/model.pt`` is the current model (MONAI Label trains into it).
        device: torch device.
        make_scorer: builds the ``(image_uri, label_uri) -> score`` callable; default :class:`BundleLossScorer`.
    """

    def __init__(
        self, bundle_dir: str | Path, device: str = "cpu", make_scorer: Callable[..., Callable] | None = None
    ) -> None:
        super().__init__("Loss of the current model against each stored label (higher = more suspect)")
        self.bundle_dir = Path(bundle_dir)
        self.device = device
        self.make_scorer = make_scorer or BundleLossScorer

    def __call__(self, request, datastore: Datastore):
        label_tag = request.get("label_tag", FINAL_TAG)
        scorer = self.make_scorer(self.bundle_dir, device=request.get("device", self.device))
        scores = score_labelled_images(datastore, scorer, label_tag, model=self.bundle_dir.name)
        ranked = rank_suspect(scores)
        logger.info(f"suspect_label: scored {len(scores)} labelled images; most suspect first: {ranked[:5]}")
        return {"scores": scores, "ranked": ranked}


class SuspectLabelStrategy(Strategy):
    """Return the labelled image with the highest suspect-label score (``None`` before any scoring)."""

    def __init__(self) -> None:
        super().__init__("Labelled image whose label the current model disputes most (run suspect_label scoring)")

    def __call__(self, request, datastore: Datastore):
        image = most_suspect(datastore, request.get("label_tag", FINAL_TAG), request.get("exclude", ()))
        if image is None:
            return None
        logger.info(f"suspect_label: selected image {image}")
        return {"id": image}
