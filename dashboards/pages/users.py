"""User administration (admin role): list users and roles, add a user, change a role, reset a password, delete.

The role is checked on the server in the layout and in every callback (a hidden link or a disabled button is not
protection: a viewer can forge the callback request). Passwords are hashed by :class:`dashboards.auth.UserStore`
(werkzeug's scrypt); the store refuses to delete or demote the last admin. Every action, done or refused, is
appended to ``<data_dir>/audit/users.jsonl`` with who, when (wall clock, UTC) and what, never a password.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from aidc.errors import AidcError
from dashboards.auth import Role, UserStore, random_password
from dashboards.data import DashboardData
from dashboards.fmt import site_time
from dashboards.supervisor import read_jsonl_tail
from dashboards.web import current_user

log = logging.getLogger(__name__)

AUDIT_FILE = Path("audit") / "users.jsonl"
ROLES = [{"label": r.label, "value": r.label} for r in Role]
ACTIONS = ("add", "role", "password", "delete")


def is_admin() -> bool:
    """Whether the current request's user is an admin *now* (role read from the users file)."""
    who = current_user()
    return who is not None and who[1] >= Role.ADMIN


def audit(data_dir: Path, actor: str, action: str, target: str, *, ok: bool, detail: str = "") -> None:
    """Append one user-administration event to the audit file (never a password)."""
    path = data_dir / AUDIT_FILE
    target = target[:64]  # user names are at most 64 characters; a forged one is cut, not stored whole
    entry = {"ts_ns": time.time_ns(), "user": actor, "action": f"user {action}", "target": target, "ok": ok}
    if detail:
        entry["detail"] = detail
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
    except OSError as exc:
        log.error("cannot append to the user audit %s: %s", path, exc.strerror)
    log.info("user admin: %s %s %s (%s)", actor, action, target, "done" if ok else f"refused: {detail}")


def apply(
    users: UserStore, data_dir: Path, actor: str, action: str, name: object, role: object, password: object
) -> str:
    """Carry out one admin action for ``actor`` (already checked to be an admin) and audit it; the message to show.

    An empty password for ``add`` or ``password`` generates a random one, shown once in the message.
    """
    if action not in ACTIONS:
        return f"unknown action {action!r}"
    if not isinstance(name, str) or not name:
        return "Choose a user name."
    generated = ""
    secret = password if isinstance(password, str) else ""
    try:
        if action in ("add", "password"):
            if password is not None and not isinstance(password, str):
                raise AidcError("password: text expected")
            if not secret:
                secret = generated = random_password()
        if action in ("add", "role"):
            if not isinstance(role, str):
                raise AidcError("role: choose viewer, operator or admin")
            parsed = Role.parse(role)
        if action == "add":
            users.add(name, secret, parsed, replace=False)
            done = f"user {name} added as {parsed.label}"
        elif action == "role":
            users.set_role(name, parsed)
            done = f"user {name} is now {parsed.label}"
        elif action == "password":
            users.set_password(name, secret)
            done = f"new password set for {name} (their sessions have ended)"
        else:
            users.remove(name)
            done = f"user {name} deleted (their sessions have ended)"
    except AidcError as exc:
        audit(data_dir, actor, action, name, ok=False, detail=str(exc))
        return f"Refused: {exc}"
    audit(data_dir, actor, action, name, ok=True, detail=f"role {role}" if action in ("add", "role") else "")
    return done + (f"; generated password (shown only now): {generated}" if generated else "")


def users_table(users: UserStore) -> html.Table:
    """Every user and role."""
    rows = [html.Tr([html.Td(u.name), html.Td(u.role.label)]) for u in users.users()]
    head = html.Tr([html.Th("user"), html.Th("role")])
    return html.Table([html.Thead(head), html.Tbody(rows)], className="simple", id="us-table")


def audit_rows(data: DashboardData, limit: int = 50) -> html.Table:
    """The latest user-administration events, newest first, in site time."""
    tz = data.site.config.site.timezone
    entries = list(reversed(read_jsonl_tail(data.data_dir / AUDIT_FILE, limit)))
    rows = [
        html.Tr(
            [
                html.Td(site_time(int(e.get("ts_ns", 0)), tz, "%Y-%m-%d %H:%M:%S")),
                html.Td(str(e.get("user", ""))),
                html.Td(str(e.get("action", ""))),
                html.Td(str(e.get("target", ""))),
                html.Td("done" if e.get("ok") else f"refused: {e.get('detail', '')}"),
            ]
        )
        for e in entries
    ]
    head = html.Tr([html.Th(h) for h in ("time", "by", "action", "user", "result")])
    return html.Table([html.Thead(head), html.Tbody(rows)], className="simple", id="us-audit")


