"""How actions reach the audit trail, without the code that performs them knowing about it.

* Sign-ins and failures: Django's ``user_logged_in`` / ``user_login_failed``.
* The second factor: :mod:`mfa.signals` (a code accepted or refused, a lockout) and
  django-otp's device rows (set up, removed, recovery codes replaced).
* Roles and assignments: ``Membership`` saves and deletes, ``m2m_changed`` on
  ``Household.advisers`` (either side).
* Client links sent: a new ``ClientLink`` row (every link, for a new connection
  or a reconnect), except the never-emailed links of a reconnect request's items.
* Reconnect requests: a new ``ReconnectRequestEmail`` row. The first email is
  one row naming the request, its client and every connection it covers; each
  reminder is one row. A connection added to a request already sent is one
  row naming the request.
* Connects, reconnects and disconnects: the ``ConnectionEvent`` outbox. The
  lifecycle writes these events in bulk, which sends no signal, so a save of
  the connection or of an event schedules :func:`connection_events_fold` after
  commit, and the provider-health job folds in whatever an unsignalled path
  left (:func:`events_fold_recent`). A row per event, at most once (the
  one-to-one ``connection_event``).
* Admin edits: each new ``LogEntry`` of Django's admin, linked, unless every
  part of the change it logs is already on the record from the same request
  (a role, a membership, household assignments): one row per action.
* API keys and webhook endpoints: the models named in ``AUDIT_WATCHED_MODELS``
  (label -> words), when their app is installed; a webhook delivery a person
  sends again (a new ``manual`` delivery row).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as AuthUser
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import Exists, Model, OuterRef
from django.db.models.signals import m2m_changed, post_delete, post_init, post_save
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections import wording
from connections.logging import redact
from connections.models import (
    ClientLink,
    Connection,
    ConnectionEvent,
    Firm,
    Household,
    Membership,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
)
from mfa import signals as mfa_signals

from . import audit
from .models import AuditEntry

logger = logging.getLogger("reports.audit")
Action = AuditEntry.Action

# Events of the outbox that are a person's (or a client's) action.
FOLDED_EVENT_KINDS: dict[str, str] = {
    ConnectionEvent.Kind.CONNECTED: Action.CONNECTED,
    ConnectionEvent.Kind.RECONNECTED: Action.RECONNECTED,
    ConnectionEvent.Kind.DISCONNECTED: Action.DISCONNECTED,
}
# A fold after commit looks this far back; older stragglers are the job's.
FOLD_LOOKBACK = dt.timedelta(hours=1)
FOLD_CATCH_UP = dt.timedelta(days=2)


def _original(instance: Model, *fields: str) -> None:
    # Remember the values as loaded, so a save can say what changed without a query.
    instance.__dict__["_audit_original"] = {name: instance.__dict__.get(name) for name in fields}


def _was(instance: Model, field: str) -> Any:
    return instance.__dict__.get("_audit_original", {}).get(field)


# --- Sign-in -----------------------------------------------------------------------------


def _own_step(
    action: str, request: HttpRequest | None, user: AuthUser, message: str, details: dict[str, Any] | None = None
) -> None:
    """A step of signing in that ``user`` took themselves: they are both who did it and what it is about."""
    audit.record(action, request=request, actor=user, obj=user, object_type="user", message=message, details=details)


def _signed_in(sender: Any, request: HttpRequest | None, user: AuthUser, **kwargs: Any) -> None:
    _own_step(Action.SIGN_IN, request, user, f"{wording.person_name(user)} signed in with their password.")


def _sign_in_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any) -> None:
    # Django has already masked the password in ``credentials``; only the name typed is kept.
    typed = str(credentials.get("username", ""))[:150]
    user = get_user_model().objects.filter(username=typed).first() if typed else None
    audit.record(
        Action.SIGN_IN_FAILED,
        request=request,
        # Not the user's doing, necessarily: the row names what was typed, and
        # goes to the firm of the account it named (its admins should see it).
        firm=audit.firm_of(user),
        actor_name=typed or "(no user name)",
        message=f"A sign-in as {typed or '(no user name)'} failed.",
        details={"username": typed},
    )


def _second_factor_passed(sender: Any, request: HttpRequest, user: AuthUser, method: str, **kwargs: Any) -> None:
    words = "a recovery code" if method == "recovery_code" else "their authenticator app"
    _own_step(
        Action.SECOND_FACTOR_PASSED,
        request,
        user,
        f"{wording.person_name(user)} confirmed the sign-in with {words}.",
        details={"method": method},
    )


def _second_factor_failed(sender: Any, request: HttpRequest, user: AuthUser, method: str, **kwargs: Any) -> None:
    locked_until = kwargs.get("locked_until")
    during = f" during a lockout until {timezone.localtime(locked_until):%H:%M}" if locked_until else ""
    _own_step(
        Action.SECOND_FACTOR_FAILED,
        request,
        user,
        f"A second-factor code for {wording.person_name(user)} was refused{during}.",
        details={"method": method, "throttled": bool(kwargs.get("throttled")), "locked": bool(locked_until)},
    )


def _second_factor_locked(
    sender: Any, request: HttpRequest, user: AuthUser, method: str, failures: int, until: dt.datetime, **kw: Any
) -> None:
    _own_step(
        Action.SECOND_FACTOR_LOCKED,
        request,
        user,
        f"{failures} wrong second-factor codes in a row for {wording.person_name(user)}: "
        f"no code is accepted until {timezone.localtime(until):%Y-%m-%d %H:%M}.",
        details={"method": method, "failures": failures, "until": until.isoformat()},
    )


# --- Second-factor devices ---------------------------------------------------------------


def _device_loaded(sender: Any, instance: Model, **kwargs: Any) -> None:
    _original(instance, "confirmed", "name")


def _totp_saved(sender: Any, instance: TOTPDevice, created: bool, **kwargs: Any) -> None:
    # Every verification saves the device (drift, throttling); only a confirmation is a change.
    if instance.confirmed and (created or not _was(instance, "confirmed")):
        _second_factor_changed(
            Action.MFA_ENABLED,
            instance.user,
            f"An authenticator app was set up as {wording.person_name(instance.user)}'s second factor.",
            details={"device": instance.persistent_id},
        )
    _original(instance, "confirmed", "name")


def _totp_deleted(sender: Any, instance: TOTPDevice, **kwargs: Any) -> None:
    if instance.confirmed:
        user = instance.user
        _record_after_commit(
            Action.MFA_REMOVED,
            actor_id=(_acting_user() or user).pk,
            firm_id=getattr(audit.firm_of(user), "pk", None),
            obj=user,
            object_type="user",
            message=f"{wording.person_name(user)}'s authenticator app was removed as a second factor.",
            details={"device": instance.persistent_id},
        )


def _record_after_commit(action: str, *, actor_id: int | None, firm_id: int | None, **fields: Any) -> None:
    """A deletion's row, written once the deletion commits.

    The device or membership may be going because its user or firm is being
    deleted: a row written now would point at rows the same transaction
    removes. After commit, the actor and firm are linked only if they still
    exist (the words in the row say who and what either way).
    """
    request = audit.current_request()

    def write() -> None:
        actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id is not None else None
        firm = Firm.objects.filter(pk=firm_id).first() if firm_id is not None else None
        audit.record(
            action,
            request=request,
            ambient=False,
            actor=actor if isinstance(actor, AuthUser) else None,
            firm=firm,
            **fields,
        )

    transaction.on_commit(write)


def _static_saved(sender: Any, instance: StaticDevice, created: bool, **kwargs: Any) -> None:
    # The recovery codes come and go with the authenticator (recorded there); a new
    # set for an existing device is renamed with its time, and that is a change.
    if not created and instance.confirmed and _was(instance, "name") not in (None, instance.name):
        _second_factor_changed(
            Action.RECOVERY_CODES_REPLACED,
            instance.user,
            f"{wording.person_name(instance.user)}'s recovery codes were replaced; the old ones stop working.",
        )
    _original(instance, "confirmed", "name")


def _acting_user() -> AuthUser | None:
    return audit.request_user(audit.current_request())


def _second_factor_changed(action: str, user: Any, message: str, details: dict[str, Any] | None = None) -> None:
    """A change to ``user``'s second factor, by whoever is signed in (in a shell or a command: ``user``)."""
    audit.record(
        action,
        actor=_acting_user() or user,
        firm=audit.firm_of(user),
        obj=user,
        object_type="user",
        message=message,
        details=details,
    )


