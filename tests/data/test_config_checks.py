"""The embedded-data configs reject bad fields with one message naming the config, the field and the value."""

import pytest

from common.data import EchoPhantomConfig, MNIPopulationConfig
from common.data.config_checks import require
from common.data.shortcut_phantom import ShortcutPhantomConfig


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: EchoPhantomConfig(size=16), r"^EchoPhantomConfig\.size must be >= 32 pixels, got 16$"),
        (lambda: EchoPhantomConfig(num_val=-1), r"^EchoPhantomConfig\.num_val must be >= 0, got -1$"),
        (
            lambda: ShortcutPhantomConfig(correlation=1.5),
            r"^ShortcutPhantomConfig\.correlation must be in \[0, 1\], got 1\.5$",
        ),
        (
            lambda: ShortcutPhantomConfig(num_test=6),
            r"^ShortcutPhantomConfig\.num_test must be a multiple of 4 \(cells\), got 6$",
        ),
        (lambda: ShortcutPhantomConfig(num_train=-2), r"^ShortcutPhantomConfig\.num_train must be >= 0, got -2$"),
        (lambda: MNIPopulationConfig(n_test=-1), r"^MNIPopulationConfig\.n_test must be >= 0, got -1$"),
        (
            lambda: MNIPopulationConfig(low_spacing=0.0),
            r"^MNIPopulationConfig\.low_spacing must be positive, got 0\.0$",
        ),
        (
            lambda: MNIPopulationConfig(group_l_gm_change=0.5),
            r"^MNIPopulationConfig\.group_l_gm_change must be in \(-0\.5, 0\.5\), got 0\.5$",
        ),
    ],
)
def test_bad_field_names_config_field_and_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_boundary_values_pass():
    EchoPhantomConfig(size=32, num_train=0, num_val=0, num_test=0)
    ShortcutPhantomConfig(correlation=0.0, num_test=0)
    ShortcutPhantomConfig(correlation=1.0, num_test=4)
    MNIPopulationConfig(group_l_gm_change=-0.49)


def test_require_reports_the_first_failing_field():
    class Config:
        a, b, c = 1, -2, -3

    require(Config(), ("a",), lambda v: v > 0, "positive")
    with pytest.raises(ValueError, match=r"^Config\.b must be positive, got -2$"):
        require(Config(), ("a", "b", "c"), lambda v: v > 0, "positive")
