"""Request bodies checked with the SDKs' OWN generated REST models, not with hand-written rules.

azure-ai-ml 1.35 (``azure.ai.ml._restclient.arm_ml_service.models``) and azure-mgmt-datafactory 10
(``azure.mgmt.datafactory.models``) are generated from the services' TypeSpec into ``model_base``
models: each ``rest_field`` carries its wire name, its visibility (``read`` only = set by the
service), and its type annotation says whether it is required (not ``Optional``), which enum it
takes (``Union[str, SomeEnum]``; the service validates even "extensible" enums), and which
subclass a discriminator value selects (``__mapping__``). ``check`` walks a JSON body against such
a model class and lists every problem: a required field missing, a wrong JSON type, a value outside
its enum or discriminator mapping, a member the model does not have (ARM answers
``InvalidRequestContent`` "Could not find member ..."). Read-only members are ignored, as ARM does.
These generated models carry no patterns or numeric bounds; the documented rules that need them
(names, capacity, instance types) live next to the routes that apply them.
"""

from __future__ import annotations

import datetime
import enum
import importlib
import sys
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

import isodate


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a body: where (JSON path), an ARM-style code, and a message."""

    target: str
    code: str
    message: str

    def as_detail(self) -> dict[str, str]:
        """An entry of an ARM error body's ``details``."""
        return {"code": self.code, "target": self.target, "message": self.message}


def check(model: type, body: Any, *, operation: str = "create", path: str = "") -> list[Problem]:
    """Every problem of ``body`` against ``model`` for ``operation`` (create = PUT, update = PATCH)."""
    problems: list[Problem] = []
    _check_value(model, body, operation, path, problems)
    return problems


def _fields(model: type) -> dict[str, Any]:
    """attribute name -> ``_RestField`` of a model class and its bases (what model_base computes)."""
    found: dict[str, Any] = {}
    for klass in reversed(model.__mro__):
        for name, value in vars(klass).items():
            if not name.startswith("_") and hasattr(value, "_is_discriminator") and \
                    hasattr(value, "_visibility"):
                found[name] = value
    return found


@cache
def _hints(model: type) -> dict[str, Any]:
    """Resolved type annotations ("_models.X" forward references included)."""
    module = sys.modules[model.__module__]
    package = importlib.import_module(model.__module__.rpartition(".")[0])
    namespace = {**vars(module), "_models": package}
    return typing.get_type_hints(model, globalns=namespace)


def _rest_name(attribute: str, field: Any) -> str:
    return str(field._rest_name_input or attribute)


def _settable(field: Any, operation: str) -> bool:
    visibility = field._visibility
    return visibility is None or operation in visibility


def _resolve(model: type, body: dict[str, Any], path: str,
             problems: list[Problem]) -> type | None:
    """Follow discriminators (``__mapping__``) to the concrete class, or None when impossible."""
    seen: set[str] = set()
    while hasattr(model, "__mapping__"):
        own = [(a, f) for a, f in vars(model).items()
               if hasattr(f, "_is_discriminator") and f._is_discriminator and
               _rest_name(a, f) not in seen]
        if not own:
            return model
        attribute, field = own[0]
        name = _rest_name(attribute, field)
        seen.add(name)
        value = body.get(name)
        mapping: dict[str, type] = model.__mapping__
        if value is None:
            problems.append(Problem(_join(path, name), "Required",
                                    f"The {name} field is required; one of {sorted(mapping)}."))
            return None
        chosen = next((klass for key, klass in mapping.items()
                       if isinstance(value, str) and key.lower() == value.lower()), None)
        if chosen is None:
            problems.append(Problem(_join(path, name), "InvalidValue",
                                    f"{value!r} is not a valid {name}; one of {sorted(mapping)}."))
            return None
        model = chosen
    return model


