"""One way between a config dataclass and JSON: ``to_dict`` / ``from_dict`` with typed fields.

Every config that is written to a file (config.json, run_config.json, checkpoints) reads back
through :meth:`JsonConfig.from_dict`, which checks each value against the field's annotation,
so a config edited by hand or written by another version fails with the field's name instead
of building a wrong model.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from .errors import GanaugError

_UNIONS = (Union, types.UnionType)


class JsonConfig:
    """Mixin for config dataclasses.

    ``from_dict`` takes parsed JSON: unknown fields, missing required fields and values of the
    wrong type are :class:`GanaugError` s that name the field; an int is accepted where a float is
    wanted but a bool never counts as a number; JSON lists become tuples where the field is a
    tuple. The class's ``validate()`` (if any) runs last.
    """

    json_name: ClassVar[str] = "config"  # what error messages call it

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise GanaugError(f"{cls.json_name} must be a JSON object, got {type(data).__name__}.")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise GanaugError(f"{cls.json_name} has unknown fields {unknown}; it was written by another "
                              "ganaug version or edited by hand.")
        missing = [n for n, f in fields.items() if n not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise GanaugError(f"{cls.json_name} is missing required fields {missing}.")
        hints = get_type_hints(cls)
        kwargs = {name: coerce(value, hints[name], f"{cls.json_name} field {name!r}")
                  for name, value in data.items()}
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            obj = validate() or obj
        return obj


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (parsed JSON) as ``annotation`` wants it, or a GanaugError naming ``where``."""
    if annotation is Any:
        return value
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in _UNIONS:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except GanaugError:
                pass
        raise GanaugError(f"{where} must be {_describe(annotation)}, got {value!r}.")
    if origin is Literal:
        if value in args:
            return value
        raise GanaugError(f"{where} must be one of {list(args)}, got {value!r}.")
    if isinstance(annotation, type) and issubclass(annotation, JsonConfig):
        return annotation.from_dict(value)
    if annotation is bool or annotation is str or annotation is int:
        # bool is an int in Python: true/false must not pass as a number, nor 1 as a bool
        if isinstance(value, annotation) and (annotation is bool or not isinstance(value, bool)):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is type(None):
        if value is None:
            return None
    elif annotation in (list, tuple) or origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is list:
                return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise GanaugError(f"{where} must have {len(args)} items, got {value!r}.")
                return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
            if origin is tuple and args:
                return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
            return list(value) if annotation is list else tuple(value)
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            if args and args[1] is not Any:
                return {k: coerce(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
            return dict(value)
    else:
        raise TypeError(f"no JSON check for annotation {annotation!r} ({where})")  # a bug here, not bad input
    raise GanaugError(f"{where} must be {_describe(annotation)}, got {value!r}.")


def _describe(annotation: Any) -> str:
    if get_origin(annotation) in _UNIONS:
        return " or ".join(_describe(a) for a in get_args(annotation))
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and not get_args(annotation):
        return {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string",
                "list": "a list", "tuple": "a list", "dict": "an object"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value

