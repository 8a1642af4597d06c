"""The azure-functions floor: requirements.txt names it, `make test-floor` runs this tier on it.

Below 1.25 the converter has no func.CloudEvent: a CloudEvents 1.0 delivery arrives as an
EventGridEvent without topic, type and time, so those versions cannot deliver it faithfully.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import version

import azure.functions as func

from tests.conftest import ROOT

FLOOR_LINE = re.compile(r"^azure-functions>=(?P<floor>[0-9.]+),<(?P<ceiling>[0-9.]+)\s*$",
                        re.MULTILINE)


def release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def declared() -> tuple[str, str]:
    match = FLOOR_LINE.search((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    assert match, "requirements.txt must pin azure-functions as >=FLOOR,<CEILING"
    return match["floor"], match["ceiling"]


def test_the_floor_is_the_first_version_with_cloud_events() -> None:
    floor, ceiling = declared()
    assert release(floor) >= (1, 25, 0) and release(ceiling) == (3,)


def test_the_installed_version_is_allowed_and_can_hand_cloud_events() -> None:
    floor, ceiling = declared()
    installed = version("azure-functions")
    assert release(floor) <= release(installed) < release(ceiling)
    assert isinstance(func.CloudEvent, type)


def test_the_floor_run_runs_on_the_floor() -> None:
    # `make test-floor` says which version it installed; outside it, the main venv is in use.
    pinned = os.environ.get("AZURE_FUNCTIONS_UNDER_TEST")
    if pinned is not None:
        assert version("azure-functions") == pinned == declared()[0]


def test_the_makefile_pins_the_floor_from_requirements_txt() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "AZF_FLOOR := $(shell sed -n 's/^azure-functions>=" in makefile
    assert '"azure-functions==$(AZF_FLOOR)"' in makefile
    assert re.search(r"^test: .*\btest-floor\b", makefile, re.MULTILINE)
