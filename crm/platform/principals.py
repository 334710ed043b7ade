"""Who calls the API: principals, their roles, and the API keys that identify them.

An API key looks like ``crm_<key id>_<secret>``. Only its SHA-256 hash is
stored (the secret has 256 bits of entropy, so a fast hash is enough; there
is nothing to brute-force). Keys live in a YAML file (``CRMFLOW_API_KEYS_FILE``,
for keys managed as configuration) and in the ``api_keys`` table (keys made
with ``crmflow api-key create``). A principal may hold several keys, which is
how a key is rotated: create the new one, switch the caller, revoke the old.

Roles:
- ``service``: start processes and send them events (backend services);
- ``support``: read processes, tasks and approvals, cancel processes, decode
  payloads in the Web UI;
- ``approver``: list and decide the approvals assigned or delegated to the
  staff member the key belongs to (``staff_id``);
- ``admin``: define, activate, pause and archive automations, and enrol
  records in them by hand.
A principal with a ``tenant`` only sees the processes and automations of that
tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Role = Literal["service", "support", "approver", "admin"]
ROLES: tuple[Role, ...] = ("service", "support", "approver", "admin")

_KEY = re.compile(r"^crm_([a-z0-9]{8,32})_([A-Za-z0-9_-]{20,})$")


class ApiKeyError(ValueError):
    """The API keys file is unreadable or invalid."""


#: A tenant's name is part of the ids of the runs it starts (``onboarding-c-42@acme``).
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    id: str
    roles: frozenset[str]
    staff_id: str | None = None
    tenant: str | None = None

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


class ApiKeyRecord(BaseModel):
    """A stored API key: its id, the hash of the whole key, and whom it identifies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[a-z0-9]{8,32}$")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    principal: str = Field(min_length=1, max_length=100)
    roles: tuple[Role, ...] = Field(min_length=1)
    staff_id: str | None = None
    tenant: str | None = Field(default=None, pattern=TENANT_PATTERN)

    @model_validator(mode="after")
    def _approver_is_staff(self) -> ApiKeyRecord:
        if "approver" in self.roles and not self.staff_id:
            raise ValueError(f"key {self.key_id}: an approver key needs the staff_id it decides as")
        return self

    def principal_of(self) -> Principal:
        return Principal(self.principal, frozenset(self.roles), self.staff_id, self.tenant)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, or None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def matches(record: ApiKeyRecord, key: str) -> bool:
    """Whether ``key`` is the key ``record`` stores (constant-time)."""
    return hmac.compare_digest(record.key_sha256, hash_key(key))


def new_api_key(
    principal: str,
    roles: tuple[Role, ...],
    *,
    staff_id: str | None = None,
    tenant: str | None = None,
) -> tuple[str, ApiKeyRecord]:
    """A fresh key (shown once, never stored) and the record to store for it."""
    key_id = secrets.token_hex(6)
    key = f"crm_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        key_id=key_id,
        key_sha256=hash_key(key),
        principal=principal,
        roles=roles,
        staff_id=staff_id,
        tenant=tenant,
    )
    return key, record


def load_api_keys_file(path: Path | None) -> dict[str, ApiKeyRecord]:
    """The keys in ``path`` by key id (none without a path); raises ApiKeyError naming the fault."""
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ApiKeyError(f"cannot read API keys file {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ApiKeyError(f"API keys file {path} is not valid YAML: {err}") from err
    entries = raw.get("keys", []) if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ApiKeyError(f"API keys file {path} must hold a 'keys:' list")
    records: dict[str, ApiKeyRecord] = {}
    for index, entry in enumerate(entries):
        try:
            record = ApiKeyRecord.model_validate(entry)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
            )
            raise ApiKeyError(f"{path}: keys[{index}]: {problems}") from err
        if record.key_id in records:
            raise ApiKeyError(f"{path}: key id {record.key_id} appears twice")
        records[record.key_id] = record
    return records


def write_api_keys_file(path: Path, records: list[ApiKeyRecord]) -> None:
    """Write ``records`` (hashes only) to ``path``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(
        yaml.safe_dump({"keys": [r.model_dump(exclude_none=True, mode="json") for r in records]})
    )