# --- Roles and assignments ---------------------------------------------------------------


def _covered(*objects: Model | tuple[str, Any]) -> None:
    """Note that this request put a change to ``objects`` on the record, so its admin log entry adds nothing."""
    request = audit.current_request()
    if request is None:
        return
    seen = request.__dict__.setdefault("_audit_covered", set())
    for each in objects:
        seen.add(each if isinstance(each, tuple) else (each._meta.label_lower, str(each.pk)))


def _is_covered(label: str, pk: Any) -> bool:
    request = audit.current_request()
    return request is not None and (label, str(pk)) in request.__dict__.get("_audit_covered", set())


def _membership_covered(instance: Membership) -> None:
    _covered(
        (Membership._meta.label_lower, str(instance.pk)),
        (Firm._meta.label_lower, str(instance.firm_id)),
        (get_user_model()._meta.label_lower, str(instance.user_id)),
    )


def _membership_loaded(sender: Any, instance: Membership, **kwargs: Any) -> None:
    _original(instance, "role", "firm_id")


def _membership_saved(sender: Any, instance: Membership, created: bool, **kwargs: Any) -> None:
    role = instance.get_role_display()
    name = wording.person_name(instance.user)
    if created:
        audit.record(
            Action.MEMBER_ADDED,
            firm=instance.firm,
            obj=instance.user,
            object_type="user",
            message=f"{name} joined {instance.firm.name} as {role.lower()}.",
            details={"role": instance.role},
        )
    elif _was(instance, "role") != instance.role or _was(instance, "firm_id") != instance.firm_id:
        audit.record(
            Action.ROLE_CHANGED,
            firm=instance.firm,
            obj=instance.user,
            object_type="user",
            message=f"{name}'s role is now {role.lower()}.",
            details={"role": instance.role, "previous_role": _was(instance, "role")},
        )
    else:
        _original(instance, "role", "firm_id")
        return
    _membership_covered(instance)
    _original(instance, "role", "firm_id")


