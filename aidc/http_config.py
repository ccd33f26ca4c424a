"""Site-file tables of the HTTP sources: DCGM exporter pages (``dcgm``) and Redfish services (``redfish``).

Secrets are never in the file: a Redfish password comes from the environment variable ``password_env``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_http_url(v: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``v`` if it is an absolute URL with one of ``schemes``, a host and a port; ValueError otherwise."""
    try:
        u = urlsplit(v)
        port = u.port
    except ValueError:
        raise ValueError(f"{v!r} is not a URL") from None
    if u.scheme not in schemes or not u.hostname:
        raise ValueError(f"{v!r} is not a {'/'.join(schemes)} URL (e.g. {schemes[0]}://10.0.0.5:9400/metrics)")
    if port is None:
        raise ValueError(f"{v!r}: name the port explicitly (e.g. {schemes[0]}://{u.hostname}:9400{u.path or '/'})")
    return v


class DcgmOptions(_Strict):
    """NVIDIA dcgm-exporter pages feeding one rack: the pages to scrape and which hosts on them are the rack's.

    ``urls``: one page per host (dcgm-exporter runs on every GPU server) or one federated page for many hosts.
    ``hostnames``: the ``Hostname`` label values of the rack's servers, in rack order; empty takes every series on
    the pages. The rack's GPU array is ordered by host (this order, else page order) and then by the ``gpu`` label.
    """

    urls: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    trusted_server_certs: tuple[Path, ...] = ()  # https pages: pinned certificates (else pinned on first use)

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for u in v:
            check_http_url(u)
        if len(set(v)) != len(v):
            raise ValueError(f"{list(v)} lists a page twice")
        return v

    @field_validator("hostnames")
    @classmethod
    def _hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v) or any(not h for h in v):
            raise ValueError(f"{list(v)}: host names must be distinct and non-empty")
        return v


class RedfishOptions(_Strict):
    """A Redfish service (BMC, rack manager or CDU controller): resource id, login and certificate pinning.

    ``id``: the member id of the device's resource (Chassis ``/redfish/v1/Chassis/<id>``, CDU
    ``/redfish/v1/ThermalEquipment/CDUs/<id>``); default the device name. ``auth``: a Redfish session (POST
    ``SessionService/Sessions``, then ``X-Auth-Token``) or HTTP basic auth on every request. The server's
    certificate is pinned like an OPC-UA server's: listed in ``trusted_server_certs``, else trusted on first use.
    """

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    auth: Literal["session", "basic"] = "session"
    username: str | None = None
    password_env: str | None = None
    trusted_server_certs: tuple[Path, ...] = ()
    max_in_flight: int = Field(2, ge=1, le=16)  # requests at once to this service (BMCs are slow and small)
    # Plain http sends the password in clear: refused unless set explicitly.
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _check(self) -> RedfishOptions:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (the password is never in the file)")
        return self
