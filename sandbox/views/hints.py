"""``/sandbox/_hints/``: who can sign in to the simulated providers (development only; see :mod:`sandbox.hints`)."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .. import hints
from ..services import bloquo, coinify
from ..services.common import SandboxError

PROVIDERS = ("coinify", "bloquo", "dapi", "turnqey")


@never_cache
@require_http_methods(["GET", "POST"])
def sign_ins(request: HttpRequest) -> HttpResponse:
    """The demo's people per provider; POST issues a Bloquo secret or a Coinify offline token, shown once."""
    if not hints.hints_enabled():
        raise Http404("Sign-in hints are shown in development only.")
    wanted = request.GET.get("provider", "")
    context: dict[str, Any] = {"only": wanted if wanted in PROVIDERS else ""}
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "bloquo-secret":
                hint, secret = hints.bloquo_secret_issue(
                    mount=request.POST.get("mount", ""), customer_id=request.POST.get("customer_id", "")
                )
                context["issued"] = {
                    "words": bloquo.ISSUED_SECRET,
                    "who": hint.name,
                    "id": hint.client_id,
                    "secret": secret,
                }
            elif action == "coinify-offline":
                user, token = hints.coinify_offline_token_issue(user_id=_int(request.POST.get("user_id")))
                context["issued"] = {"words": coinify.ISSUED_SECRET, "who": user.email, "id": "", "secret": token}
            else:
                raise SandboxError("Choose what to issue.")
        except SandboxError as error:
            context["error"] = error.message
            status = error.status
    context.update(
        coinify=hints.coinify_hints(),
        bloquo=hints.bloquo_hints(),
        dapi=hints.dapi_usernames(),
    )
    response = render(request, "sandbox/sign_ins.html", context, status=status)
    # A fresh secret may be on the page: it is not cached, and no link to another
    # site carries the address on. Not "no-referrer": with it, Chromium sends
    # "Origin: null" on the page's own forms, which CSRF protection refuses.
    response["Referrer-Policy"] = "same-origin"
    return response


def _int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise SandboxError("Choose a user.") from None
