"""Bias audit of any segmentation model's predictions on the user's own cohort: ``python -m common.audit``.

A decathlon-style datalist names, per case, the ``image``, optionally the manual ``label`` and the model's
``prediction`` (or ``--bundle DIR`` produces the missing predictions with the bundle's inference config), and any
attributes (``group``, ``site``, ``spacing``, ``age`` ...). For every ``--by`` attribute the audit reports, per
group and structure, Dice and surface distance, volumes, the normalised volume bias with a bootstrap interval,
the Flip decomposition, the group AUC by predicted vs manual volume (two groups), and for a numeric attribute
the trend of volume bias against it. See :mod:`common.audit.__main__` for the command line.

Modules: :mod:`~common.audit.cohort` (reading and validating the datalist), :mod:`~common.audit.infer` (bundle
inference with resume), :mod:`~common.audit.measure` (per-case measurements and per-group summaries),
:mod:`~common.audit.report` (``results.json``, ``report.md`` and figures), :mod:`~common.audit.calibration` (a
bundle's softmax for calibration by group, ``--keep-probabilities``), :mod:`~common.audit.shortcut` (OSCAR's
shortcut localisation, ``--shortcut``).
"""

from common._lazy import lazy_getattr

_EXPORTS = {
    "Cohort": "cohort",
    "load_cohort": "cohort",
    "parse_labels": "cohort",
    "predict_missing": "infer",
    "measure_cases": "measure",
    "summarise": "measure",
    "run_audit": "run",
    "main": "__main__",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
