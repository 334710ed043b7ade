"""One rendered email body into two parts, an HTML and a plain-text one, in the shared layout.

A template renders plain text (paragraphs, ``- `` bullet lines, indented
``Label: value`` lines); the HTML part is built from that text, every piece
of it escaped, so a merge field holding ``<script>`` shows as text in both
parts. The layout adds a header with the sender's wordmark (or logo), a
footer with the sender's postal address and a link to the recipient's email
preferences, and, on marketing mail, an unsubscribe link. Styles are written
once in a ``<style>`` block and inlined into ``style`` attributes with
``css-inline``, since many mail clients drop ``<style>``.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass

import css_inline
from pydantic import BaseModel, ConfigDict, Field

#: Gmail clips a message whose HTML is larger than this; crmflow keeps a whole message under it.
GMAIL_CLIP_BYTES = 102 * 1024

_URL = re.compile(r"https?://[^\s<>\"')]+[^\s<>\"').,;:!?]")
_LABELLED = re.compile(r"^([A-Za-z][\w .-]{0,30}):\s+(.*)$")


class EmailPolicy(BaseModel):
    """The policy file's ``email`` section: who the sender is, in every email's layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The wordmark in each email's header and the name in its footer.
    sender_name: str = Field(default="crmflow", min_length=1, max_length=100)
    #: The sender's postal address, in every footer (CAN-SPAM and most inbox rules want one).
    postal_address: str = Field(
        default="Kungsgatan 1, 111 43 Stockholm, Sweden", min_length=1, max_length=300
    )
    #: An https URL of a logo image shown instead of the wordmark (with the sender as alt text).
    logo_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    #: How long the unsubscribe and preference links in an email keep working.
    link_valid_days: int = Field(default=90, ge=1, le=730)


@dataclass(frozen=True)
class FooterLinks:
    """The links of one email's footer: its preferences page; unsubscribe on marketing mail."""

    preferences_url: str
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class EmailParts:
    """An email ready to send: subject, plain-text part and HTML part."""

    subject: str
    text: str
    html: str


_STYLE = """
body { margin: 0; padding: 0; background: #f4f5f7; }
.outer { width: 100%; background: #f4f5f7; }
.frame { width: 100%; max-width: 600px; margin: 0 auto; background: #ffffff;
  border: 1px solid #e2e8f0; border-radius: 6px; }
.head { padding: 18px 28px; border-bottom: 1px solid #e2e8f0;
  font: bold 20px Arial, Helvetica, sans-serif; color: #1e3a8a; }
.body { padding: 20px 28px; font: 15px/1.5 Arial, Helvetica, sans-serif; color: #1f2937; }
p { margin: 0 0 14px 0; }
ul { margin: 0 0 14px 0; padding-left: 22px; }
li { margin: 0 0 4px 0; }
.facts { border-collapse: collapse; margin: 0 0 14px 0; }
.facts th { text-align: left; padding: 2px 14px 2px 0; color: #475569; font-weight: normal;
  vertical-align: top; }
.facts td { padding: 2px 0; }
.quote { margin: 0 0 14px 0; padding: 6px 12px; border-left: 3px solid #93c5fd; }
a { color: #1d4ed8; }
.foot { padding: 16px 28px 22px; border-top: 1px solid #e2e8f0;
  font: 12px/1.5 Arial, Helvetica, sans-serif; color: #64748b; }
.foot a { color: #475569; }
"""

_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


def compose(
    subject: str, text: str, policy: EmailPolicy, links: FooterLinks, *, lang: str = "en"
) -> EmailParts:
    """The two parts of an email whose rendered plain-text body is ``text``.

    Raises ValueError when the inliner cannot parse the layout (it always can:
    the layout is crmflow's and every value in it is escaped).
    """
    body = tidy_text(text)
    return EmailParts(
        subject=subject,
        text=_text_part(body, policy, links),
        html=_html_part(subject, body, policy, links, lang),
    )


