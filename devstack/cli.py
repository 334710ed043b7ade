"""The ``crmflow`` command: run the local stack or one of its parts, read its mail.

    crmflow dev                 the whole stack from temporal-dev.yml (Ctrl-C stops it)
    crmflow worker              the Temporal worker
    crmflow api                 the HTTP API
    crmflow smtp-sink           the local SMTP sink
    crmflow enrichment-provider the local enrichment provider
    crmflow webhook-sink        the local webhook receiver
    crmflow mail [N|ID]         list the sink's messages, or show one
    crmflow mail --html N       a message's HTML part on stdout, its checks on stderr
    crmflow webhooks [ID]       list the webhook deliveries the webhook sink received, or show one
    crmflow codec-key ID        print a new payload encryption key for CRMFLOW_CODEC_KEYS
    crmflow api-key create|list|revoke   manage API keys in the database
    crmflow processes           the registered processes: ids, start routes, events
    crmflow rollout status|ramp|current|drained   move runs to a new worker version
    crmflow automation validate|apply|list|activate|pause|archive|preview   (through the API)

Every part reads its settings from ``CRMFLOW_*`` environment variables.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from crm.platform.principals import ROLES
from devstack import automation_cli, rollout_cli

DEFAULT_MAILDIR = Path(".crmflow/mail")
DEFAULT_STATE = Path(".crmflow")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="start, supervise and stop the whole local stack")
    dev.add_argument("--config", type=Path, default=Path("temporal-dev.yml"))

    commands.add_parser("worker", help="run the Temporal worker")
    commands.add_parser("api", help="run the HTTP API")

    sink = commands.add_parser("smtp-sink", help="run the local SMTP sink")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=1025)
    sink.add_argument("--maildir", type=Path, default=DEFAULT_MAILDIR)

    provider = commands.add_parser("enrichment-provider", help="run the local enrichment provider")
    provider.add_argument("--host", default="127.0.0.1")
    provider.add_argument("--port", type=int, default=8100)
    provider.add_argument("--rate", type=float, default=5.0, help="requests per second per key")
    provider.add_argument("--burst", type=int, default=10)
    provider.add_argument("--api-key", default=None)

    webhook_sink = commands.add_parser("webhook-sink", help="run the local webhook receiver")
    webhook_sink.add_argument("--host", default="127.0.0.1")
    webhook_sink.add_argument("--port", type=int, default=8025)
    webhook_sink.add_argument("--state", type=Path, default=DEFAULT_STATE)

    mail = commands.add_parser("mail", help="list the messages in the SMTP sink, or show one")
    mail.add_argument("message", nargs="?", help="number in the list, or Message-ID")
    mail.add_argument("--to", help="only messages to this address")
    mail.add_argument("--maildir", type=Path, default=DEFAULT_MAILDIR)
    mail.add_argument("--html", action="store_true", help="print its HTML part, checks to stderr")

    webhooks = commands.add_parser(
        "webhooks", help="list the deliveries the webhook sink got, or show one"
    )
    webhooks.add_argument(
        "delivery", nargs="?", help="a webhook-id from the list: show its headers and body"
    )
    webhooks.add_argument("--path", help="only deliveries to this path, e.g. /hooks/crm")
    webhooks.add_argument("--limit", type=int, default=20, help="how many of the newest")
    webhooks.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the sink's --state")
    api_key = commands.add_parser("api-key", help="create, list or revoke API keys")
    api_key_commands = api_key.add_subparsers(dest="api_key_command", required=True)
    create = api_key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("principal", help="who the key belongs to, e.g. svc-billing")
    create.add_argument("--role", action="append", required=True, choices=list(ROLES))
    create.add_argument("--staff-id", help="the staff member an approver key decides as")
    create.add_argument("--tenant", help="limit the key to one tenant's processes")
    api_key_commands.add_parser("list", help="list keys (ids and owners, never secrets)")
    revoke = api_key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")

    commands.add_parser("processes", help="list the registered processes and their events")

    key = commands.add_parser("codec-key", help="print a new payload encryption key")
    key.add_argument("key_id", help="a name for the key, e.g. 2026-11")
    automation_cli.add_parser(commands)
    rollout_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv``; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "dev":
        from devstack.stack import run_dev_stack

        return run_dev_stack(args.config)
    if args.command == "worker":
        from worker.main import main as worker_main

        worker_main()
    elif args.command == "api":
        from api.main import main as api_main

        api_main()
    elif args.command == "smtp-sink":
        from devstack.mailsink import serve as serve_mail

        serve_mail(args.host, args.port, args.maildir)
    elif args.command == "enrichment-provider":
        from devstack.enrichment_provider import serve as serve_provider

        logging.basicConfig(level=logging.INFO)
        serve_provider(
            args.host, args.port, rate_per_second=args.rate, burst=args.burst, api_key=args.api_key
        )
    elif args.command == "webhook-sink":
        from devstack.webhook_sink import serve as serve_webhooks

        serve_webhooks(args.host, args.port, args.state)
    elif args.command == "webhooks":
        from devstack.webhook_sink import print_deliveries, print_delivery

        if args.delivery is not None:
            return print_delivery(args.state, args.delivery)
        print_deliveries(args.state, path=args.path, limit=args.limit)
    elif args.command == "api-key":
        import asyncio

        return asyncio.run(_api_key(args))
    elif args.command == "processes":
        _print_processes()
    elif args.command == "automation":
        return automation_cli.run(args)
    elif args.command == "rollout":
        return rollout_cli.run(args)
    elif args.command == "codec-key":
        from crm.platform.codec import new_codec_key

        print(new_codec_key(args.key_id))
    elif args.command == "mail":
        from devstack.mailsink import print_mail, print_mail_list

        if args.message is None:
            print_mail_list(args.maildir, to=args.to)
        else:
            ref: str | int = int(args.message) if args.message.isdigit() else args.message
            try:
                if args.html:
                    from devstack.mail_html import print_mail_html

                    print_mail_html(args.maildir, ref)
                else:
                    print_mail(args.maildir, ref)
            except KeyError as err:
                print(f"crmflow mail: {err.args[0]}", file=sys.stderr)
                return 1
    return 0


def _print_processes() -> None:
    from crm.platform.settings import get_settings
    from crm.policy import load_policy
    from processes import PROCESSES

    policy = load_policy(get_settings().policy_file)
    for process in PROCESSES:
        started = f"POST {process.start_path}" if process.start_path else "started by processes"
        print(f"{process.name}-<key>  {process.title}  ({process.workflow.__name__}, {started})")
        for event in process.events(policy):
            data = f" data: {event.data.__name__}" if event.data else ""
            print(f"    event {event.name}{data}")
        print(f"    search attributes: {', '.join(key.name for key in process.search_attributes)}")


async def _api_key(args: argparse.Namespace) -> int:
    from crm.platform.principals import TENANT_PATTERN
    from crm.platform.settings import get_settings
    from crm.store.db import Database
    from crm.store.keystore import create_key, list_keys, revoke_key

    database = Database.from_url(get_settings().database_url)
    try:
        await database.create_tables()
        if args.api_key_command == "create":
            if "approver" in args.role and not args.staff_id:
                print("crmflow api-key: an approver key needs --staff-id", file=sys.stderr)
                return 2
            if args.tenant is not None and not re.fullmatch(TENANT_PATTERN, args.tenant):
                print(f"crmflow api-key: --tenant must match {TENANT_PATTERN}", file=sys.stderr)
                return 2
            print(
                await create_key(
                    database,
                    args.principal,
                    tuple(args.role),
                    staff_id=args.staff_id,
                    tenant=args.tenant,
                )
            )
        elif args.api_key_command == "list":
            for row in await list_keys(database):
                state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
                print(f"{row.key_id}  {row.principal}  {','.join(row.roles)}  {state}")
        elif not await revoke_key(database, args.key_id):
            print(f"crmflow api-key: no active key {args.key_id}", file=sys.stderr)
            return 1
        return 0
    finally:
        await database.dispose()


if __name__ == "__main__":
    sys.exit(main())
