"""How a data command gets its answer: from the running main job's API, or from the store when no job holds it.

A command describes its question once as an :class:`Ask`: the API route that answers it and the same computation
(a function of :mod:`analytics.answers`) to run on a historian it opens itself. The composition root hands the
command an :class:`Answerer` (``app.remote.answer``) that picks the path; without one (a command module driven
directly) the store is opened here. Either way the answer is JSON text parsed back, so both paths print alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from aidc.errors import AidcError

if TYPE_CHECKING:
    from aidc.config import Site
    from historian import Historian

Params = Mapping[str, str | int | float | bool | None]
T = TypeVar("T")


@dataclass(frozen=True)
class Ask:
    """One question: the job's route (under ``/api/v1``) that answers it, and the computation run on a local store."""

    method: Literal["GET", "POST"]
    path: str
    local: Callable[[Historian], Any]
    params: Params = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    timeout_s: float = 120.0  # fitting a forecast or rendering a PDF report takes a while on a busy host


class Answerer(Protocol):
    """Answers an :class:`Ask` for a site (JSON-ready value, or AidcError with one line)."""

    def __call__(self, site: Site, ask: Ask) -> Any:
        """The answer."""
        ...


def answer_locally(site: Site, ask: Ask) -> Any:
    """Open the site's historian, compute, close; a store locked by another process is one line, not a traceback."""
    import duckdb

    from historian import open_historian

    try:
        hist = open_historian(site.config.historian, site.data_dir)
    except duckdb.IOException as exc:
        raise AidcError(
            f"the historian under {site.data_dir} is held by another process and no aidc job answers for it "
            f"(no live {site.data_dir / 'api-local.json'}): {str(exc).splitlines()[0]}"
        ) from None
    with hist:
        value = ask.local(hist)
    # The same JSON round trip as an API answer: both paths hand the command identical values.
    return json.loads(json.dumps(value, allow_nan=False))


def answerer(args: argparse.Namespace) -> Answerer:
    """The answerer the ``aidc`` entry point set on ``args``; the local store when a command runs without it."""
    found = getattr(args, "answer", None)
    return answer_locally if found is None else found


def rebuild(cls: type[T], data: Mapping[str, Any], **given: Any) -> T:
    """A dataclass back from its JSON form (keys that are not fields are skipped; ``given`` wins).

    JSON has no NaN: a null in a field typed plain ``float`` was NaN and becomes NaN again, so a table prints
    from an API answer exactly as from the local computation.
    """
    names = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in data.items() if k in names}
    for k, v in values.items():
        if v is None and names[k] in ("float", float):
            values[k] = math.nan
    return cls(**{**values, **given})
