"""``crmflow automation ...``: validate, apply, list, activate, pause and preview automations.

Each command talks to the API at ``CRMFLOW_API_URL`` (default the dev stack's,
http://127.0.0.1:8000) with the key in ``CRMFLOW_API_KEY``; without one it
uses the dev stack's ``admin`` key from ``.crmflow/dev-api-keys.yml``. A
refused definition prints each problem with its place and exits 1.

    crmflow automation validate FILE
    crmflow automation apply FILE [--activate]
    crmflow automation list
    crmflow automation activate|pause|archive ID
    crmflow automation preview FILE --record R.json [--events E.json] [--days N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

DEV_KEYS = Path(".crmflow/dev-api-keys.yml")


class ApiError(Exception):
    """The API refused a request; ``problem`` is its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        self.status = status
        self.problem = problem


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``automation`` and its subcommands to the ``crmflow`` parser."""
    automation = commands.add_parser(
        "automation", help="validate, apply, list, preview automations"
    )
    verbs = automation.add_subparsers(dest="automation_command", required=True)
    verbs.add_parser("validate", help="check a definition file").add_argument("file", type=Path)
    apply = verbs.add_parser("apply", help="store a definition file as a new version")
    apply.add_argument("file", type=Path)
    apply.add_argument("--activate", action="store_true", help="and activate that version")
    verbs.add_parser("list", help="the automations and their states")
    for verb in ("activate", "pause", "archive"):
        verbs.add_parser(verb, help=f"{verb} an automation").add_argument("id")
    preview = verbs.add_parser("preview", help="the timeline of a sample record's run")
    preview.add_argument("file", type=Path)
    preview.add_argument("--record", type=Path, required=True, help="JSON: the record's fields")
    preview.add_argument("--events", type=Path, help="JSON: [{after, type, record, previous}]")
    preview.add_argument("--days", type=int, default=90, help="how far to look ahead")


def run(args: argparse.Namespace) -> int:
    """Run the ``automation`` subcommand in ``args``; the exit code."""
    try:
        return _run(args)
    except ApiError as err:
        errors = err.problem.get("errors", [])
        print(f"crmflow automation: {err.problem.get('title') if errors else err}", file=sys.stderr)
        for problem in errors:
            where = problem.get("pointer") or problem.get("field") or problem.get("loc") or "/"
            print(f"  {where}: {problem.get('message') or problem.get('msg')}", file=sys.stderr)
        return 1
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"crmflow automation: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    command = args.automation_command
    if command == "validate":
        _call("POST", "/v1/automations/validate", _document(args.file))
        print(f"{args.file}: valid")
    elif command == "apply":
        stored = _call("POST", "/v1/automations", _document(args.file))
        if args.activate:
            stored = _call("POST", f"/v1/automations/{stored['id']}/activate", {})
        version = stored.get("version") or stored.get("active_version")
        print(f"{stored['id']} version {version}: {stored.get('state')}")
    elif command == "list":
        listed = _call("GET", "/v1/automations")
        items = listed.get("items", listed) if isinstance(listed, dict) else listed
        for item in items:
            print(
                f"{item['id']}  {item.get('state')}  v{item.get('active_version') or '-'}"
                f"/{item.get('latest_version')}  {item.get('object')}  {item.get('name')}"
            )
    elif command in ("activate", "pause", "archive"):
        changed = _call("POST", f"/v1/automations/{args.id}/{command}", {})
        print(f"{args.id}: {changed.get('state')}")
    elif command == "preview":
        body: dict[str, Any] = {
            "definition": _document(args.file),
            "record": json.loads(args.record.read_text()),
            "events": json.loads(args.events.read_text()) if args.events else [],
            "horizon_days": args.days,
        }
        _print_preview(_call("POST", "/v1/automations/preview", body))
    return 0


def _print_preview(preview: dict[str, Any]) -> None:
    for entry in preview["timeline"]:
        detail = entry.get("detail", {})
        text = ", ".join(f"{k}={v!r}" for k, v in detail.items() if k != "body")
        print(f"{entry['local_time'][:19]}  {entry['step']:<24} {entry['action']:<8} {text}")
    print(
        f"outcome: {preview['outcome']}"
        + (f" ({preview['failure']})" if preview.get("failure") else "")
    )


def _document(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _call(method: str, path: str, body: Any = None) -> Any:
    url = os.environ.get("CRMFLOW_API_URL", "http://127.0.0.1:8000").rstrip("/") + path
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {_api_key()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            problem = json.loads(err.read())
        except ValueError:
            problem = {"title": f"HTTP {err.code}"}
        raise ApiError(err.code, problem) from None


def _api_key() -> str:
    if key := os.environ.get("CRMFLOW_API_KEY"):
        return key
    if DEV_KEYS.exists():
        keys = yaml.safe_load(DEV_KEYS.read_text()) or {}
        if "admin" in keys:
            return str(keys["admin"])
    raise ValueError("set CRMFLOW_API_KEY (an admin key), or run the dev stack for its admin key")
