"""What the virtual inbox checks in each message before such mail goes to real people.

``message_checks`` looks at a received message's bytes: a text part, an
HTML part, one-click unsubscribe on marketing mail, links under the
configured public URL, ``alt`` on every image, the size Gmail shows without
clipping. ``spam_scores`` asks Debian's ``spamassassin`` (run locally and
offline, one process for many messages); where it is not installed it
answers None and the inbox says so.
"""

from __future__ import annotations

import email.policy
import mailbox
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from crm.mail.layout import GMAIL_CLIP_BYTES
from crm.mail.links import UNSUBSCRIBE_PATH

Status = Literal["pass", "warn", "fail", "skip"]

#: A score at or above this fails the spam check; the issue's bar for shipped templates.
SPAM_SCORE_LIMIT = 2.0

_SCORE = re.compile(r"score=(-?\d+(?:\.\d+)?)")
_TESTS = re.compile(r"tests=([^\n]*?)(?:\s+autolearn=|\s+version=|$)", re.DOTALL)


@dataclass(frozen=True)
class Check:
    """One check of one message: its name, how it came out and what it saw."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class SpamScore:
    """SpamAssassin's verdict on a message: its score and the rules that fired."""

    score: float
    rules: tuple[str, ...]


def parse(raw: bytes) -> EmailMessage:
    """The message in ``raw``, parsed as a mail client would."""
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def part_text(message: EmailMessage, subtype: str) -> str | None:
    """The ``text/<subtype>`` body of ``message``, or None when it has none."""
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def message_checks(
    raw: bytes, public_url: str, spam: SpamScore | str | None = "skip"
) -> list[Check]:
    """The checks of the message ``raw`` against the API's ``public_url``; ``spam`` is its
    SpamAssassin score, None when spamassassin is not installed, ``"skip"`` to leave the
    spam check out."""
    message = parse(raw)
    text = part_text(message, "plain")
    markup = part_text(message, "html")
    checks = [
        Check(
            "text part",
            "pass" if text and text.strip() else "fail",
            f"{len(text.encode())} bytes" if text else "no text/plain part",
        ),
        Check(
            "HTML part",
            "pass" if markup else "warn",
            f"{len(markup.encode())} bytes" if markup else "text only",
        ),
        _unsubscribe_check(message, public_url),
    ]
    found = _Markup()
    if markup:
        found.feed(markup)
        found.close()
    checks.append(_links_check(found.links, public_url))
    missing_alt = [src for src, alt in found.images if alt is None]
    checks.append(
        Check(
            "images have alt",
            "fail" if missing_alt else "pass",
            f"no alt: {', '.join(missing_alt)}" if missing_alt else f"{len(found.images)} images",
        )
    )
    size = len(raw)
    checks.append(
        Check(
            "size under 102 KB",
            "pass" if size < GMAIL_CLIP_BYTES else "fail",
            f"{size / 1024:.1f} KB (Gmail clips above {GMAIL_CLIP_BYTES // 1024} KB)",
        )
    )
    if spam is None:
        checks.append(Check("SpamAssassin", "skip", "spamassassin is not installed here"))
    elif isinstance(spam, SpamScore):
        status: Status = "pass" if spam.score < SPAM_SCORE_LIMIT else "fail"
        rules = ", ".join(spam.rules) or "no rule fired"
        checks.append(Check("SpamAssassin", status, f"score {spam.score:.1f}: {rules}"))
    return checks


def _unsubscribe_check(message: EmailMessage, public_url: str) -> Check:
    kind = str(message.get("X-Crmflow-Class") or "").strip()
    header = str(message.get("List-Unsubscribe") or "").strip()
    post = str(message.get("List-Unsubscribe-Post") or "").strip()
    if kind != "marketing":
        if header:
            return Check("unsubscribe", "pass", f"{kind or 'unclassed'} mail, has List-Unsubscribe")
        return Check("unsubscribe", "pass", f"{kind or 'unclassed'} mail: not needed")
    urls = re.findall(r"<([^>]+)>", header)
    https = [url for url in urls if url.startswith("https://")]
    ours = [url for url in urls if url.startswith(public_url.rstrip("/") + UNSUBSCRIBE_PATH)]
    if not ours or post != "List-Unsubscribe=One-Click":
        return Check(
            "unsubscribe",
            "fail",
            "marketing mail needs List-Unsubscribe with a link under "
            f"{public_url} and List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        )
    if not https:
        return Check("unsubscribe", "warn", "one-click unsubscribe present, but not over https")
    return Check("unsubscribe", "pass", "RFC 8058 one-click unsubscribe over https")


def _links_check(links: list[str], public_url: str) -> Check:
    base = public_url.rstrip("/") + "/"
    web = [link for link in links if link.startswith(("http://", "https://"))]
    ours = [link for link in web if UNSUBSCRIBE_PATH in link or "/console" in link]
    wrong = [link for link in ours if not link.startswith(base)]
    elsewhere = [link for link in web if link not in ours and not link.startswith(base)]
    if wrong:
        return Check("links", "fail", f"not under {public_url}: {', '.join(sorted(set(wrong)))}")
    if elsewhere:
        return Check("links", "warn", f"to other sites: {', '.join(sorted(set(elsewhere)))}")
    return Check("links", "pass", f"{len(web)} links under {public_url}")


class _Markup(HTMLParser):
    """Collects the links and the images (with their alt text) of an HTML part."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        elif tag == "img":
            self.images.append((values.get("src") or "", values.get("alt")))


def spamassassin_installed() -> bool:
    """Whether Debian's ``spamassassin`` is on the PATH."""
    return shutil.which("spamassassin") is not None


def spam_scores(raws: list[bytes], timeout: float = 120.0) -> list[SpamScore] | None:
    """SpamAssassin's score of each message, in order, from one local run without network
    tests; None when spamassassin is not installed.

    Raises RuntimeError when spamassassin fails or leaves a message unscored.
    """
    executable = shutil.which("spamassassin")
    if executable is None:
        return None
    if not raws:
        return []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.mbox"
        box = mailbox.mbox(path)
        for raw in raws:
            box.add(raw)
        box.close()
        with path.open("rb") as messages:
            run = subprocess.run(
                [executable, "--local", "--mbox", "--test-mode"],
                stdin=messages,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        if run.returncode != 0:
            raise RuntimeError(
                f"spamassassin failed ({run.returncode}): {run.stderr.decode()[-500:]}"
            )
        scored_path = Path(folder) / "out.mbox"
        scored_path.write_bytes(run.stdout)
        results = [_score_of(message) for message in mailbox.mbox(scored_path)]
    if len(results) != len(raws):
        raise RuntimeError(f"spamassassin scored {len(results)} of {len(raws)} messages")
    return results


def _score_of(message: mailbox.mboxMessage) -> SpamScore:
    status = " ".join(str(message.get("X-Spam-Status", "")).split())
    score = _SCORE.search(status)
    if score is None:
        raise RuntimeError(f"spamassassin left a message unscored: {status!r}")
    tests = _TESTS.search(status)
    rules = tuple(r for r in (tests.group(1) if tests else "").replace(" ", "").split(",") if r)
    return SpamScore(float(score.group(1)), rules)
