"""One-line messages for site-file validation errors: the file, the key path and the bad value.

``site.toml: control.mdoe: 'auto': unknown key (did you mean 'mode'?)`` — the operator finds the line without reading
a traceback. Shared by :mod:`aidc.config` (the whole file) and :mod:`aidc.site_tables` (command-line overrides).
"""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from aidc.errors import ConfigError


def decode_utf8(raw: bytes, source: str) -> str:
    """The text of a UTF-8 file; a ConfigError line naming the file and where its first invalid byte is.

    TOML files are UTF-8 (TOML 1.0, "Spec"); an editor that saved Latin-1 leaves bytes such as 0xE9 (é). The byte
    offset finds it with ``xxd`` or ``hexdump``; the line and column (in characters) find it in an editor.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8")) + 1  # valid up to the bad byte
        bad = " ".join(f"0x{b:02X}" for b in raw[exc.start : exc.end])
        raise ConfigError(
            f"{source}: not UTF-8 text: byte {bad} at offset {exc.start} (line {line}, column {column}): {exc.reason}"
        ) from None


def loc_text(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a key path: ``halls[0].racks[3].pdu.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: the type itself, an ``X | None`` member or a tuple/dict element."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, tuple, list, dict):
        args = get_args(annotation)
        for arg in args[1:] if origin is dict else args:
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _keys_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model found at ``loc`` under ``root`` (empty when the walk leaves the models)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue  # an element of a tuple of models: the model was already unwrapped
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _suggestion(root: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    if root is None or not loc or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], _keys_at(root, loc[:-1]), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_validation_error(
    source: str, exc: ValidationError, *, root: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()
) -> str:
    """One line naming the file, key path and bad value of the first validation error.

    ``root`` (the model validated) lets an unknown key suggest the nearest known one; ``prefix`` is the table the
    model was validated for (``("dashboard",)``), so the key path reads as in the file.
    """
    err = exc.errors()[0]
    raw_loc: tuple[int | str, ...] = tuple(err["loc"])
    loc = loc_text((*prefix, *raw_loc))
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] == "missing":
        parent, _, key = loc.rpartition(".")
        where = f"{parent}: " if parent else ""
        return f"{source}: {where}missing key {key!r}"
    if err["type"] == "extra_forbidden":
        hint = _suggestion(root, raw_loc)
        if isinstance(value, dict):
            return f"{source}: {loc}: unknown table{hint}"
        if isinstance(value, list):  # an array (of tables): its text would not fit on the line
            return f"{source}: {loc}: unknown key{hint}"
        return f"{source}: {loc}: {value!r}: unknown key{hint}"
    if err["type"] in ("value_error", "assertion_error") or isinstance(value, dict | list):
        return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"
    return f"{source}: {loc}: {value!r}: {msg}"