def _check_model(model: type, body: Any, operation: str, path: str, problems: list[Problem]) -> None:
    if not isinstance(body, dict):
        problems.append(Problem(path or "$", "InvalidRequestContent",
                                f"Expected a JSON object for {model.__name__}, got {_json_type(body)}."))
        return
    concrete = _resolve(model, body, path, problems)
    if concrete is None:
        return
    fields, hints = _fields(concrete), _hints(concrete)
    by_rest = {_rest_name(a, f): (a, f) for a, f in fields.items()}
    for key in body:
        if key not in by_rest:
            problems.append(Problem(_join(path, key), "InvalidRequestContent",
                                    f"Could not find member '{key}' on object of type "
                                    f"'{concrete.__name__}'. Path '{_join(path, key)}'."))
    for name, (attribute, field) in by_rest.items():
        if not _settable(field, operation) or field._is_discriminator:
            continue  # read-only members are ignored (ARM does); discriminators were resolved
        annotation = hints.get(attribute, Any)
        value = body.get(name)
        if value is None:
            if not _optional(annotation):
                problems.append(Problem(_join(path, name), "Required", f"The {name} field is required."))
            continue
        _check_value(annotation, value, operation, _join(path, name), problems)


def _check_value(annotation: Any, value: Any, operation: str, path: str,
                 problems: list[Problem]) -> None:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: the value (not None here) must be an X
            _check_value(options[0], value, operation, path, problems)
            return
        enums = [a for a in options if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and str in options:  # Union[str, SomeEnum]: the service checks the known values
            _check_enum(enums[0], value, path, problems)
            return
        for option in options:
            trial: list[Problem] = []
            _check_value(option, value, operation, path, trial)
            if not trial:
                return
        problems.append(Problem(path, "InvalidValue", f"{value!r} does not match {annotation}."))
        return
    if origin is typing.Literal:
        allowed = [a.value if isinstance(a, enum.Enum) else a for a in args]
        if not any(_same(value, a) for a in allowed):
            problems.append(Problem(path, "InvalidValue", f"{value!r} is not one of {allowed}."))
        return
    if origin is list:
        if not isinstance(value, list):
            problems.append(Problem(path, "InvalidType", f"Expected an array, got {_json_type(value)}."))
            return
        for index, item in enumerate(value):
            _check_value(args[0] if args else Any, item, operation, f"{path}[{index}]", problems)
        return
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(Problem(path, "InvalidType", f"Expected an object, got {_json_type(value)}."))
            return
        for key, item in value.items():
            _check_value(args[1] if len(args) > 1 else Any, item, operation, _join(path, key), problems)
        return
    if isinstance(annotation, type):
        if _is_model(annotation):
            _check_model(annotation, value, operation, path, problems)
        elif issubclass(annotation, enum.Enum):
            _check_enum(annotation, value, path, problems)
        else:
            _check_scalar(annotation, value, path, problems)


def _check_scalar(kind: type, value: Any, path: str, problems: list[Problem]) -> None:
    ok: bool
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str)
    elif kind is datetime.datetime:
        ok = isinstance(value, str) and _parses(lambda: isodate.parse_datetime(value))
    elif kind is datetime.timedelta:
        ok = isinstance(value, str) and _parses(lambda: isodate.parse_duration(value))
    elif kind is datetime.date:
        ok = isinstance(value, str) and _parses(lambda: isodate.parse_date(value))
    else:
        ok = True
    if not ok:
        problems.append(Problem(path, "InvalidType",
                                f"{value!r} is not a valid {kind.__name__} value."))


def _check_enum(kind: type[enum.Enum], value: Any, path: str, problems: list[Problem]) -> None:
    allowed = [member.value for member in kind]
    if not isinstance(value, str) or not any(_same(value, a) for a in allowed):
        problems.append(Problem(path, "InvalidValue",
                                f"{value!r} is not a valid {kind.__name__}; one of {allowed}."))


def _is_model(kind: type) -> bool:
    """A generated ``model_base.Model`` subclass (each SDK vendors its own model_base)."""
    return hasattr(kind, "_calculated") and hasattr(kind, "as_dict")


def _same(value: Any, allowed: Any) -> bool:
    if isinstance(value, str) and isinstance(allowed, str):
        return value.lower() == allowed.lower()
    return bool(value == allowed)


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(annotation)


def _parses(parse: Any) -> bool:
    try:
        parse()
    except (ValueError, TypeError, isodate.ISO8601Error):
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
