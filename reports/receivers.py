"""How actions reach the audit trail, without the code that performs them knowing about it.

The links, requests and outbox receivers live in :mod:`.receivers_outbox`, the admin
and watched-model ones in :mod:`.receivers_admin`; this module connects them all.

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
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as AuthUser
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_init, post_save
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections import wording
from connections.models import (
    ClientLink,
    Connection,
    ConnectionEvent,
    Firm,
    Household,
    Membership,
    ReconnectRequestEmail,
)
from mfa import signals as mfa_signals

from . import audit
from .models import AuditEntry
from .receivers_admin import _admin_logged, _covered, record_or_hold, watch_models, watch_resends
from .receivers_outbox import (
    _client_link_saved,
    _connection_saved,
    _event_saved,
    _request_email_saved,
)
from .receivers_outbox import connection_events_fold as connection_events_fold
from .receivers_outbox import events_fold_recent as events_fold_recent

Action = AuditEntry.Action


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
    address = str(kw.get("address") or "")
    everywhere = bool(kw.get("everywhere"))
    where = (
        "from every address (someone else may have the password)"
        if everywhere
        else f"from {address or 'an unknown address'}"
    )
    _own_step(
        Action.SECOND_FACTOR_LOCKED,
        request,
        user,
        f"{failures} wrong second-factor codes in a row for {wording.person_name(user)}: no code is accepted "
        f"{where} until {timezone.localtime(until):%Y-%m-%d %H:%M}.",
        details={
            "method": method,
            "failures": failures,
            "until": until.isoformat(),
            "address": address,
            "everywhere": everywhere,
        },
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
    subjects: list[Model | tuple[str, Any]] = [
        instance,
        (Firm._meta.label_lower, instance.firm_id),
        (get_user_model()._meta.label_lower, instance.user_id),
    ]
    if created:
        record_or_hold(
            Action.MEMBER_ADDED,
            subjects=subjects,
            firm=instance.firm,
            obj=instance.user,
            object_type="user",
            message=f"{name} joined {instance.firm.name} as {role.lower()}.",
            details={"role": instance.role},
        )
    elif _was(instance, "role") != instance.role or _was(instance, "firm_id") != instance.firm_id:
        record_or_hold(
            Action.ROLE_CHANGED,
            subjects=subjects,
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
        record_or_hold(
            Action.ASSIGNMENT_ADDED if added else Action.ASSIGNMENT_REMOVED,
            subjects=[household, user],
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
