"""SNMP settings of a device in the site file: v2c or v3 (USM), with every secret read from the environment.

The community string and the v3 keys are secrets: the site file names environment variables, never values, and
nothing here logs them. SNMPv3 without ``authPriv`` (authentication and privacy) is refused unless the operator sets
``allow_insecure``: a rack PDU's readings are not secret, but an unauthenticated reply is easily forged.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aidc.errors import ConfigError

_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SnmpSettings(BaseModel):
    """``[...snmp]`` of a device: version, credentials (by environment variable) and request limits."""

    model_config = ConfigDict(extra="forbid")

    version: Literal["2c", "3"] = "3"
    # v2c: the community comes from this environment variable (default "public" only if the variable is unset and
    # allow_insecure is set; a community is a password).
    community_env: str | None = Field(None, pattern=_ENV)
    # v3 (USM): user name, and the authentication / privacy passphrases from the environment.
    user: str | None = None
    auth_protocol: Literal["SHA", "SHA256", "SHA512"] = "SHA"
    priv_protocol: Literal["AES", "AES256"] = "AES"
    auth_key_env: str | None = Field(None, pattern=_ENV)
    priv_key_env: str | None = Field(None, pattern=_ENV)
    security_level: Literal["authPriv", "authNoPriv", "noAuthNoPriv"] = "authPriv"
    allow_insecure: bool = False
    retries: int = Field(0, ge=0, le=5)  # the link's poll interval is the retry; a retry doubles a poll's worst case

    @model_validator(mode="after")
    def _check(self) -> SnmpSettings:
        if self.version == "2c":
            if self.community_env is None and not self.allow_insecure:
                raise ValueError("SNMP v2c needs community_env (the community is a password, never in the file)")
            return self
        if not self.user:
            raise ValueError("SNMPv3 needs 'user'")
        if self.security_level != "authPriv" and not self.allow_insecure:
            raise ValueError(
                f"security_level {self.security_level!r} sends readings unauthenticated or in clear: use 'authPriv' "
                "or set allow_insecure = true"
            )
        if self.security_level != "noAuthNoPriv" and self.auth_key_env is None:
            raise ValueError(f"security_level {self.security_level!r} needs auth_key_env")
        if self.security_level == "authPriv" and self.priv_key_env is None:
            raise ValueError("security_level 'authPriv' needs priv_key_env")
        return self

    def secret(self, env: str | None, what: str, device: str) -> str:
        """The value of environment variable ``env``; ConfigError names the variable (never the value)."""
        if env is None:
            raise ConfigError(f"device {device}: snmp.{what} is not set")
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"device {device}: environment variable {env} (snmp {what}) is not set")
        if what in ("auth_key_env", "priv_key_env") and len(value) < 8:
            raise ConfigError(f"device {device}: {env} is shorter than 8 characters (RFC 3414 needs at least 8)")
        return value
