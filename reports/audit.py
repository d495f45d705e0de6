"""Writing the audit trail: :func:`record` and the request it happens in.

Only reports/ (and apps that depend on it) call :func:`record`. What happens
inside connections/ reaches the trail through Django signals and the
``ConnectionEvent`` outbox (:mod:`reports.receivers`), so connections never
import this module.

``details`` hold ids, names of changed fields and filter values: never a
secret, a token, a password or a field's value from a watched model.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from axes.helpers import get_client_ip_address
from django.contrib.auth.models import User as AuthUser
from django.http import HttpRequest

from connections import wording
from connections.logging import redact
from connections.models import Firm, Household, Membership

from .models import AuditEntry

Action = AuditEntry.Action

# The request being served in this thread (or task), for receivers that are
# told what changed but not by whom or from where.
_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("audit_request", default=None)


@contextmanager
def request_context(request: HttpRequest) -> Iterator[None]:
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def current_request() -> HttpRequest | None:
    return _request.get()


def client_address(request: HttpRequest | None) -> str | None:
    """The address axes throttles by, so the trail and the lockouts agree on who asked."""
    if request is None:
        return None
    return get_client_ip_address(request) or None


def request_user(request: HttpRequest | None) -> AuthUser | None:
    # request.user is a lazy object; isinstance sees the user it wraps.
    user = getattr(request, "user", None) if request is not None else None
    if isinstance(user, AuthUser) and user.is_authenticated:
        return user
    return None


def firm_of(user: Any) -> Firm | None:
    if not isinstance(user, AuthUser):
        return None
    membership = Membership.objects.filter(user=user).select_related("firm").first()
    return membership.firm if membership is not None else None


def record(
    action: str,
    *,
    message: str,
    request: HttpRequest | None = None,
    actor: AuthUser | None = None,
    actor_name: str = "",
    firm: Firm | None = None,
    household: Household | None = None,
    obj: Any = None,
    object_type: str = "",
    details: Mapping[str, Any] | None = None,
    ambient: bool = True,
    **sources: Any,
) -> AuditEntry:
    """Append one row. ``request`` defaults to the one being served (unless ``ambient`` is
    false); ``actor`` to the request's user.

    ``firm`` defaults to the household's, else the actor's. ``sources`` are the
    row's origin (``connection_event=``, ``admin_log=``).
    """
    if request is None and ambient:
        request = current_request()
    actor = actor if actor is not None else request_user(request)
    if firm is None and household is not None:
        firm = household.firm
    if firm is None:
        firm = firm_of(actor)
    if actor is not None and not actor_name:
        actor_name = wording.person_name(actor)
    return AuditEntry.objects.create(
        firm=firm,
        actor=actor,
        actor_name=actor_name[:200],
        ip_address=client_address(request),
        action=action,
        household=household,
        household_name=household.name[:200] if household is not None else "",
        object_type=object_type or (obj._meta.verbose_name if obj is not None else ""),
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=redact(str(obj))[:300] if obj is not None else "",
        message=redact(message)[:500],
        details=dict(details or {}),
        **sources,
    )