def _membership_deleted(sender: Any, instance: Membership, **kwargs: Any) -> None:
    actor = _acting_user()
    _membership_covered(instance)
    _record_after_commit(
        Action.MEMBER_REMOVED,
        actor_id=actor.pk if actor is not None else None,
        firm_id=instance.firm_id,
        actor_name=wording.person_name(actor) if actor is not None else "",
        obj=instance.user,
        object_type="user",
        message=f"{wording.person_name(instance.user)} is no longer a member of {instance.firm.name}.",
        details={"role": instance.role},
    )


def _assignments_changed(
    sender: Any, instance: Model, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action == "pre_clear":
        # The rows are gone after the clear; remember who was assigned.
        through = Household.advisers.through
        column = "user_id" if reverse else "household_id"
        other = "household_id" if reverse else "user_id"
        instance.__dict__["_audit_cleared"] = set(
            through.objects.filter(**{column: instance.pk}).values_list(other, flat=True)
        )
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    ids = instance.__dict__.pop("_audit_cleared", set()) if action == "post_clear" else set(pk_set or ())
    if not ids:
        return
    added = action == "post_add"
    if reverse:  # user.assigned_households.add(...)
        pairs = [(household, instance) for household in Household.objects.filter(pk__in=ids).select_related("firm")]
    else:
        household = Household.objects.select_related("firm").get(pk=instance.pk)
        pairs = [(household, user) for user in get_user_model().objects.filter(pk__in=ids)]
    for household, user in pairs:
        _covered(household, user)
        name = wording.person_name(user)
        audit.record(
            Action.ASSIGNMENT_ADDED if added else Action.ASSIGNMENT_REMOVED,
            household=household,
            obj=user,
            object_type="user",
            message=(
                f"{household.name} was assigned to {name}."
                if added
                else f"{household.name} is no longer assigned to {name}."
            ),
            details={"adviser_id": user.pk},
        )


# --- Client links and the connection outbox -------------------------------------------------


def _request_of_link(link: ClientLink) -> ReconnectRequest | None:
    """The reconnect request whose item ``link`` is, or ``None`` for a link sent on its own.

    The item row is written just after its link, so the link is matched to
    the request it was made for: the same client, the same address and the
    very same expiry (an item's link expires with its request; a link sent
    on its own expires its own max age after it was made).
    """
    if link.connection_id is None:
        return None  # requests cover existing connections only
    return (
        ReconnectRequest.objects.filter(client_id=link.client_id, sent_to=link.sent_to, expires_at=link.expires_at)
        .select_related("household__firm")
        .order_by("-created_at")
        .first()
    )


def _client_link_saved(sender: Any, instance: ClientLink, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    request = _request_of_link(instance)
    if request is not None:
        _request_extended(request, instance)
        return
    household = Household.objects.select_related("firm").get(pk=instance.household_id)
    source = wording.source_name(provider=instance.provider_app.provider, platform=instance.platform)
    what = "reconnect" if instance.connection_id else "connect"
    audit.record(
        Action.LINK_SENT,
        actor=instance.created_by,
        household=household,
        obj=instance,
        object_type="client link",
        message=f"A link to {what} {source} was sent to {instance.sent_to}.",
        details={"connection_id": instance.connection_id, "client_id": instance.client_id},
    )


def _request_extended(request: ReconnectRequest, link: ClientLink) -> None:
    """A request item's link: nothing of its own while the request is being made (its first email says it all);
    a connection added to a request already sent is one row naming the request."""
    if not ReconnectRequestEmail.objects.filter(request=request).exists():
        return
    source = wording.source_name(provider=link.provider_app.provider, platform=link.platform)
    audit.record(
        Action.REQUEST_EXTENDED,
        actor=link.created_by,
        household=request.household,
        obj=request,
        object_type="reconnect request",
        message=f"{source} was added to the open reconnect request to {request.sent_to}; the next reminder lists it.",
        details={
            "request_id": str(request.pk),
            "client_id": request.client_id,
            "connection_ids": [link.connection_id],
        },
    )


def _request_email_saved(sender: Any, instance: ReconnectRequestEmail, created: bool, **kwargs: Any) -> None:
    """The first email of a request (written after its items) or a reminder: one row each."""
    if not created:
        return
    request = (
        ReconnectRequest.objects.select_related("household__firm", "client", "created_by")
        .filter(pk=instance.request_id)
        .first()
    )
    if request is None:
        return
    reminder = instance.kind == ReconnectRequestEmail.Kind.REMINDER
    items = ReconnectRequestItem.objects.filter(request=request).order_by("position", "id")
    if reminder:
        # A reminder lists only what still needs the client.
        items = items.filter(status=ReconnectRequestItem.ItemStatus.OPEN)
    covered = list(items.values_list("connection_id", "connection__provider", "connection__platform"))
    sources = ", ".join(wording.source_name(provider=p, platform=pl) for _, p, pl in covered) or "nothing"
    details = {
        "request_id": str(request.pk),
        "client_id": request.client_id,
        "connection_ids": [pk for pk, _, _ in covered],
    }
    if reminder:
        number = ReconnectRequestEmail.objects.filter(
            request=request, kind=ReconnectRequestEmail.Kind.REMINDER, pk__lte=instance.pk
        ).count()
        audit.record(
            Action.REMINDER_SENT,
            ambient=False,  # the reminders job's doing, whoever's request it runs in
            actor_name=wording.actor_words(actor_label=wording.REMINDERS),
            household=request.household,
            obj=request,
            object_type="reconnect request",
            message=f"Reminder {number} of the reconnect request to {request.sent_to} ({request.client.name}) "
            f"was sent, for {sources}.",
            details={**details, "reminder": number},
        )
        return
    audit.record(
        Action.REQUEST_SENT,
        actor=request.created_by,
        actor_name=wording.actor_words(actor=request.created_by, actor_label=request.actor_label),
        household=request.household,
        obj=request,
        object_type="reconnect request",
        message=f"A reconnect request was sent to {request.sent_to} ({request.client.name}) for {sources}.",
        details={**details, "bulk_id": str(request.bulk_id) if request.bulk_id else ""},
    )


def _schedule_fold(connection_id: int) -> None:
    request = audit.current_request()
    since = timezone.now() - FOLD_LOOKBACK
    transaction.on_commit(lambda: connection_events_fold(connection_id=connection_id, since=since, request=request))


def _connection_saved(sender: Any, instance: Connection, created: bool, **kwargs: Any) -> None:
    # Only the grant path saves an existing connection (checks write through
    # UPDATE statements), so this costs nothing on the hot path.
    if not created:
        _schedule_fold(instance.pk)


def _event_saved(sender: Any, instance: ConnectionEvent, created: bool, **kwargs: Any) -> None:
    if created and instance.kind in FOLDED_EVENT_KINDS:
        _schedule_fold(instance.connection_id)


def _unfolded(events: Any) -> Any:
    return events.filter(kind__in=list(FOLDED_EVENT_KINDS)).exclude(
        Exists(AuditEntry.objects.filter(connection_event=OuterRef("pk")))
    )


def connection_events_fold(*, connection_id: int, since: dt.datetime, request: HttpRequest | None = None) -> int:
    """Audit rows for this connection's person-made events since ``since`` not yet in the trail."""
    events = _unfolded(ConnectionEvent.objects.filter(connection_id=connection_id, created_at__gte=since))
    return _fold(events, request=request)


def events_fold_recent(*, now: dt.datetime | None = None) -> int:
    """The catch-up: every such event of the last two days not yet in the trail (no address known)."""
    now = now or timezone.now()
    return _fold(_unfolded(ConnectionEvent.objects.filter(created_at__gte=now - FOLD_CATCH_UP)), request=None)


def _fold(events: Any, *, request: HttpRequest | None) -> int:
    folded = 0
    requester = audit.request_user(request)
    rows = events.select_related("actor", "connection__household__firm").order_by("id")
    for event in rows:
        connection = event.connection
        # The address is the request's only when the request is the event's doer.
        by_requester = (event.actor_id is not None and requester is not None and event.actor_id == requester.pk) or (
            event.actor_id is None and event.actor_label == wording.CLIENT_LINK and requester is None
        )
        try:
            with transaction.atomic():
                audit.record(
                    FOLDED_EVENT_KINDS[event.kind],
                    request=request if by_requester else None,
                    ambient=False,
                    actor=event.actor,
                    actor_name=wording.actor_words(actor=event.actor, actor_label=event.actor_label),
                    household=connection.household,
                    obj=connection,
                    object_type="connection",
                    message=event.message or event.get_kind_display(),
                    details={"event_id": event.pk, "actor_label": event.actor_label},
                    connection_event=event,
                )
        except IntegrityError:
            continue  # folded meanwhile by another process
        folded += 1
    return folded


# --- Admin and watched models ------------------------------------------------------------------

ADMIN_VERBS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


# Fields of a membership whose change is already on the record as a role or a membership row.
_MEMBERSHIP_FIELDS = frozenset({"role", "firm", "user"})


def _labels(body: dict[str, Any]) -> set[str]:
    return {str(label).lower() for label in body.get("fields", [])}


def _admin_change_on_record(entry: LogEntry, model: type[Model] | None) -> bool:
    """Whether every part of what ``entry`` logs was already recorded by this request as its own row.

    Role, membership and assignment changes made in admin reach the trail
    through their own receivers, which name the person and the household; the
    admin's log entry of the same change would record it twice. A part the
    receivers do not record (any other field, any other inline) keeps the row.
    """
    if model is None:
        return False
    label, pk = model._meta.label_lower, entry.object_id or ""
    if model is Membership and entry.action_flag == DELETION:
        return True  # the deletion that follows is recorded (member_removed) in the same transaction
    try:
        parts = json.loads(entry.change_message or "")
    except ValueError:
        return False  # a message in words: nothing to match it against
    if not isinstance(parts, list) or not parts:
        return False
    for part in parts:
        if not isinstance(part, dict) or len(part) != 1:
            return False
        ((kind, body),) = part.items()
        if not isinstance(body, dict):
            return False
        if "name" in body:  # a row of an inline: memberships under a firm or a user
            if body["name"] != Membership._meta.verbose_name or not _is_covered(label, pk):
                return False
            if kind == "changed" and not _labels(body) <= _MEMBERSHIP_FIELDS:
                return False
        elif model is Membership:
            if kind not in ("added", "changed") or not _labels(body) <= _MEMBERSHIP_FIELDS:
                return False
            if not _is_covered(label, pk):
                return False
        elif model is Household:
            if kind != "changed" or _labels(body) != {"advisers"} or not _is_covered(label, pk):
                return False
        else:
            return False
    return True


def _admin_logged(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    model = ContentType.objects.get_for_id(instance.content_type_id).model_class() if instance.content_type_id else None
    if _admin_change_on_record(instance, model):
        return
    noun = model._meta.verbose_name if model is not None else "object"
    verb = ADMIN_VERBS.get(instance.action_flag, "changed")
    audit.record(
        Action.ADMIN_EDIT,
        actor=cast(AuthUser, instance.user),
        actor_name=f"admin {wording.person_name(instance.user)}",
        object_type=str(noun),
        message=f"In admin: {noun} “{instance.object_repr}” {verb}. {instance.get_change_message()}".strip(),
        details={"object_id": instance.object_id or "", "action_flag": instance.action_flag},
        admin_log=instance,
    )


def _watched_change_words(instance: Model, created: bool, fields: list[str]) -> str:
    """What a change to a key or an endpoint did, from the names of the fields it wrote."""
    if created:
        return "created"
    if "revoked_at" in fields and getattr(instance, "revoked_at", None) is not None:
        return "revoked"
    if "is_enabled" in fields:
        return "enabled" if getattr(instance, "is_enabled", False) else "disabled"
    if "secret" in fields:
        return "given a new signing secret"
    return "changed"


def _watched_saved(sender: type[Model], instance: Model, created: bool, **kwargs: Any) -> None:
    words = settings.AUDIT_WATCHED_MODELS.get(sender._meta.label, sender._meta.verbose_name)
    changed = sorted(kwargs.get("update_fields") or [])
    what = _watched_change_words(instance, created, changed)
    audit.record(
        Action.INTEGRATION_CHANGED,
        firm=getattr(instance, "firm", None),
        obj=instance,
        object_type=str(words),
        message=f"{str(words).capitalize()} {redact(str(instance))} {what}.",
        # Names of fields only: these models hold secrets and their hashes.
        details={"created": created, "fields": changed},
    )


def _delivery_saved(sender: type[Model], instance: Any, created: bool, **kwargs: Any) -> None:
    # Automatic deliveries are the dispatcher's; only a person's resend is a new manual row.
    if not created or not getattr(instance, "manual", False):
        return
    endpoint = instance.endpoint
    audit.record(
        Action.WEBHOOK_RESENT,
        firm=endpoint.firm,
        obj=endpoint,
        object_type="webhook endpoint",
        message=f"A webhook event ({instance.event.type}) was sent again to {endpoint.url}.",
        details={"delivery_id": instance.pk, "event_id": instance.event_id, "endpoint_id": endpoint.pk},
    )


def _watched_deleted(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    words = settings.AUDIT_WATCHED_MODELS.get(sender._meta.label, sender._meta.verbose_name)
    audit.record(
        Action.INTEGRATION_CHANGED,
        firm=getattr(instance, "firm", None),
        obj=instance,
        object_type=str(words),
        message=f"{str(words).capitalize()} deleted.",
        details={"deleted": True},
    )


def watch_models(labels: dict[str, str]) -> list[type[Model]]:
    """Connect the watched-model receivers for each installed model in ``labels``."""
    watched = []
    for label in labels:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # that app is not installed here
        post_save.connect(_watched_saved, sender=model, dispatch_uid=f"audit-watch-save-{label}")
        post_delete.connect(_watched_deleted, sender=model, dispatch_uid=f"audit-watch-delete-{label}")
        watched.append(model)
    return watched


def watch_resends(label: str = "api.WebhookDelivery") -> bool:
    """Record a person's resend of a webhook delivery, when the API app is installed."""
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        return False
    post_save.connect(_delivery_saved, sender=model, dispatch_uid="audit-webhook-resend")
    return True


def connect() -> None:
    user_logged_in.connect(_signed_in, dispatch_uid="audit-sign-in")
    user_login_failed.connect(_sign_in_failed, dispatch_uid="audit-sign-in-failed")
    mfa_signals.second_factor_passed.connect(_second_factor_passed, dispatch_uid="audit-2fa-passed")
    mfa_signals.second_factor_failed.connect(_second_factor_failed, dispatch_uid="audit-2fa-failed")
    mfa_signals.second_factor_locked.connect(_second_factor_locked, dispatch_uid="audit-2fa-locked")
    for device in (TOTPDevice, StaticDevice):
        post_init.connect(_device_loaded, sender=device, dispatch_uid=f"audit-device-init-{device.__name__}")
    post_save.connect(_totp_saved, sender=TOTPDevice, dispatch_uid="audit-totp-save")
    post_delete.connect(_totp_deleted, sender=TOTPDevice, dispatch_uid="audit-totp-delete")
    post_save.connect(_static_saved, sender=StaticDevice, dispatch_uid="audit-static-save")
    post_init.connect(_membership_loaded, sender=Membership, dispatch_uid="audit-membership-init")
    post_save.connect(_membership_saved, sender=Membership, dispatch_uid="audit-membership-save")
    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="audit-membership-delete")
    m2m_changed.connect(_assignments_changed, sender=Household.advisers.through, dispatch_uid="audit-assignments")
    post_save.connect(_client_link_saved, sender=ClientLink, dispatch_uid="audit-client-link")
    post_save.connect(_request_email_saved, sender=ReconnectRequestEmail, dispatch_uid="audit-request-email")
    post_save.connect(_connection_saved, sender=Connection, dispatch_uid="audit-connection-save")
    post_save.connect(_event_saved, sender=ConnectionEvent, dispatch_uid="audit-event-save")
    post_save.connect(_admin_logged, sender=LogEntry, dispatch_uid="audit-admin-log")
    watch_models(settings.AUDIT_WATCHED_MODELS)
    watch_resends()
