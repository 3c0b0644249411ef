import importlib

import pytest

PACKAGES = ["common.data", "common.transforms", "common.metrics", "common.networks", "common.handlers"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_declared_export_resolves(package):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == [], f"{package} declares exports that do not exist: {missing}"


def test_unknown_name_is_an_attribute_error():
    import common.metrics

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        common.metrics.nope  # noqa: B018
