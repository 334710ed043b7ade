"""Activities that keep CRM records and the audit trail of every process."""

from __future__ import annotations

from temporalio import activity

from crm.store.db import Database, insert_once, upsert
from crm.store.models import AuditEntry, Customer
from workflows.contracts import RECORD_STEP, UPSERT_CUSTOMER, AuditRecord, CustomerRecord


class RecordActivities:
    """Writes customer records and audit entries; both are safe to retry."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @activity.defn(name=RECORD_STEP)
    async def record_step(self, record: AuditRecord) -> bool:
        """Append one step to a process's audit trail; False when already recorded."""
        entry = AuditEntry(
            key=record.key, process_id=record.process_id, step=record.step, detail=record.detail
        )
        _, inserted = await self._database.run(lambda session: insert_once(session, entry))
        return inserted

    @activity.defn(name=UPSERT_CUSTOMER)
    async def upsert_customer(self, record: CustomerRecord) -> None:
        """Create the customer's record or overwrite it with ``record`` (idempotent)."""
        customer = Customer.model_validate({"customer_id": record.customer_id, **_fields(record)})
        await self._database.run(lambda session: upsert(session, customer))


def _fields(record: CustomerRecord) -> dict[str, object]:
    return {
        "company_name": record.company_name,
        "contact_name": record.contact_name,
        "contact_email": record.contact_email,
        "plan": record.plan,
        "stage": record.stage,
        "domain": record.domain,
        "industry": record.industry,
        "employees": record.employees,
        "country": record.country,
        "csm_id": record.csm_id,
    }
