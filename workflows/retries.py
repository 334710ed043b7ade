"""Retry policies every process uses for the same kind of activity.

Spelled out once so that an email, a database write or an enrichment call is
retried the same way whichever process makes it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

#: Database writes: retry until the database is back; nothing may be lost.
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
#: SMTP: retry through outages; a refused recipient or bad template is final.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=["InvalidInput", "RecipientRejected"],
)
#: Enrichment is nice to have: a few tries, then go on with partial data.
ENRICH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["InvalidInput", "CompanyNotFound", "EnrichmentRejected"],
)
#: Staff look-ups read the policy: an unknown id will not appear on retry.
LOOKUP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["InvalidInput"],
)
#: Offering a process's outcome to automations: through outages, but the event's id
#: standing for another event will not change on retry.
OFFER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["EventRefused"],
)
#: Starting a process: retried while Temporal is away; a body the process refuses is final.
START_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["InvalidStart", "ProcessIdTaken"],
)
#: An automation's HTTP call: through an endpoint's outages (the call's ``schedule_to_close``
#: bounds them), but a refusal, an address inside the network or no signing secret is final.
HTTP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["HttpRefused", "UrlRefused", "HttpNotConfigured"],
)
#: A round is retried through database and worker outages, without end: nothing is lost.
ROUND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
