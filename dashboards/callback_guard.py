"""Forged or malformed Dash callback requests get a 400 and one log line, never a 500 with a traceback.

The Dash renderer posts ``/_dash-update-component`` with a JSON body naming the callback (``output``), its inputs
and states (each an ``{id, property, value}``, or a list of them for a pattern such as ``ALL``), its outputs and
the changed properties. Dash trusts that body: a body that is not JSON, names an unknown callback or has the wrong
shape raises deep inside Dash. :func:`guard_callbacks` checks the shape against the app's callback map before Dash
sees it (after the sign-in and CSRF checks, which run first), and turns an exception a callback raises on a
value of the wrong type into a 400 as well: the callbacks that act (control, acknowledgements) check their values
themselves and answer with a message, but a chart callback fed a list where it expects a range name is a forged
request, not a server fault.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import dash
import flask
from dash.exceptions import PreventUpdate
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

ROUTE = "_dash-update-component"
MAX_ITEMS = 1000  # entries of one pattern input (ALL): far more than any page has


class BadCallback(ValueError):
    """A callback request whose body does not match the callback it names."""


def _entry(item: object, spec_id: str, prop: str, where: str) -> None:
    """One ``{id, property, value}`` entry against the registered id and property."""
    if not isinstance(item, dict):
        raise BadCallback(f"{where} is not an object")
    given_prop = item.get("property")
    # An output registered with allow_duplicate is sent as "children@<hash>".
    if given_prop != prop and not (where.startswith("outputs") and str(given_prop).startswith(prop + "@")):
        raise BadCallback(f"{where}.property is not {prop!r}")
    given = item.get("id")
    if spec_id.startswith("{"):  # a pattern id: the same keys as the registered pattern
        if not isinstance(given, dict) or set(given) != set(json.loads(spec_id)):
            raise BadCallback(f"{where}.id does not match the pattern {spec_id}")
        if not all(isinstance(v, str | int | float | bool) for v in given.values()):
            raise BadCallback(f"{where}.id has a value that is not a string or number")
    elif given != spec_id:
        raise BadCallback(f"{where}.id is not {spec_id!r}")


def _entries(items: object, specs: list[dict[str, str]], where: str) -> None:
    """A list of inputs (or states, or outputs) against the registered ones."""
    if not isinstance(items, list) or len(items) != len(specs):
        raise BadCallback(f"{where} is not a list of {len(specs)}")
    for i, (item, spec) in enumerate(zip(items, specs, strict=True)):
        sid, prop = str(spec["id"]), str(spec["property"])
        if isinstance(item, list):  # ALL / ALLSMALLER: a list of entries
            if not sid.startswith("{") or len(item) > MAX_ITEMS:
                raise BadCallback(f"{where}[{i}] is a list where one entry is expected")
            for j, sub in enumerate(item):
                _entry(sub, sid, prop, f"{where}[{i}][{j}]")
        else:
            _entry(item, sid, prop, f"{where}[{i}]")


def _output_specs(cb: dict[str, Any]) -> list[dict[str, str]]:
    outs = cb.get("output")
    outs = outs if isinstance(outs, list) else [outs]
    return [{"id": str(o.component_id_str()), "property": str(o.component_property)} for o in outs]


def check_body(body: object, callback_map: dict[str, dict[str, Any]]) -> None:
    """BadCallback naming the first field of a callback request that does not match a registered callback."""
    if not isinstance(body, dict):
        raise BadCallback("the body is not a JSON object")
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        raise BadCallback(f"output {str(output)[:80]!r} is no callback of this dashboard")
    cb = callback_map[output]
    _entries(body.get("inputs"), cb["inputs"], "inputs")
    _entries(body.get("state", []), cb["state"], "state")
    outs = _output_specs(cb)
    given = body.get("outputs")
    if cb.get("no_output"):
        pass
    elif isinstance(cb.get("output"), list):
        _entries(given, outs, "outputs")
    else:
        _entries([given], outs, "outputs")
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or len(changed) > MAX_ITEMS or not all(isinstance(c, str) for c in changed):
        raise BadCallback("changedPropIds is not a list of strings")


def _refuse(why: str) -> flask.Response:
    log.warning(
        "refused a malformed dashboard callback from %s: %s", flask.request.remote_addr, why.splitlines()[0][:200]
    )
    return flask.Response(f"bad callback request: {why}\n", status=400, mimetype="text/plain")


def guard_callbacks(app: dash.Dash) -> None:
    """Check every callback request's body before Dash runs it, and answer a callback's failure on it with a 400."""
    server = app.server

    @server.before_request
    def check() -> flask.typing.ResponseReturnValue | None:
        if flask.request.method != "POST" or not flask.request.path.endswith("/" + ROUTE):
            return None
        try:
            check_body(flask.request.get_json(silent=True), app.callback_map)
        except BadCallback as exc:
            return _refuse(str(exc))
        return None

    for endpoint, view in list(server.view_functions.items()):
        if endpoint.endswith(ROUTE):
            server.view_functions[endpoint] = _contained(view)


def _contained(view: Callable[..., Any]) -> Callable[..., Any]:
    """The dispatch view, with an exception raised by a callback on the request's values answered by a 400."""

    @functools.wraps(view)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except (PreventUpdate, HTTPException):
            raise
        except Exception as exc:
            log.debug("dashboard callback failure", exc_info=True)  # the traceback, with -vv only
            body = flask.request.get_json(silent=True)
            output = body.get("output") if isinstance(body, dict) else None
            return _refuse(f"callback {str(output)[:80]} failed on the request's values ({type(exc).__name__}: {exc})")

    return dispatch
