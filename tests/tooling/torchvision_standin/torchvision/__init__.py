"""Pure-torch stand-in for the two ``torchvision.utils`` functions MONAI Label imports.

Not torchvision. The MONAI Label tooling of this project puts the folder that
holds this package on the server's ``PYTHONPATH`` only when ``import torchvision``
fails (no CPU build of torchvision installs against the pinned CPU torch), so
it never shadows a real installation. Only ``utils.make_grid`` and
``utils.save_image`` exist.
"""

__version__ = "0.0.0+standin"
