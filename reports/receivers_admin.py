"""Audit rows for Django admin edits and the watched models of other apps (see :mod:`.receivers`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import User as AuthUser
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest

from connections import wording
from connections.logging import redact
from connections.models import (
    Household,
    Membership,
)

from . import audit
from .models import AuditEntry

Action = AuditEntry.Action


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


# --- Rows an admin page's log entry may carry -----------------------------------------------------


@dataclass
class _Held:
    """A row that an admin page's change made, held until the page's log entry says what else it changed."""

    action: str
    fields: dict[str, Any]
    subjects: frozenset[tuple[str, str]]  # (model label, pk) of each object whose admin page can make it
    written: bool = field(default=False)


def _in_admin(request: HttpRequest) -> bool:
    match = getattr(request, "resolver_match", None)
    return match is not None and "admin" in match.namespaces


def record_or_hold(action: str, *, subjects: list[Model | tuple[str, Any]], **fields: Any) -> None:
    """Record ``action`` now, or, in an admin page, once that page logs its change (one row in all).

    An admin page that changes a role and another field (the firm's name, the
    user's email) logs both in one entry; recording the role as it is saved
    and the entry as well would put one edit on the trail twice. Held, the
    role's row takes the entry's other changes into its own words instead
    (:func:`_admin_logged`). A change no entry claims is recorded when its
    transaction commits.
    """
    request = audit.current_request()
    if request is None or not _in_admin(request):
        audit.record(action, **fields)
        return
    held = _Held(
        action=action,
        fields={"request": request, **fields},
        subjects=frozenset(
            (each[0], str(each[1])) if isinstance(each, tuple) else (each._meta.label_lower, str(each.pk))
            for each in subjects
        ),
    )
    request.__dict__.setdefault("_audit_held", []).append(held)
    transaction.on_commit(lambda: _held_write(held))


def _held_write(held: _Held, *, also: str = "", admin_log: LogEntry | None = None) -> None:
    if held.written:
        return
    held.written = True
    fields = dict(held.fields)
    if also:
        fields["message"] = f"{fields.get('message', '')} {also}".strip()
    audit.record(held.action, admin_log=admin_log, **fields)


def _held_for(entry: LogEntry, model: type[Model] | None) -> list[_Held]:
    """The rows held in this request for the object ``entry`` logs (the member, their firm or their user)."""
    request = audit.current_request()
    if request is None or model is None:
        return []
    subject = (model._meta.label_lower, str(entry.object_id or ""))  # the pk as given: not always a str yet
    return [held for held in request.__dict__.get("_audit_held", []) if not held.written and subject in held.subjects]


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
    held = _held_for(instance, model)
    if _admin_change_on_record(instance, model):
        for each in held:
            _held_write(each)
        return
    noun = model._meta.verbose_name if model is not None else "object"
    verb = ADMIN_VERBS.get(instance.action_flag, "changed")
    if held:
        # One edit, one row: the role's (or membership's) row says what else the page changed.
        first, *rest = held
        _held_write(
            first,
            also=f"In admin, {noun} “{instance.object_repr}” was {verb} as well: {instance.get_change_message()}",
            admin_log=instance,
        )
        for each in rest:
            _held_write(each)
        return
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
