"""Nowhere but the second step until it is done: verify a code, or set one up when it is required."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import User as AuthUser
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from . import policy

# Pages a signed-in user may reach before the second step: the step itself,
# signing out, and what never depends on who is signed in (a client's own
# link, the provider sandbox, health checks).
OPEN_NAMESPACES = {"mfa", "sandbox"}
OPEN_URL_NAMES = {"logout", "client_link", "healthz"}


class SecondFactorMiddleware:
    """After the password, a user with a second factor must give a code before anything else;
    a user who must have one (:func:`policy.second_factor_required`) and has none is walked
    through setting it up. Both keep where they were going in ``next``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponseBase | None:
        # Before request.user is read: the open pages never depend on who is
        # signed in (the sandbox runs even where auth is not installed).
        match = request.resolver_match
        if match is not None and (OPEN_NAMESPACES & set(match.namespaces) or match.url_name in OPEN_URL_NAMES):
            return None
        user = request.user
        if not user.is_authenticated:
            return None
        if policy.session_verified(user):
            return None
        if not isinstance(user, AuthUser):
            return None
        standing = policy.standing(user)
        if standing.has_second_factor:
            return _to("mfa:verify", request)
        if standing.required:
            return _to("mfa:setup", request)
        return None


def _to(name: str, request: HttpRequest) -> HttpResponseRedirect:
    target = reverse(name)
    if request.method == "GET":
        target += "?" + urlencode({"next": request.get_full_path()})
    return HttpResponseRedirect(target)
