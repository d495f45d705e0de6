"""An emailed link's send is on the record once, even when its sender stopped between the email and its record.

The sender commits the link, asks the mail server, and only then records the
send (``sent_at``, the audit row, the ``LINK_SENT`` event the webhook
announces). The mail backends below deliver the message as a real one would
and then either stop the sender dead (a ``BaseException``, which nothing in
the send path catches, as a killed process would leave it) or open the link
first, as a quick client would, before the sender is back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.mail.message import EmailMessage
from django.test import Client
from django.urls import reverse

from connections import models as m
from connections import services
from reports.models import AuditEntry

from .conftest import World

LINK_PATH = re.compile(rf"{re.escape(settings.PORTAL_BASE_URL)}(/link/([^/\s]+)/)")


class SenderStopped(BaseException):
    """The sending process ended right after the mail server took the message."""


class StopsAfterSendingBackend(EmailBackend):
    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        super().send_messages(messages)
        raise SenderStopped


class OpenedBeforeTheSenderIsBackBackend(EmailBackend):
    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(messages)
        for message in messages:
            match = LINK_PATH.search(str(message.body))
            assert match is not None
            services.client_link_open(link=services.client_link_resolve(token=match.group(2)))
        return sent


def _link_sent_events(connection: m.Connection) -> list[m.ConnectionEvent]:
    return list(connection.events.filter(kind=m.ConnectionEvent.Kind.LINK_SENT))


def _link_sent_audits() -> int:
    return AuditEntry.objects.filter(action=AuditEntry.Action.LINK_SENT).count()


def test_a_link_whose_sender_stopped_after_the_email_goes_on_the_record_when_the_client_opens_it(
    adviser_client: Any, world: World, broken: m.Connection, settings: Any
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.StopsAfterSendingBackend"
    with pytest.raises(SenderStopped):
        adviser_client.post(reverse("connection_link_send", args=[broken.pk]))
    link = m.ClientLink.objects.get()
    assert link.sent_at is None
    assert _link_sent_events(broken) == []
    assert _link_sent_audits() == 0
    match = LINK_PATH.search(str(mail.outbox[-1].body))
    assert match is not None

    visitor = Client()
    assert visitor.get(match.group(1)).status_code == 200
    link.refresh_from_db()
    assert link.sent_at is not None
    assert link.status == m.ClientLink.LinkStatus.OPENED
    (sent,) = _link_sent_events(broken)
    assert "Recorded when the client opened it" in sent.message
    assert sent.details["recorded_at_open"] is True
    assert sent.actor == world.adviser
    opened = broken.events.get(kind=m.ConnectionEvent.Kind.LINK_OPENED)
    assert (sent.created_at, sent.pk) < (opened.created_at, opened.pk)
    assert _link_sent_audits() == 1

    assert visitor.get(match.group(1)).status_code == 200
    assert len(_link_sent_events(broken)) == 1
    assert _link_sent_audits() == 1


def test_a_client_who_opens_the_link_before_its_sender_is_back_leaves_one_record_of_the_send(
    adviser_client: Any, world: World, broken: m.Connection, settings: Any
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.OpenedBeforeTheSenderIsBackBackend"
    assert adviser_client.post(reverse("connection_link_send", args=[broken.pk])).status_code == 302
    link = m.ClientLink.objects.get()
    assert link.sent_at is not None
    assert link.status == m.ClientLink.LinkStatus.OPENED
    (sent,) = _link_sent_events(broken)
    assert sent.details["recorded_at_open"] is True
    assert _link_sent_audits() == 1


def test_a_link_its_sender_recorded_is_not_recorded_again_when_opened(
    adviser_client: Any, world: World, broken: m.Connection
) -> None:
    assert adviser_client.post(reverse("connection_link_send", args=[broken.pk])).status_code == 302
    match = LINK_PATH.search(str(mail.outbox[-1].body))
    assert match is not None
    assert Client().get(match.group(1)).status_code == 200
    (sent,) = _link_sent_events(broken)
    assert "recorded_at_open" not in sent.details
    assert "Recorded when" not in sent.message
    assert _link_sent_audits() == 1
