"""The app's functions as the Functions host and its Python worker see them: loaded, then invoked.

Loading reads the azure-functions library's own metadata (`FunctionApp.get_functions()`, once per
app) and, like the worker at function load, refuses an Event Grid trigger whose annotation the
`eventGridTrigger` converter does not accept. Invoking decodes each event exactly as the worker
does: the converter registered for `eventGridTrigger`, called on a `meta.Datum` of type `json`.
So a CloudEvents 1.0 event reaches the function as `func.CloudEvent` (azure-functions >= 1.25),
an Event Grid schema event as `func.EventGridEvent`, and a body the worker cannot decode (e.g. an
`eventTime` it cannot parse) fails the invocation here as it does there.
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from amlevents.timers import Schedule, TimerFunction

EVENT_GRID_TRIGGER = "eventGridTrigger"


@dataclass(frozen=True)
class LoadedFunctions:
    """The app's functions by name: Event Grid triggers and HTTP routes."""

    event_grid: Mapping[str, Callable[..., Any]]
    http_routes: Mapping[str, tuple[frozenset[str], Callable[..., Any]]]
    anonymous_routes: frozenset[str] = frozenset()
    timers: tuple[TimerFunction, ...] = ()


@dataclass(frozen=True)
class HttpAnswer:
    """What an HTTP function returned: status, body bytes, mimetype."""

    status: int
    content: bytes
    mimetype: str


class FunctionLoadError(ValueError):
    """A function the Python worker would refuse to load; names the function and parameter."""


class EventDecodeError(ValueError):
    """An event the worker's converter cannot decode: the invocation fails before the app runs."""


@functools.lru_cache(maxsize=8)
def load_functions(app: Any) -> LoadedFunctions:
    """Read the registered functions, once per app: a second `get_functions()` call raises."""
    event_grid: dict[str, Callable[..., Any]] = {}
    routes: dict[str, tuple[frozenset[str], Callable[..., Any]]] = {}
    anonymous: set[str] = set()
    timers: list[TimerFunction] = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        kind = trigger.get_binding_name()
        name = function.get_function_name()
        if kind == EVENT_GRID_TRIGGER:
            user_function = function.get_user_function()
            _check_event_grid_annotation(name, user_function, trigger.name)
            event_grid[name.lower()] = user_function
        elif kind == "httpTrigger":
            raw = trigger.get_dict_repr()
            route = (raw.get("route") or name).strip("/").lower()
            methods = frozenset(str(getattr(m, "value", m)).upper()
                                for m in (raw.get("methods") or ["GET", "POST"]))
            routes[route] = (methods, function.get_user_function())
            if str(getattr(raw.get("authLevel"), "value", raw.get("authLevel"))).lower() == \
                    "anonymous":
                anonymous.add(route)
        elif kind == "timerTrigger":
            raw = trigger.get_dict_repr()
            timers.append(TimerFunction(name, Schedule.parse(str(raw.get("schedule", ""))),
                                        bool(raw.get("runOnStartup")),
                                        function.get_user_function()))
    return LoadedFunctions(event_grid, routes, frozenset(anonymous), tuple(timers))


def _converter() -> Any:
    # The worker looks the converter up by binding name in the app's own azure-functions.
    import azure.functions as func

    return func.get_binding_registry().get(EVENT_GRID_TRIGGER)


def _check_event_grid_annotation(name: str, user_function: Callable[..., Any], arg: str) -> None:
    """The worker refuses to load a trigger whose annotation the converter rejects (e.g. a Union)."""
    try:  # the worker resolves string annotations (`from __future__ import annotations`)
        hints = typing.get_type_hints(user_function)
    except (NameError, TypeError) as exc:
        raise FunctionLoadError(f"function {name}: its annotations cannot be resolved: {exc}") \
            from exc
    annotation = hints.get(arg)
    if annotation is not None and not _converter().check_input_type_annotation(annotation):
        raise FunctionLoadError(
            f"function {name}: parameter {arg!r} is annotated {annotation!r}, which the "
            f"{EVENT_GRID_TRIGGER} converter does not accept (the Python worker would refuse to "
            "load it); annotate it func.EventGridEvent")


def decode_event(event: Mapping[str, Any]) -> Any:
    """One event of a delivery, decoded as the worker decodes it for the trigger's argument."""
    from azure.functions import meta

    return _converter().decode(meta.Datum(type="json", value=json.dumps(event)),
                               trigger_metadata=None)


def invoke_event_grid(function: Callable[..., Any], event: Mapping[str, Any]) -> None:
    """Decode one event and call the trigger with it; a decoding error fails the invocation."""
    try:
        decoded = decode_event(event)
    except Exception as exc:  # whatever the converter raises, the worker fails the invocation
        raise EventDecodeError(
            f"azure-functions' {EVENT_GRID_TRIGGER} converter cannot decode this event, so the "
            f"Python worker fails the invocation: {type(exc).__name__}: {exc}") from exc
    function(decoded)


def invoke_http(function: Callable[..., Any], method: str, route: str,
                headers: Mapping[str, str], body: bytes) -> HttpAnswer:
    """Call an HTTP function with a func.HttpRequest, as the worker builds one."""
    import azure.functions as func

    response = function(func.HttpRequest(method=method, url=f"/api/{route}",
                                         headers=dict(headers), body=body))
    return HttpAnswer(response.status_code, response.get_body(), response.mimetype)
