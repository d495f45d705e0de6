"""Each signed-in user's own time zone for the whole request (their digest settings' ``time_zone``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from . import selectors
from .models import NotificationSettings
from .notifications.digests import zone_named

_NOT_READ = object()
# Pages that never depend on who is signed in: the provider sandbox (a stand-in for the providers' sites).
UNZONED_NAMESPACES = {"sandbox"}


class UserTimeZoneMiddleware:
    """Activates the signed-in user's time zone while their view runs and its response renders, so
    pages (``{% clock %}``, ``|date``, ``timezone.localtime``) and forms ("snooze until" a date) read
    in it, not in the server's.

    No query of its own for a member: the zone comes with the membership the page reads anyway
    (:func:`selectors.membership_queryset`, loaded here or already by the second step, which is
    why this runs in ``process_view`` after it). Staff without a firm cost one small query. No
    settings row, or an unknown zone, means ``TIME_ZONE``/UTC (:func:`zone_named`); anyone not
    signed in (a client on their link) gets ``TIME_ZONE``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return self.get_response(request)
        finally:
            # Whatever zone was active before this request is active again (never leak one
            # request's zone into the next on this thread).
            override = getattr(request, "user_time_zone", None)
            if override is not None:
                override.__exit__(None, None, None)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> None:
        match = request.resolver_match
        if match is not None and UNZONED_NAMESPACES & set(match.namespaces):
            return  # before request.user is read: the sandbox runs even where auth is not installed
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return
        membership = selectors.membership_for(user=user)
        name = getattr(membership, "time_zone_name", _NOT_READ) if membership is not None else _NOT_READ
        if name is _NOT_READ:
            name = NotificationSettings.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
        override = timezone.override(zone_named(name))  # type: ignore[arg-type]
        override.__enter__()
        request.user_time_zone = override  # type: ignore[attr-defined]
