"""``Registry.build``: the one settings check, read from each part's signature."""

from __future__ import annotations

import inspect

import pytest

from stresslab.attacks import ATTACKS
from stresslab.attributions import ATTRIBUTIONS
from stresslab.errors import ConfigError
from stresslab.registry import Registry


class Part:
    def __init__(self, size: int, *, window: int = 3, stride: int = 1) -> None:
        self.size, self.window, self.stride = size, window, stride
        if stride > window:
            raise ValueError(f"stride {stride} > window {window}")


def factory(info: str, *, depth: int = 2) -> tuple[str, int]:
    return info, depth


def make() -> Registry[object]:
    reg: Registry[object] = Registry("widget")
    reg.register("part")(Part)
    reg.register("factory")(factory)
    return reg


def test_build_passes_settings_and_positional_arguments() -> None:
    reg = make()
    part = reg.build("part", size=4, window=5)
    assert (part.size, part.window, part.stride) == (4, 5, 1)
    assert reg.build("factory", "info", depth=7) == ("info", 7)
    assert reg.settings("factory", bound=1) == {"depth": 2}
    assert reg.settings("part") == {"size": inspect.Parameter.empty, "window": 3, "stride": 1}


def test_unknown_setting_names_registry_part_key_and_closest() -> None:
    reg = make()
    with pytest.raises(ConfigError) as err:
        reg.build("part", size=1, windw=2)
    msg = str(err.value)
    assert msg == (
        "unknown setting 'windw' of widget 'part' (did you mean 'window'?); accepted: size, window, stride"
    )
    with pytest.raises(ConfigError, match=r"^cfg\.part\.strde: unknown setting 'strde' of widget 'part'"):
        reg.build("part", where="cfg.part", size=1, strde=2)
    # The positional argument the caller binds is not a setting.
    with pytest.raises(ConfigError, match="unknown setting 'info'.*accepted: depth$"):
        reg.build("factory", "x", info="y")


def test_missing_required_setting_and_bad_value() -> None:
    reg = make()
    with pytest.raises(ConfigError, match=r"^widget 'part' needs setting\(s\) size$"):
        reg.build("part", window=2)
    with pytest.raises(ConfigError, match=r"^cfg\.part: stride 4 > window 3$"):
        reg.build("part", where="cfg.part", size=1, stride=4)


def test_unknown_part_names_the_closest_parts() -> None:
    reg = make()
    expected = r"^unknown widget 'parts' \(did you mean 'part'\?\); registered: part, factory$"
    with pytest.raises(ConfigError, match=expected):
        reg.build("parts")
    with pytest.raises(ConfigError, match=r"did you mean 'pgd_linf'"):
        ATTACKS.build("pgd_lnf")


def test_attack_norm_is_bound_by_the_name_and_attribution_options_limit_settings() -> None:
    pgd = ATTACKS.build("pgd_l2", steps=3)
    assert pgd.norm == "l2" and pgd.steps == 3
    with pytest.raises(ConfigError, match="unknown setting 'norm'"):
        ATTACKS.build("pgd_l2", norm="linf")
    # Occlusion's constructor takes the dataset mean, but a config sets only its options.
    assert ATTRIBUTIONS.build("occlusion", window=4, stride=2).window == 4
    with pytest.raises(ConfigError, match="unknown setting 'mean'.*accepted: window, stride, fill"):
        ATTRIBUTIONS.build("occlusion", mean=[0.5])
