"""The ``shortcut`` probe (importing this registers it): find the region that carries a
class's evidence (``regions``), say what it holds across the class's training images
(``pattern``), and test it by pasting it onto other classes (``transplant``); ``images``
gathers the images, ``present`` and ``report`` build the report's parts."""

from stresslab.probes.shortcut.pattern import BACKGROUND, OBJECT, PATTERN, RegionKind, describe_region
from stresslab.probes.shortcut.probe import ShortcutProbe
from stresslab.probes.shortcut.regions import Box, box_share, normalized, top_region
from stresslab.probes.shortcut.transplant import (
    FlipCount,
    FlipTest,
    background_test,
    paste_boxes,
    transplant_test,
)

__all__ = [
    "BACKGROUND",
    "OBJECT",
    "PATTERN",
    "Box",
    "FlipCount",
    "FlipTest",
    "RegionKind",
    "ShortcutProbe",
    "background_test",
    "box_share",
    "describe_region",
    "normalized",
    "paste_boxes",
    "top_region",
    "transplant_test",
]
