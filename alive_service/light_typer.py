"""Typer without pydantic for plain parameters: the `alive` client's start-up.

Typer (0.2x) coerces every parameter of the command being run through a pydantic
TypeAdapter, so the first command line it parses imports pydantic and builds one adapter per
parameter: ~0.17 s of CPU for the import alone, most of what `alive animate` spent before it
sent the photo (the 17 parameters of animate took ~0.25 s together on this machine). The
parameters our commands use are plain (str, int, float, Path, those or None, lists of str);
``install`` gives those the same coercion without pydantic, and leaves anything else (choices,
ranges, custom parsers, files, dates) to typer. If a typer release moves the hook it uses, the
install does nothing and typer coerces as before (tests/test_client_startup.py notices).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

_PLAIN = (str, int, float, bool)
# How pydantic (lax mode) reads a bool from text; "" is False, as typer makes it.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"", "0", "off", "f", "false", "n", "no"})
# pydantic's words for a value that does not parse, which typer shows.
_INVALID = {
    bool: "Input should be a valid boolean, unable to interpret input",
    int: "Input should be a valid integer, unable to parse string as an integer",
    float: "Input should be a valid number, unable to parse string as a number",
}


class _Plain:
    """typer's RuntimeParam contract (``coerce(value, param, ctx)``) for one plain type."""

    def __init__(self, kind: type, info: Any, many: bool) -> None:
        self.kind, self.info, self.many = kind, info, many

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        from typer._click.exceptions import BadParameter

        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if multi and isinstance(value, str):
            raise BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        if self.many:
            return [self._one(item, param, ctx) for item in value]
        return self._one(value, param, ctx)

    def _one(self, value: Any, param: Any, ctx: Any) -> Any:
        from typer._click.exceptions import BadParameter

        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if self.kind is Path:
            from typer._param_types import coerce_cli_path

            return coerce_cli_path(value if isinstance(value, Path) else Path(value), self.info,
                                   path_type=Path, param=param, ctx=ctx)
        if self.kind is str:
            return str(value)
        if self.kind is bool and isinstance(value, str) and value.strip().lower() in _TRUE:
            return True
        if self.kind is bool and isinstance(value, str) and value.strip().lower() in _FALSE:
            return False
        if isinstance(value, self.kind) and (self.kind is bool or not isinstance(value, bool)):
            return value
        if self.kind is bool:
            raise BadParameter(_INVALID[bool], ctx=ctx, param=param)
        try:
            return self.kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise BadParameter(_INVALID[self.kind], ctx=ctx, param=param) from None


def _plain(annotation: Any, info: Any) -> _Plain | None:
    """The coercer for a plain annotation, or None (typer's own coercion applies)."""
    if getattr(info, "parser", None) is not None or getattr(info, "min", None) is not None \
            or getattr(info, "max", None) is not None:
        return None
    many = typing.get_origin(annotation) is list
    if many:
        (annotation,) = typing.get_args(annotation) or (None,)
        if annotation is not str:
            return None
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if annotation is Path:
        # coerce_cli_path applies exists, file_okay, dir_okay, readable, ... as typer does.
        if getattr(info, "path_type", None) not in (None, Path):
            return None
        return _Plain(Path, info, many)
    if annotation in _PLAIN:
        return _Plain(annotation, info, many)
    return None


def install() -> None:
    """Coerce plain parameters without pydantic in this process (idempotent)."""
    try:
        from typer.core import _TyperParameter
    except ImportError:
        return
    original = getattr(_TyperParameter, "get_runtime_param", None)
    if original is None or getattr(original, "_light", False):
        return

    def get_runtime_param(self: Any) -> Any:
        if getattr(self, "_runtime_param", None) is None:
            descriptor = self.type_descriptor
            light = None
            if descriptor.file_annotation is None:
                light = _plain(descriptor.annotation, descriptor.parameter_info)
            self._runtime_param = light or original(self)
        return self._runtime_param

    get_runtime_param._light = True  # type: ignore[attr-defined]
    _TyperParameter.get_runtime_param = get_runtime_param
