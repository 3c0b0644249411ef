"""Shared library of the bias-study bundle collection.

Subpackages: ``data`` (embedded data sources, datalists), ``transforms``
(degradations, acquisition simulation, label errors), ``metrics`` (volume
bias, group AUC, flip, HFEN, NRMSE), ``networks`` (down-sampling operators,
U-Net, VINN, SR networks), ``handlers`` (ignite handlers), ``study`` (grid
runner and reports).
"""

__version__ = "0.1.0"
