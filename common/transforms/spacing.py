"""``Spacingd`` that tolerates non-dictionary ``<key>_*`` entries such as MONAI Label's ``image_path``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping

from monai.transforms import Spacingd

__all__ = ["SpacingWithPathsd"]


class SpacingWithPathsd(Spacingd):
    """:class:`monai.transforms.Spacingd` that leaves non-dictionary ``<key>_*`` entries untouched.

    MONAI's ``Spacingd`` treats every ``<key>_*`` entry of a NIfTI item as a metadata dictionary and
    ``update()``s it with the resampled image's metadata, so an item that also carries, for example,
    ``image_path`` (a string, as MONAI Label's infer task adds) fails with ``AttributeError``. This
    subclass sets such entries aside for the call and puts them back unchanged; dictionary entries
    (``image_meta_dict``) are still updated. Arguments, output and ``inverse`` are those of ``Spacingd``.
    """

    def __call__(self, data: Mapping[Hashable, object], lazy: bool | None = None) -> dict:
        d = dict(data)
        prefixes = tuple(f"{key}_" for key in self.keys)
        aside = {
            k: d.pop(k)
            for k in list(d)
            if isinstance(k, str) and k.startswith(prefixes) and not isinstance(d[k], MutableMapping)
        }
        out = super().__call__(d, lazy=lazy)
        out.update(aside)
        return out