def layout(data: DashboardData, users: UserStore) -> html.Div:
    """The page for an admin; anybody else gets a refusal (the content is never sent)."""
    if not is_admin():
        return html.Div("User administration needs an admin sign-in.", className="msg", id="us-refused")
    names = [{"label": n, "value": n} for n in users.names()]

    def field(label: str, comp: Any) -> html.Label:
        return html.Label([label, comp], style={"display": "block", "marginBottom": ".4em"})

    return html.Div(
        [
            html.Div(id="us-msg", className="msg"),
            html.Div(
                [
                    html.Div(
                        [html.H3("Users and roles"), html.Div(users_table(users), id="us-list")], className="panel"
                    ),
                    html.Div(
                        [
                            html.H3("Add a user"),
                            field(" name ", dcc.Input(id="us-new-name", type="text", maxLength=64)),
                            field(" role ", dcc.Dropdown(ROLES, "viewer", id="us-new-role", clearable=False)),
                            field(
                                " password (empty: generate one) ",
                                dcc.Input(id="us-new-pw", type="password", autoComplete="new-password"),
                            ),
                            html.Button("Add user", id="us-add"),
                        ],
                        className="panel",
                    ),
                ],
                className="grid2",
            ),
            html.Div(
                [
                    html.H3("Change a user"),
                    field(" user ", dcc.Dropdown(names, None, id="us-name", clearable=False)),
                    field(" role ", dcc.Dropdown(ROLES, None, id="us-role", clearable=False)),
                    html.Button("Change role", id="us-set-role"),
                    field(
                        " new password (empty: generate one) ",
                        dcc.Input(id="us-pw", type="password", autoComplete="new-password"),
                    ),
                    html.Button("Reset password", id="us-reset"),
                    html.Span(" "),
                    dcc.ConfirmDialogProvider(
                        html.Button("Delete user", id="us-delete-btn"),
                        id="us-delete",
                        message="Delete this user? Their sessions end at once.",
                    ),
                ],
                className="panel",
            ),
            html.Div(
                [html.H3("User administration audit"), html.Div(audit_rows(data), id="us-audit-box")], className="panel"
            ),
        ]
    )


def register(app: dash.Dash, data: DashboardData, users: UserStore) -> None:
    """The page's callbacks: every one checks the admin role on the server."""
    buttons: dict[str, str] = {"us-add": "add", "us-set-role": "role", "us-reset": "password", "us-delete": "delete"}

    @app.callback(
        Output("us-msg", "children"),
        Output("us-list", "children"),
        Output("us-audit-box", "children"),
        Output("us-name", "options"),
        Input("us-add", "n_clicks"),
        Input("us-set-role", "n_clicks"),
        Input("us-reset", "n_clicks"),
        Input("us-delete", "submit_n_clicks"),
        State("us-new-name", "value"),
        State("us-new-role", "value"),
        State("us-new-pw", "value"),
        State("us-name", "value"),
        State("us-role", "value"),
        State("us-pw", "value"),
        prevent_initial_call=True,
    )
    def act(
        _a: object,
        _r: object,
        _p: object,
        _d: object,
        new_name: object,
        new_role: object,
        new_pw: object,
        name: object,
        role: object,
        pw: object,
    ) -> tuple[Any, Any, Any, Any]:
        action = buttons.get(str(dash.ctx.triggered_id))
        message = run_action(users, data.data_dir, action, new_name, new_role, new_pw, name, role, pw, current_user)
        if message is None:
            return dash.no_update, dash.no_update, dash.no_update, dash.no_update
        options = [{"label": n, "value": n} for n in users.names()]
        return message, users_table(users), audit_rows(data), options


def run_action(
    users: UserStore,
    data_dir: Path,
    action: str | None,
    new_name: object,
    new_role: object,
    new_pw: object,
    name: object,
    role: object,
    pw: object,
    who: Callable[[], tuple[str, Role] | None],
) -> str | None:
    """The server-side check and dispatch of one button: None when no button fired, a refusal for a non-admin."""
    if action is None:
        return None
    signed = who()
    if signed is None or signed[1] < Role.ADMIN:
        actor = signed[0] if signed else "?"
        audit(data_dir, actor, action, str(new_name if action == "add" else name), ok=False, detail="not an admin")
        return "User administration needs an admin sign-in."
    if action == "add":
        return apply(users, data_dir, signed[0], action, new_name, new_role, new_pw)
    return apply(users, data_dir, signed[0], action, name, role, pw)
