"""Every email the portal sends: app-credential alerts, client links, and advisers' digests.

Each kind has a builder (what goes in it, testable without sending) and a
sender. Messages name sources through :mod:`connections.wording`; none carries
a secret, and a client link's URL goes only into the email to the client.
Digests read events (the outbox) after they are committed; nothing here is
called from the lifecycle's rules.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from . import wording
from .models import ClientLink, ConnectionEvent, Household, Membership, ProviderApp, Status

logger = logging.getLogger("connections.notifications")

DEFAULT_DIGEST_FIRST_LOOKBACK_SECONDS = 24 * 3600
# Events younger than this are left for the next digest: a check's
# transaction that is still open could otherwise commit an event dated before
# the moment the digest moved past.
DIGEST_SETTLE_SECONDS = 30


def _subject(template: str, context: dict[str, Any]) -> str:
    return " ".join(render_to_string(template, context).split())


# --- App credentials alert -----------------------------------------------------------------


def app_alert_recipients(*, app: ProviderApp) -> list[str]:
    """Firm admins of firms with connections on ``app``, and active staff; addresses, deduplicated."""
    user_model = get_user_model()
    firm_ids = Household.objects.filter(connections__provider_app=app).values("firm_id")
    admins = user_model.objects.filter(
        is_active=True,
        membership__role=Membership.Role.FIRM_ADMIN,
        membership__firm_id__in=firm_ids,
    ).exclude(email="")
    staff = user_model.objects.filter(is_active=True, is_staff=True).exclude(email="")
    return sorted({u.email for u in admins} | {u.email for u in staff})


def app_alert_send(*, app_id: int) -> int:
    """One email per recipient (firms never see each other's addresses). Returns how many were sent."""
    try:
        app = ProviderApp.objects.defer("client_secret").get(pk=app_id)
        recipients = app_alert_recipients(app=app)
        if not recipients:
            return 0
        context = {
            "app": app,
            "app_name": wording.app_name(provider=app.provider, environment=app.environment, name=app.name),
            "provider": wording.provider_name(app.provider),
            "environment": app.get_environment_display(),
            "error": app.last_error,
            "flagged_at": app.credentials_rejected_at,
            "portal_url": settings.PORTAL_BASE_URL,
        }
        subject = _subject("email/app_credentials_alert_subject.txt", context)
        body = render_to_string("email/app_credentials_alert.txt", context)
        mail = get_connection()
        messages = [
            EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to], connection=mail) for to in recipients
        ]
        return mail.send_messages(messages) or 0
    except Exception:
        # A mail problem must never break the job that noticed the rejection.
        logger.exception("Could not send the app credentials alert for provider app %s.", app_id)
        return 0


# --- Client links -------------------------------------------------------------------------------


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


# --- Digests --------------------------------------------------------------------------------------


@dataclass
class DigestItem:
    connection_id: int
    household: str
    household_id: int
    client: str
    source: str
    message: str
    at: datetime
    deadline: datetime | None = None


@dataclass
class Digest:
    """What one adviser is told in one run."""

    needs_reconnect: list[DigestItem] = field(default_factory=list)
    lapsing_soon: list[DigestItem] = field(default_factory=list)
    recovered: list[DigestItem] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.needs_reconnect or self.lapsing_soon or self.recovered)


def _digest_events(*, firm_id: int, since: datetime, upto: datetime) -> list[ConnectionEvent]:
    newly_broken = (
        Q(to_status=Status.NEEDS_RECONNECT)
        & Q(kind__in=[ConnectionEvent.Kind.CHECK_FAILED, ConnectionEvent.Kind.STATUS_CHANGED])
        & ~Q(from_status=Status.NEEDS_RECONNECT)
    )
    kinds = Q(kind__in=[ConnectionEvent.Kind.RECOVERED, ConnectionEvent.Kind.DEADLINE_WARNING]) | newly_broken
    return list(
        ConnectionEvent.objects.filter(
            kinds, connection__household__firm_id=firm_id, created_at__gt=since, created_at__lte=upto
        )
        .select_related("connection", "connection__household", "connection__client")
        .order_by("created_at", "id")
    )


