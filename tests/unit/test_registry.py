"""The process registry: one descriptor per process, read by the API, the worker and the CLI."""

from __future__ import annotations

import sys

import pytest

from crm.policy import Policy
from devstack.cli import main as crmflow
from processes import PROCESSES, process_named, search_attributes, workflows
from processes.onboarding import ONBOARDING
from worker.main import WORKFLOWS
from workflows.common import SEARCH_ATTRIBUTES


def test_a_tenants_process_id_names_the_tenant_and_an_untenanted_one_keeps_todays_id() -> None:
    assert ONBOARDING.process_id("c-42") == "onboarding-c-42"
    assert ONBOARDING.process_id("c-42", "acme") == "onboarding-c-42@acme"
    assert ONBOARDING.process_id("c-42", "globex") != ONBOARDING.process_id("c-42", "acme")


@pytest.mark.parametrize("tenant", ["", "a/b", "a@b", "a b", "-lead"])
def test_a_tenant_name_that_cannot_be_part_of_an_id_is_refused(tenant: str) -> None:
    with pytest.raises(ValueError, match="cannot name a process id"):
        ONBOARDING.process_id("c-42", tenant)


def test_the_worker_registers_the_workflow_of_every_process_and_each_names_its_process() -> None:
    assert list(WORKFLOWS) == workflows()
    for process in PROCESSES:
        module = sys.modules[process.workflow.__module__]
        assert process.name == module.PROCESS_NAME
    sla = process_named("sla")
    assert sla is not None
    assert sla.workflow.__name__ == "TicketSlaWorkflow"
    assert process_named("nothing") is None


def test_every_process_started_through_the_api_says_how_its_input_is_built() -> None:
    policy = Policy()
    for process in PROCESSES:
        if process.start_path is not None:
            assert process.build is not None and process.request_model is not None
            assert process.request_model(policy).model_json_schema()["type"] == "object"


def test_the_registered_search_attributes_are_the_ones_every_server_must_know() -> None:
    assert {key.name for key in search_attributes()} == {key.name for key in SEARCH_ATTRIBUTES}


def test_crmflow_processes_lists_each_process_its_start_route_and_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert crmflow(["processes"]) == 0
    listed = capsys.readouterr().out
    assert "onboarding-<key>  Customer onboarding  (OnboardingWorkflow, POST /v1/onboardings)" in (
        listed
    )
    assert "event status_changed data: TicketStatusChanged" in listed
    assert "approval-<key>  Approval  (ApprovalWorkflow, started by processes)" in listed
