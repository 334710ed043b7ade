"""``crmflow dev`` with several workers and API processes against the one dev server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from devstack.stack import DevStackError, load_config, plan_services

REPO = Path(__file__).resolve().parents[2]


def stack_config(tmp_path: Path, **sections: dict[str, object]) -> Path:
    config = yaml.safe_load((REPO / "temporal-dev.yml").read_text())
    for name, values in sections.items():
        config[name].update(values)
    path = tmp_path / "temporal-dev.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_replicas_get_ports_of_their_own_and_share_the_server_queue_and_database(
    tmp_path: Path,
) -> None:
    path = stack_config(tmp_path, worker={"replicas": 3}, api={"replicas": 2})
    services = {s.name: s for s in plan_services(load_config(path), tmp_path)}

    workers = [services[name] for name in ("worker", "worker-2", "worker-3")]
    assert [w.env["CRMFLOW_WORKER_METRICS_ADDRESS"] for w in workers] == [
        "127.0.0.1:9464",
        "127.0.0.1:9465",
        "127.0.0.1:9466",
    ]
    assert [w.env["CRMFLOW_WORKER_HEALTH_ADDRESS"] for w in workers] == [
        "127.0.0.1:9474",
        "127.0.0.1:9475",
        "127.0.0.1:9476",
    ]
    apis = [services["api"], services["api-2"]]
    assert [a.ready_at for a in apis] == [("127.0.0.1", 8000), ("127.0.0.1", 8001)]
    assert [a.env["CRMFLOW_API_PORT"] for a in apis] == ["8000", "8001"]
    for service in [*workers, *apis]:
        assert service.env["CRMFLOW_TEMPORAL_ADDRESS"] == "127.0.0.1:7233"
        assert service.env["CRMFLOW_TASK_QUEUE"] == "crmflow"
        assert service.env["CRMFLOW_DATABASE_URL"] == "sqlite:///.crmflow/crm.db"
        assert service.env["CRMFLOW_API_REPLICAS"] == "2"


def test_replicas_whose_ports_would_collide_are_refused_naming_both(tmp_path: Path) -> None:
    path = stack_config(tmp_path, worker={"replicas": 12})  # metrics 9464..9475 meet health 9474
    with pytest.raises(DevStackError, match=r"worker.health_port \(replica 1\) and worker."):
        load_config(path)
    path = stack_config(tmp_path, api={"replicas": 2, "port": 8099})  # 8100: the enrichment
    with pytest.raises(DevStackError, match="8100"):
        load_config(path)
