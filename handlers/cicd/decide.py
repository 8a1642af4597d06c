"""Any Azure ML event → the CI/CD runs its rules ask for (pure: no I/O, no SDK).

Rules are tried in order and every one whose `when` matches fires, until a matching rule with
`stop`. Each fired rule becomes one request, its templates filled from the event, within the
services' documented limits (settings.py names them): a request over a limit is `refused` here,
before anything is sent.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from handlers.cicd.plan import CicdPlan, Dispatch, HttpRequest, request_id
from handlers.cicd.settings import (
    MAX_CLIENT_PAYLOAD_BYTES,
    MAX_EVENT_TYPE_CHARS,
    MAX_WORKFLOW_INPUTS_CHARS,
    RULES,
    AzurePipeline,
    CicdRule,
    CicdSettings,
    GitHubRepositoryDispatch,
    GitHubWorkflow,
)
from handlers.cicd.templates import Template, Values, render
from handlers.events.parse import MlEvent
from handlers.ledger.ledger import event_key
from handlers.outcome import ActionResult, Outcome
from handlers.rules import facts_of

PIPELINES_API_VERSION = "7.1"  # Runs - Run Pipeline / Runs - List, GA


class _Refused(Exception):
    """A request the rule asks for that the service would refuse (over a documented limit)."""


def decide(event: MlEvent, settings: CicdSettings) -> CicdPlan | ActionResult:
    """The plan for the rules the event fires, a skip when none does, or a refusal."""
    facts = facts_of(event)
    fired: list[CicdRule] = []
    for rule in settings.rules:
        if rule.when.matches(facts):
            fired.append(rule)
            if rule.stop:
                break
    if not fired:
        return ActionResult.skipped(f"no rule in {RULES} matches this event")
    envelope = event.envelope
    key = event_key(envelope.topic, envelope.event_type, envelope.id)
    dispatches = []
    for rule in fired:
        rid = request_id(key, rule.name)
        values = Values(fields={"id": envelope.id, "type": envelope.event_type,
                                "subject": envelope.subject, "topic": envelope.topic,
                                "requestId": rid},
                        data=envelope.data, tags=facts.tags)
        try:
            dispatches.append(_dispatch(rule, rid, values, settings))
        except _Refused as exc:
            return ActionResult(Outcome.REFUSED, "refused", f"rule {rule.name!r}: {exc}")
    return CicdPlan(key, tuple(dispatches))


class _Filler:
    """Fills one rule's templates, remembering the placeholders that came out empty."""

    def __init__(self, values: Values) -> None:
        self.values = values
        self.empty: list[str] = []

    def text(self, template: Template) -> str:
        filled, empty = render(template, self.values)
        self.empty.extend(e for e in empty if e not in self.empty)
        return filled

    def json(self, value: Any) -> Any:
        if isinstance(value, Template):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _dispatch(rule: CicdRule, rid: str, values: Values, settings: CicdSettings) -> Dispatch:
    fill = _Filler(values)
    target = rule.target
    where: dict[str, Any] = {"service": target.service}
    if isinstance(target, GitHubWorkflow):
        ref = fill.text(target.ref).strip()
        if not ref:
            raise _Refused(f"ref {target.ref.source!r} came out empty for this event")
        action, request = "workflow_dispatch", _workflow_request(target, ref, rid, fill, settings)
        where.update(repository=target.repository, workflow=target.workflow, ref=ref)
    elif isinstance(target, GitHubRepositoryDispatch):
        action, request = "repository_dispatch", _repository_request(target, rid, fill, settings)
        where.update(repository=target.repository, eventType=request.body["event_type"])
    else:
        action, request = "run_pipeline", _pipeline_request(target, rid, fill, settings)
        where.update(organization=target.organization, project=target.project,
                     pipelineId=target.pipeline_id)
        if "resources" in request.body:
            where["branch"] = request.body["resources"]["repositories"]["self"]["refName"]
    return Dispatch(rule=rule.name, service=target.service, action=action, target=where,
                    request=request, request_id=rid,
                    carries_request_id=rid in _compact(dict(request.body)),
                    empty=tuple(fill.empty))


def _workflow_request(target: GitHubWorkflow, ref: str, rid: str, fill: _Filler,
                      settings: CicdSettings) -> HttpRequest:
    inputs = {name: fill.text(template) for name, template in target.inputs}
    if target.request_id_input:
        inputs[target.request_id_input] = rid
    size = len(_compact(inputs))
    if size > MAX_WORKFLOW_INPUTS_CHARS:
        raise _Refused(f"the workflow inputs are {size} characters; GitHub takes at most "
                       f"{MAX_WORKFLOW_INPUTS_CHARS}")
    body: dict[str, Any] = {"ref": ref, "inputs": inputs}
    if settings.github_run_details:
        body["return_run_details"] = True
    url = (f"{settings.github_api_url}/repos/{target.repository}/actions/workflows/"
           f"{_segment(target.workflow)}/dispatches")
    return HttpRequest("POST", url, body)


def _repository_request(target: GitHubRepositoryDispatch, rid: str, fill: _Filler,
                        settings: CicdSettings) -> HttpRequest:
    event_type = fill.text(target.event_type)
    if not 1 <= len(event_type) <= MAX_EVENT_TYPE_CHARS:
        raise _Refused(f"eventType came out {len(event_type)} characters for this event; "
                       f"GitHub takes 1-{MAX_EVENT_TYPE_CHARS}")
    payload = fill.json(dict(target.client_payload))
    if target.request_id_key:
        payload[target.request_id_key] = rid
    size = len(_compact(payload).encode("utf-8"))
    if size >= MAX_CLIENT_PAYLOAD_BYTES:
        raise _Refused(f"the client payload is {size} bytes; GitHub takes less than "
                       f"{MAX_CLIENT_PAYLOAD_BYTES}")
    return HttpRequest("POST", f"{settings.github_api_url}/repos/{target.repository}/dispatches",
                       {"event_type": event_type, "client_payload": payload})


def _pipeline_request(target: AzurePipeline, rid: str, fill: _Filler,
                      settings: CicdSettings) -> HttpRequest:
    body: dict[str, Any] = {}
    if target.branch is not None:
        branch = fill.text(target.branch).strip()
        if not branch:
            raise _Refused(f"branch {target.branch.source!r} came out empty for this event")
        ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
        body["resources"] = {"repositories": {"self": {"refName": ref}}}
    parameters = {name: fill.text(template) for name, template in target.template_parameters}
    if target.request_id_parameter:
        parameters[target.request_id_parameter] = rid
    if parameters:
        body["templateParameters"] = parameters
    if target.variables:
        body["variables"] = {name: {"value": fill.text(template)}
                             for name, template in target.variables}
    url = (f"{settings.azure_devops_url}/{_segment(target.organization)}/"
           f"{_segment(target.project)}/_apis/pipelines/{target.pipeline_id}/runs"
           f"?api-version={PIPELINES_API_VERSION}")
    return HttpRequest("POST", url, body)