def digest_for(events: Sequence[ConnectionEvent], *, households: set[int] | None, now: datetime) -> Digest:
    """Sort a window's events into the three sections, by each connection's state now.

    A connection appears at most once per section; one that broke and then
    recovered in the same window is only "recovered" (and the reverse only
    "needs reconnecting"), so nobody chases a problem that is gone.
    """
    digest = Digest()
    seen: dict[str, set[int]] = defaultdict(set)
    for event in reversed(events):  # newest first: the latest event of a kind describes the connection
        connection = event.connection
        if households is not None and connection.household_id not in households:
            continue
        item = DigestItem(
            connection_id=connection.pk,
            household=connection.household.name,
            household_id=connection.household_id,
            client=connection.client.name,
            source=wording.source_name(provider=connection.provider, platform=connection.platform),
            message=connection.status_message,
            at=event.created_at,
            deadline=connection.reconnect_by,
        )
        if event.kind == ConnectionEvent.Kind.RECOVERED:
            section, wanted = "recovered", connection.status == Status.ACTIVE
        elif event.kind == ConnectionEvent.Kind.DEADLINE_WARNING:
            section = "lapsing_soon"
            wanted = (
                connection.status not in (Status.NEEDS_RECONNECT, Status.DISCONNECTED)
                and connection.reconnect_by is not None
                and connection.reconnect_by > now
            )
            item.message = event.message
        else:
            section, wanted = "needs_reconnect", connection.status == Status.NEEDS_RECONNECT
        if wanted and connection.pk not in seen[section]:
            seen[section].add(connection.pk)
            getattr(digest, section).append(item)
    for items in (digest.needs_reconnect, digest.lapsing_soon, digest.recovered):
        items.sort(key=lambda i: (i.household, i.source))
    return digest


def digests_send(*, now: datetime | None = None) -> int:
    """One email per adviser (firm admins: the whole firm) with what changed since their last digest.

    Sections: connections that newly need reconnecting, that will lapse soon
    (a DEADLINE_WARNING), and that recovered. Nothing is sent when all three
    are empty. Each membership's ``digest_sent_up_to`` then moves to the end
    of the window, so nothing is sent twice; a failed send leaves it, so the
    next run tries again. Returns how many emails were sent.
    """
    now = now or timezone.now()
    upto = now - timedelta(seconds=DIGEST_SETTLE_SECONDS)
    lookback = getattr(settings, "DIGEST_FIRST_LOOKBACK_SECONDS", DEFAULT_DIGEST_FIRST_LOOKBACK_SECONDS)
    first = timedelta(seconds=float(lookback))
    memberships = list(
        Membership.objects.select_related("user", "firm")
        .filter(user__is_active=True)
        .exclude(user__email="")
        .order_by("firm_id", "pk")
    )
    by_firm: dict[int, list[Membership]] = defaultdict(list)
    for membership in memberships:
        by_firm[membership.firm_id].append(membership)

    sent = 0
    mail = get_connection()
    for firm_id, members in by_firm.items():
        windows = {m.pk: m.digest_sent_up_to or (upto - first) for m in members}
        due = [m for m in members if windows[m.pk] < upto]
        if not due:
            continue
        events = _digest_events(firm_id=firm_id, since=min(windows[m.pk] for m in due), upto=upto)
        assignments: dict[int, set[int]] = defaultdict(set)
        for user_id, household_id in Household.advisers.through.objects.filter(
            household__firm_id=firm_id, user_id__in=[m.user_id for m in due]
        ).values_list("user_id", "household_id"):
            assignments[user_id].add(household_id)
        nothing_to_say: list[int] = []
        for membership in due:
            window = [e for e in events if e.created_at > windows[membership.pk]]
            households = None if membership.is_firm_admin else assignments.get(membership.user_id, set())
            digest = digest_for(window, households=households, now=now)
            if not digest:
                nothing_to_say.append(membership.pk)
                continue
            if _digest_mail(membership=membership, digest=digest, mail=mail):
                Membership.objects.filter(pk=membership.pk).update(digest_sent_up_to=upto)
                sent += 1
        if nothing_to_say:
            Membership.objects.filter(pk__in=nothing_to_say).update(digest_sent_up_to=upto)
    return sent


def _digest_mail(*, membership: Membership, digest: Digest, mail: Any) -> bool:
    counts = []
    if digest.needs_reconnect:
        counts.append(f"{len(digest.needs_reconnect)} need reconnecting")
    if digest.lapsing_soon:
        counts.append(f"{len(digest.lapsing_soon)} will lapse soon")
    if digest.recovered:
        counts.append(f"{len(digest.recovered)} recovered")
    context = {
        "user": membership.user,
        "firm": membership.firm,
        "is_firm_admin": membership.is_firm_admin,
        "digest": digest,
        "summary": ", ".join(counts),
        "portal_url": settings.PORTAL_BASE_URL,
    }
    subject = _subject("email/digest_subject.txt", context)
    body = render_to_string("email/digest.txt", context)
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [membership.user.email], connection=mail)
    try:
        return bool(message.send())
    except Exception:
        logger.exception("Digest for membership %s could not be sent; it will be retried next run.", membership.pk)
        return False