def tidy_text(text: str) -> str:
    """A rendered body with trailing spaces gone, bullet lists closed up (template loops
    leave blank lines between items) and at most one blank line in a row."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    kept: list[str] = []
    for index, line in enumerate(lines):
        if not line and kept and _is_bullet(kept[-1]):
            following = next((later for later in lines[index + 1 :] if later), "")
            if _is_bullet(following):
                continue
        if not line and kept and not kept[-1]:
            continue
        kept.append(line)
    return "\n".join(kept).strip("\n") + "\n"


def _text_part(body: str, policy: EmailPolicy, links: FooterLinks) -> str:
    footer = ["-- ", f"{policy.sender_name}, {policy.postal_address}"]
    if links.unsubscribe_url is not None:
        footer.append(f"Unsubscribe from these emails: {links.unsubscribe_url}")
    footer.append(f"Email preferences: {links.preferences_url}")
    return body + "\n" + "\n".join(footer) + "\n"


def _html_part(subject: str, body: str, policy: EmailPolicy, links: FooterLinks, lang: str) -> str:
    esc = html.escape
    if policy.logo_url is not None:
        brand = f'<img src="{esc(policy.logo_url)}" alt="{esc(policy.sender_name)}" height="32">'
    else:
        brand = esc(policy.sender_name)
    foot = [f"{esc(policy.sender_name)}, {esc(policy.postal_address)}<br>"]
    if links.unsubscribe_url is not None:
        foot.append(f'<a href="{esc(links.unsubscribe_url)}">Unsubscribe</a> from these emails · ')
    foot.append(f'<a href="{esc(links.preferences_url)}">Email preferences</a>')
    document = (
        f'<!DOCTYPE html>\n<html lang="{esc(lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(subject)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        '<table class="outer" role="presentation" cellpadding="0" cellspacing="0"><tr><td>\n'
        '<table class="frame" role="presentation" cellpadding="0" cellspacing="0">\n'
        f'<tr><td class="head">{brand}</td></tr>\n'
        f'<tr><td class="body">\n{body_html(body)}</td></tr>\n'
        f'<tr><td class="foot">{"".join(foot)}</td></tr>\n'
        "</table>\n</td></tr></table>\n</body>\n</html>\n"
    )
    return str(_INLINER.inline(document))


def body_html(body: str) -> str:
    """The HTML of a plain-text body: paragraphs, lists, label tables and quotes, every
    piece of text escaped and each http(s) URL a link."""
    blocks: list[str] = []
    lines = body.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
        elif _is_bullet(line):
            items: list[str] = []
            while index < len(lines) and (_is_bullet(lines[index]) or not lines[index].strip()):
                if lines[index].strip():
                    items.append(lines[index].strip()[2:])
                index += 1
            blocks.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>")
        elif line.startswith("  "):
            group: list[str] = []
            while (
                index < len(lines)
                and lines[index].startswith("  ")
                and not _is_bullet(lines[index])
            ):
                group.append(lines[index].strip())
                index += 1
            blocks.append(_indented(group))
        else:
            paragraph: list[str] = []
            while (
                index < len(lines)
                and lines[index].strip()
                and not lines[index].startswith("  ")
                and not _is_bullet(lines[index])
            ):
                paragraph.append(lines[index])
                index += 1
            blocks.append(f"<p>{_paragraph(paragraph)}</p>")
    return "\n".join(blocks) + "\n"


def _indented(group: list[str]) -> str:
    labelled = [_LABELLED.match(line) for line in group]
    if all(labelled):
        rows = "".join(
            f"<tr><th>{html.escape(m.group(1))}</th><td>{_inline(m.group(2))}</td></tr>"
            for m in labelled
            if m is not None
        )
        return f'<table class="facts" role="presentation">{rows}</table>'
    return f'<p class="quote">{"<br>".join(_inline(line) for line in group)}</p>'


def _paragraph(lines: list[str]) -> str:
    """Lines of one paragraph: a wrapped line flows on; a short one (a greeting, a
    signature) keeps its break."""
    out = _inline(lines[0])
    for previous, line in itertools.pairwise(lines):
        out += (" " if len(previous) > 50 else "<br>") + _inline(line)
    return out


def _inline(text: str) -> str:
    """``text`` escaped, with each http(s) URL a link."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        url = html.escape(match.group(0))
        out.append(f'<a href="{url}">{url}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _is_bullet(line: str) -> bool:
    return line.lstrip().startswith("- ") and (line.startswith("- ") or line.startswith("  "))
