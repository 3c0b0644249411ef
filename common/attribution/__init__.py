"""Region-level attribution analysis for shortcut localisation.

Implements the OSCAR protocol (Achara, Triantafillou, Puyol-Antón, Hammers and King, 2025,
"Localising Shortcut Learning in Pixel Space via Ordinal Scoring Correlations for Attribution
Representations"): attribution maps of three models (a balanced baseline ``BA``, the test model
``TS`` and a sensitive-attribute model ``SA``) are averaged over the regions of a fixed partition,
ranked within each image, summarised by the per-region median rank, and compared through
(partial) correlations of those rank profiles.

Submodules are imported lazily so that the numpy-only parts do not import torch or MONAI.
"""

from importlib import import_module

__all__ = ["attenuation", "maps", "regions", "statistics"]


def __getattr__(name):
    if name in __all__:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
