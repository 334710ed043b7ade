"""``crmflow mail --html N``: one message's HTML part for a browser, its checks for the eye."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from crm.mail.checks import message_checks, spam_scores
from crm.platform.settings import get_settings
from devstack.mailsink import find_message


def print_mail_html(
    maildir: Path, ref: str | int, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> None:
    """Write message ``ref``'s HTML part to ``out`` (``> message.html`` opens in a browser)
    and its checks, SpamAssassin's score included where installed, to ``err``.

    Raises KeyError when ``ref`` names no message.
    """
    message = find_message(maildir, ref)
    raw = message.message.as_bytes()
    scores = spam_scores([raw])
    spam = scores[0] if scores else None
    for check in message_checks(raw, get_settings().public_url, spam):
        err.write(f"{check.status:>4}  {check.name}: {check.detail}\n")
    out.write(message.html if message.html is not None else "")
    if message.html is None:
        err.write("this message has no HTML part\n")
