"""``aidc user``: manage dashboard accounts (hashed passwords in the site's users file)."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import Any

from aidc.config import load_site
from aidc.errors import AidcError
from dashboards.app import DashboardConfig
from dashboards.auth import Role, UserStore, random_password


def register(sub: Any) -> None:
    """Add ``user add``, ``user role``, ``user remove`` and ``user list``."""
    u = sub.add_parser("user", help="manage dashboard users (viewer, operator, admin)")
    usub = u.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    a = usub.add_parser("add", help="create a user or set a new password and role")
    a.add_argument("--config", type=Path, required=True, help="site file")
    a.add_argument("name", help="user name")
    a.add_argument("--role", default="viewer", help="viewer (default), operator or admin")
    a.add_argument("--password-env", help="read the password from this environment variable (else prompt)")
    a.add_argument("--generate", action="store_true", help="generate a random password and print it once")
    a.set_defaults(func=cmd_add)
    r = usub.add_parser("role", help="change a role (keeps the password; a running dashboard applies it at once)")
    r.add_argument("--config", type=Path, required=True, help="site file")
    r.add_argument("name", help="user name")
    r.add_argument("--role", required=True, help="viewer, operator or admin")
    r.set_defaults(func=cmd_role)
    rm = usub.add_parser("remove", help="delete a user (their dashboard sessions end at once)")
    rm.add_argument("--config", type=Path, required=True, help="site file")
    rm.add_argument("name", help="user name")
    rm.set_defaults(func=cmd_remove)
    ls = usub.add_parser("list", help="list users and roles")
    ls.add_argument("--config", type=Path, required=True, help="site file")
    ls.set_defaults(func=cmd_list)


def _store(config: Path) -> UserStore:
    site = load_site(config)
    return UserStore(DashboardConfig.from_site(site).users_path(site))


def cmd_add(args: argparse.Namespace) -> int:
    """Create or update one user."""
    role = Role.parse(args.role)
    if args.generate:
        password = random_password()
    elif args.password_env:
        password = os.environ.get(args.password_env, "")
        if not password:
            raise AidcError(f"--password-env: variable {args.password_env} is not set")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise AidcError("the two passwords differ")
    store = _store(args.config)
    store.add(args.name, password, role)
    print(f"user {args.name} ({role.label}) saved to {store.path}")
    if args.generate:
        print(f"password: {password}")
    return 0


def cmd_role(args: argparse.Namespace) -> int:
    """Change one user's role."""
    role = Role.parse(args.role)
    store = _store(args.config)
    store.set_role(args.name, role)
    print(f"user {args.name} is now {role.label} ({store.path})")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Delete one user."""
    store = _store(args.config)
    store.remove(args.name)
    print(f"user {args.name} removed from {store.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print every user and role."""
    store = _store(args.config)
    for name in store.names():
        user = store.get(name)
        print(f"{name}\t{user.role.label if user else '?'}")
    return 0
