"""The email that carries a single client link."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from .. import wording
from ..models import ClientLink


def client_link_email_send(*, link: ClientLink, url: str, is_reconnect: bool) -> None:
    """The email that carries a client link (plain text and HTML). The URL goes nowhere else."""
    firm = link.household.firm
    context = {
        "link": link,
        "url": url,
        "firm": firm,
        "client": link.client,
        "source": wording.source_name(provider=link.provider_app.provider, platform=link.platform),
        "is_reconnect": is_reconnect,
        "expires_at": link.expires_at,
    }
    verb = "reconnect" if is_reconnect else "connect"
    message = EmailMultiAlternatives(
        subject=f"{firm.name}: please {verb} {wording.platform_name(link.platform)}",
        body=render_to_string("email/client_link.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[link.sent_to],
    )
    message.attach_alternative(render_to_string("email/client_link.html", context), "text/html")
    message.send()
