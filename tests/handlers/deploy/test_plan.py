"""What tag-driven deployment decides (handlers/deploy/plan.py): the plan's lines and details."""

from __future__ import annotations

import pytest

from handlers.deploy.plan import DeploymentPlan
from handlers.events.workspace import WorkspaceRef

WS = WorkspaceRef("sub-1", "rg-1", "ws-1")


def _plan(**changes: object) -> DeploymentPlan:
    fields: dict[str, object] = {"workspace": WS, "model_name": "fraud", "model_version": "3",
                                 "target": "managed", "endpoint": "fraud-ep",
                                 "deployment": "blue", **changes}
    return DeploymentPlan(**fields)  # type: ignore[arg-type]


def test_summary_and_details_whole() -> None:
    plan = _plan(instance_type="Standard_DS3_v2", traffic=10, tags={"deploy": "true"})
    assert plan.summary() == "deploy fraud:3 to managed endpoint fraud-ep as blue (10% traffic)"
    assert plan.as_dict() == {
        "workspace": "/subscriptions/sub-1/resourceGroups/rg-1/providers/"
                     "Microsoft.MachineLearningServices/workspaces/ws-1",
        "model_name": "fraud", "model_version": "3", "target": "managed",
        "endpoint": "fraud-ep", "deployment": "blue", "instance_type": "Standard_DS3_v2",
        "instance_count": 1, "traffic": 10, "compute": "", "environment": "",
        "scoring_script": "", "cpu_cores": 0.0, "memory_gb": 0.0, "tags": {"deploy": "true"}}


@pytest.mark.parametrize(("script", "code", "path"), [
    ("score-code:1/src/score.py", "score-code:1", "src/score.py"),
    ("azureml:score.code_2:v-1/score.py", "score.code_2:v-1", "score.py"),
    ("", "", ""),
    ("score.py", "", ""),  # no code asset
    ("score-code:1/src/score.txt", "", ""),  # not a Python file
    ("score-code:1/src/my score.py", "", ""),
    ("-code:1/score.py", "", ""),  # a name starts with a letter or digit
])
def test_a_scoring_script_names_its_code_asset_and_its_path(script: str, code: str,
                                                            path: str) -> None:
    plan = _plan(scoring_script=script)
    assert (plan.code, plan.script_path) == (code, path)


def test_tags_do_not_make_two_plans_different() -> None:
    assert _plan(tags={"a": "1"}) == _plan(tags={"b": "2"})
    assert _plan(traffic=50) != _plan()
