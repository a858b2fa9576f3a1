"""What the dashboard needs to know: the store, the service's live files, snapshots, and who may log in.

Read from the same site YAML as ``maskwatch serve`` (its ``store``,
``service.live_dir`` and ``dashboard`` sections), with the same defaults
relative to the service's ``--out`` folder, so one file describes the site.
The YAML is parsed here with small models because the dashboard must not
import the app (``maskwatch``); keys of the app's sections that the
dashboard does not use are ignored (the app validates them), while the
``dashboard`` section is the dashboard's own and rejects unknown keys.

Environment variables override the file, for deployments that inject them:
``MASKWATCH_CONFIG`` (the YAML), ``MASKWATCH_OUT`` (the service's ``--out``),
``MASKWATCH_STORE_URL``, ``MASKWATCH_LIVE_DIR`` and ``MASKWATCH_SNAPSHOT_DIR``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dashboard.clock import Clock, zone
from dashboard.passwords import check_encoded, session_key_problem

Role = Literal["operator", "viewer"]
DEFAULT_OUT = "serve-out"  # maskwatch serve's default --out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # never echo a hash into an error


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserConfig(_Strict):
    """One login: its role and its salted password hash (``python -m dashboard.auth hash``), never a password.

    The hash is given inline or, to keep it out of the file, as the name of an
    environment variable that holds it.
    """

    role: Role = "viewer"
    password_hash: str | None = None
    password_hash_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> UserConfig:
        if (self.password_hash is None) == (self.password_hash_env is None):
            raise ValueError("give exactly one of password_hash or password_hash_env")
        return self


class AuthConfig(_Strict):
    users: dict[str, UserConfig] = Field(default_factory=dict, description="Username → role and password hash.")
    session_hours: float = Field(12.0, gt=0, le=24 * 366, description="How long a login lasts, across reloads and tabs.")


class DashboardSection(_Strict):
    auth: AuthConfig = Field(default_factory=AuthConfig)
    stale_after_s: float = Field(5.0, gt=0, description="A camera whose status is older than this is shown as stale.")
    live_refresh_s: float = Field(0.3, gt=0, description="How often the Live page re-reads the latest frame.")
    timezone: str | None = Field(None, description="IANA zone every time is shown in (e.g. Europe/Berlin); default: the server's.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        zone(name)
        return name


class _StoreSection(_Lenient):
    url: str | None = None
    snapshot_dir: str | None = None


class _ServiceSection(_Lenient):
    live_dir: str = "live"


class _SiteFile(_Lenient):
    store: _StoreSection = Field(default_factory=_StoreSection)
    service: _ServiceSection = Field(default_factory=_ServiceSection)
    dashboard: DashboardSection = Field(default_factory=DashboardSection)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: object) -> object:
        """``dashboard:`` with nothing under it is a section left at its defaults, as the app reads it."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def can_edit(self) -> bool:
        """Operators acknowledge alarms and edit zones; viewers only look."""
        return self.role == "operator"


@dataclass(frozen=True)
class Settings:
    store_url: str
    live_dir: Path
    snapshot_dir: Path
    dashboard: DashboardSection = field(default_factory=DashboardSection)
    password_hashes: dict[str, str] = field(default_factory=dict, repr=False)  # username → encoded hash

    @property
    def auth_required(self) -> bool:
        return bool(self.password_hashes)

    @property
    def clock(self) -> Clock:
        """Times as the site reads them (``dashboard.timezone``)."""
        return Clock(zone(self.dashboard.timezone))

    def role(self, username: str) -> Role:
        return self.dashboard.auth.users[username].role


class SettingsError(ValueError):
    """A config problem, in one line naming the file and key."""


def _error_line(error: ValidationError, source: str) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{key}: {'unknown key' if item['type'] == 'extra_forbidden' else item['msg']}")
    return f"invalid dashboard config {source}: " + "; ".join(parts)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SettingsError(f"config {path} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is not None and not isinstance(data, dict):
        raise SettingsError(f"config {path} must be a mapping of sections")
    return data or {}


def _password_hashes(section: DashboardSection, env: Mapping[str, str]) -> dict[str, str]:
    hashes = {}
    for name, user in section.auth.users.items():
        if user.password_hash_env is not None:
            if not env.get(user.password_hash_env):
                raise SettingsError(f"dashboard.auth.users.{name}: environment variable {user.password_hash_env} is not set")
            hashes[name] = env[user.password_hash_env]
        else:
            hashes[name] = user.password_hash
    for name, encoded in hashes.items():
        problem = check_encoded(encoded)
        if problem:
            raise SettingsError(f"dashboard.auth.users.{name}: {problem}")
    if hashes and session_key_problem(env):
        raise SettingsError(session_key_problem(env))
    return hashes


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``streamlit run dashboard/app.py -- --config site.yaml [--out serve-out]``."""
    parser = argparse.ArgumentParser(prog="dashboard", allow_abbrev=False)
    parser.add_argument("--config", type=Path, help="Site YAML (store, service.live_dir, dashboard sections).")
    parser.add_argument("--out", type=Path, help="The service's --out folder (default serve-out).")
    return parser.parse_args(list(argv))


def load_settings(argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Settings:
    """Settings from command-line arguments, environment variables and the YAML, in that order of precedence."""
    env = os.environ if env is None else env
    args = parse_args(argv)
    config = args.config or (Path(env["MASKWATCH_CONFIG"]) if env.get("MASKWATCH_CONFIG") else None)
    out = args.out or Path(env.get("MASKWATCH_OUT") or DEFAULT_OUT)
    data = _read_yaml(config) if config is not None else {}
    try:
        site = _SiteFile.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_error_line(exc, str(config))) from None
    live_dir = Path(env.get("MASKWATCH_LIVE_DIR") or site.service.live_dir)
    snapshot_dir = env.get("MASKWATCH_SNAPSHOT_DIR") or site.store.snapshot_dir
    return Settings(
        store_url=env.get("MASKWATCH_STORE_URL") or site.store.url or f"sqlite:///{(out / 'maskwatch.db').resolve()}",
        live_dir=live_dir if live_dir.is_absolute() else out / live_dir,  # as the service resolves it
        snapshot_dir=Path(snapshot_dir) if snapshot_dir else out / "snapshots",
        dashboard=site.dashboard,
        password_hashes=_password_hashes(site.dashboard, env),
    )
