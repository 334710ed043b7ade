"""Every shipped email template, rendered with sample data, as a mail client receives it."""

from __future__ import annotations

import shutil
from email.utils import formatdate
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtplib.email import flatten_message

from activities.message import address_header, alternative_message
from activities.templates import TEMPLATE_DIR
from crm.mail.catalogue import EMAIL_CLASSES, SAMPLES, check_shipped_templates, render_sample
from crm.mail.checks import SPAM_SCORE_LIMIT, message_checks, spam_scores, spamassassin_installed
from crm.mail.layout import GMAIL_CLIP_BYTES, EmailPolicy
from crm.policy import PolicyError, load_policy

SHIPPED = sorted(path.stem for path in TEMPLATE_DIR.glob("*.j2"))
EVIL = "<script>alert(1)</script>"
PUBLIC_URL = "https://crm.example.com"
VOID = {"meta", "br", "img", "hr", "link", "input"}


def as_received(name: str, overrides: dict[str, Any] | None = None) -> bytes:
    """Template ``name`` with its sample as the bytes the SMTP sink would store."""
    parts = render_sample(name, EmailPolicy(), overrides=overrides)
    headers = {
        "Message-ID": f"<{name}0123456789abcdef@crmflow.localhost>",
        "Date": formatdate(usegmt=True),
        "X-Crmflow-Class": EMAIL_CLASSES[name],
    }
    if EMAIL_CLASSES[name] == "marketing":
        headers["List-Unsubscribe"] = f"<{PUBLIC_URL}/email/unsubscribe/sample>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = alternative_message(
        sender=address_header("crmflow <noreply@crmflow.localhost>"),
        recipient="ann@acme-corp.io",
        subject=parts.subject,
        text=parts.text,
        html=parts.html,
        headers=headers,
    )
    return flatten_message(message)


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"</{tag}> closes nothing open")


def test_every_shipped_template_is_classed_and_has_sample_data() -> None:
    assert set(SHIPPED) == set(EMAIL_CLASSES) == set(SAMPLES)
    assert {EMAIL_CLASSES[n] for n in ("lead_follow_up", "onboarding_nudge")} == {"marketing"}
    assert EMAIL_CLASSES["sla_breach"] == EMAIL_CLASSES["renewal_confirmation"] == "transactional"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_template_renders_both_parts_with_merge_fields_escaped(name: str) -> None:
    names = [key for key, value in SAMPLES[name].items() if isinstance(value, str)]
    evil = {key: EVIL for key in names if key.endswith("name") or key in ("company", "subject")}
    assert evil, f"{name} has no name field to try"
    raw = as_received(name, evil)

    checks = {check.name: check for check in message_checks(raw, PUBLIC_URL)}
    assert all(check.status == "pass" for check in checks.values()), checks
    parts = render_sample(name, EmailPolicy(), overrides=evil)
    assert EVIL in parts.text  # plain text shows it as it is
    assert EVIL not in parts.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in parts.html
    balance = _Balance()
    balance.feed(parts.html)
    assert balance.errors == [] and balance.open == [] and balance.scripts == 0
    assert "Kungsgatan 1" in parts.text and "Kungsgatan 1" in parts.html  # postal address
    assert "Email preferences" in parts.text and "Email preferences" in parts.html
    assert ("Unsubscribe" in parts.html) == (EMAIL_CLASSES[name] == "marketing")
    assert "<style" not in parts.html and 'style="' in parts.html  # CSS inlined
    assert len(raw) < GMAIL_CLIP_BYTES


@pytest.mark.skipif(not spamassassin_installed(), reason="spamassassin is not installed")
def test_every_shipped_template_scores_below_two_with_spamassassin() -> None:
    scores = spam_scores([as_received(name) for name in SHIPPED])
    assert scores is not None
    high = {n: s for n, s in zip(SHIPPED, scores, strict=True) if s.score >= SPAM_SCORE_LIMIT}
    assert high == {}


def test_a_template_reading_a_field_its_process_does_not_give_stops_start_up(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, folder)
    welcome = folder / "welcome.j2"
    welcome.write_text(welcome.read_text() + "\nYour coupon: {{ coupon_code }}\n")
    with pytest.raises(ValueError, match=r"welcome.*coupon_code"):
        check_shipped_templates(EmailPolicy(), folder)
    (folder / "welcome.j2").write_text("Subject: {{ broken\n\nHi\n")
    with pytest.raises(ValueError, match=r"welcome.*invalid"):
        check_shipped_templates(EmailPolicy(), folder)


def test_the_policy_file_sets_the_layout_and_is_refused_when_it_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("email:\n  sender_name: Acme CRM\n  postal_address: 1 Main St, Springfield\n")
    policy = load_policy(path)
    parts = render_sample("welcome", policy.email)
    assert "Acme CRM" in parts.html and "1 Main St, Springfield" in parts.text
    path.write_text("email:\n  logo_url: http://insecure.example/logo.png\n")
    with pytest.raises(PolicyError, match="logo_url"):
        load_policy(path)


def test_a_logo_is_an_image_with_alt_text() -> None:
    policy = EmailPolicy(logo_url="https://cdn.example.com/logo.png", sender_name="Acme")
    parts = render_sample("welcome", policy)
    assert '<img src="https://cdn.example.com/logo.png" alt="Acme"' in parts.html
