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


def test_transforms_that_moved_out_of_metrics_are_still_importable_there_with_a_warning():
    import common.metrics
    import common.transforms

    for name in ("FlipRiskd", "IdentityUncertaintyd", "SaveFlipRiskd"):
        with pytest.warns(DeprecationWarning, match=f"common.metrics.{name} moved to common.transforms"):
            moved = getattr(common.metrics, name)
        assert moved is getattr(common.transforms, name)


def test_load_split_moved_to_common_data_and_is_still_importable_from_transforms():
    import common.data
    import common.transforms

    with pytest.warns(
        DeprecationWarning, match="common.transforms.load_split moved to common.data.datalist.load_split"
    ):
        moved = common.transforms.load_split
    assert moved is common.data.load_split
