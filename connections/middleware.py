"""Each signed-in user's own time zone for the whole request (their digest settings' ``time_zone``)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from .models import NotificationSettings
from .notifications.digests import zone_named


class UserTimeZoneMiddleware:
    """Activates the signed-in user's time zone while their request is served, so pages (``{% clock %}``,
    ``|date``, ``timezone.localtime``) and forms ("snooze until" a date) read in it, not in the server's.

    One small query per signed-in request; no settings row, or an unknown zone, means ``TIME_ZONE``.
    Anyone not signed in (a client on their link) gets ``TIME_ZONE``. Must follow AuthenticationMiddleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        name = NotificationSettings.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
        with timezone.override(zone_named(name)):
            return self.get_response(request)
