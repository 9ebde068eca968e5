"""Where the CLI connects: flags, then environment, then a profile, then defaults (as ``yc``).

The profile file is TOML (``$LOADTEST_CORE_CONFIG``, else
``~/.config/loadtest-core/config.toml``)::

    profile = "local"            # the profile used when none is named

    [profiles.local]
    endpoint = "127.0.0.1:50051"
    token = "change-me"          # or token_file = "~/.config/loadtest-core/token"
    format = "table"             # table, json or yaml
    # ca_file = "ca.pem"         # TLS with this CA; tls = true for the system roots
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ENDPOINT", "Settings", "SettingsError", "config_path", "resolve"]

DEFAULT_ENDPOINT = "127.0.0.1:50051"
ENV_ENDPOINT = "LOADTEST_CORE_ENDPOINT"
ENV_TOKEN = "LOADTEST_CORE_TOKEN"
ENV_PROFILE = "LOADTEST_CORE_PROFILE"
ENV_CONFIG = "LOADTEST_CORE_CONFIG"
FORMATS = ("table", "json", "yaml")
_KEYS = {"endpoint", "token", "token_file", "format", "ca_file", "tls"}


class SettingsError(ValueError):
    """A setting that cannot be used; the message names where it came from and the fix."""


@dataclass(frozen=True)
class Settings:
    endpoint: str
    token: str | None
    format: str
    tls: bool
    ca_file: str | None
    profile: str | None


def config_path() -> Path:
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "loadtest-core" / "config.toml"


def _profile(name: str | None) -> tuple[str | None, dict[str, Any]]:
    path = config_path()
    if not path.exists():
        if name:
            raise SettingsError(f"profile {name!r}: no config file at {path}; create it")
        return None, {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from None
    chosen = name or data.get("profile")
    profiles = data.get("profiles", {})
    if chosen is None:
        return None, {}
    if not isinstance(profiles, dict) or chosen not in profiles:
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
        raise SettingsError(
            f"{path}: no profile {chosen!r}" + (f" (profiles: {known})" if known else "")
        )
    profile = profiles[chosen]
    if not isinstance(profile, dict):
        raise SettingsError(f"{path}: [profiles.{chosen}] must be a table")
    unknown = set(profile) - _KEYS
    if unknown:
        raise SettingsError(
            f"{path}: [profiles.{chosen}] has unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    return str(chosen), profile


def resolve(
    *,
    endpoint: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    format: str | None = None,
    tls: bool | None = None,
    ca_file: str | None = None,
) -> Settings:
    """Settings from flags (the arguments), the environment and the profile file, in that order."""
    name, values = _profile(profile or os.environ.get(ENV_PROFILE) or None)
    token = token or os.environ.get(ENV_TOKEN) or values.get("token")
    if token is None and values.get("token_file"):
        path = Path(str(values["token_file"])).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"token_file {path}: {exc.strerror}") from None
    if token is not None and (not token.strip() or token != token.strip()):
        raise SettingsError("the token is empty or has surrounding spaces; check --token")
    chosen_format = format or values.get("format") or "table"
    if chosen_format not in FORMATS:
        raise SettingsError(f"format {chosen_format!r}: use one of {', '.join(FORMATS)}")
    return Settings(
        endpoint=endpoint
        or os.environ.get(ENV_ENDPOINT)
        or values.get("endpoint")
        or DEFAULT_ENDPOINT,
        token=token,
        format=str(chosen_format),
        tls=bool(tls if tls is not None else values.get("tls", False)),
        ca_file=ca_file or values.get("ca_file"),
        profile=name,
    )
