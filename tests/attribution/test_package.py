import importlib

import pytest

import common.attribution


@pytest.mark.parametrize("name", common.attribution.__all__)
def test_submodules_load_lazily_and_their_exports_resolve(name):
    module = getattr(common.attribution, name)
    assert module is importlib.import_module(f"common.attribution.{name}")
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        common.attribution.nope  # noqa: B018
