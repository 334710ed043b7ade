"""The bodies ``/v1/automations`` takes and answers (``api.routes.automations``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.record_fields import FieldValue
from api.routes.records import RECORD_ID_PATTERN
from crm.store.models import Automation, AutomationVersion, as_utc

#: Records one bulk enrolment takes at most.
MAX_ENROLLMENTS = 500

VersionNumber = Annotated[int, Field(ge=1, le=2**31 - 1)]


class AutomationView(BaseModel):
    """An automation: its state and versions (``active_version`` enrols records)."""

    id: str
    name: str
    object: str
    state: str = Field(examples=["draft", "active", "paused", "archived"])
    latest_version: int
    active_version: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Automation) -> AutomationView:
        return cls(**view_fields(row))


class AutomationDetail(AutomationView):
    """An automation with one version's definition, as it was submitted."""

    version: int
    definition: dict[str, Any]
    version_created_at: datetime
    version_created_by: str

    @classmethod
    def of_version(cls, row: Automation, version: AutomationVersion) -> AutomationDetail:
        return cls(
            **view_fields(row),
            version=version.version,
            definition=version.document,
            version_created_at=as_utc(version.created_at),
            version_created_by=version.created_by,
        )


class VersionView(BaseModel):
    """One version of an automation."""

    version: int
    created_at: datetime
    created_by: str
    active: bool


class DefinitionValid(BaseModel):
    """The definition is valid (it was not stored)."""

    valid: bool = True


class Activation(BaseModel):
    """Which version to activate (default: the latest)."""

    model_config = ConfigDict(extra="forbid")

    version: VersionNumber | None = None


class EnrollRecord(BaseModel):
    """A record to enrol, with its current fields."""

    model_config = ConfigDict(extra="forbid")

    record_id: str = Field(pattern=RECORD_ID_PATTERN)
    record: dict[str, FieldValue] = Field(default_factory=dict)


class EnrollRequest(BaseModel):
    """Records to enrol in the automation, whatever its trigger (a backfill)."""

    model_config = ConfigDict(extra="forbid")

    records: list[EnrollRecord] = Field(min_length=1, max_length=MAX_ENROLLMENTS)


class SkippedRecord(BaseModel):
    """A record not enrolled: ``running`` (it has a run), ``ended`` (it may not enrol
    again), ``too-soon`` (not yet again) or ``id-taken``."""

    record_id: str
    reason: str


class Enrolled(BaseModel):
    """The runs started, and the records that were not enrolled."""

    enrolled: list[str]
    skipped: list[SkippedRecord]


def view_fields(row: Automation) -> dict[str, Any]:
    """The fields of ``AutomationView`` of ``row``."""
    return {
        "id": row.automation_id,
        "name": row.name,
        "object": row.object,
        "state": row.state,
        "latest_version": row.latest_version,
        "active_version": row.active_version,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }
