"""The Integrations pages: a firm admin's API keys and webhook endpoints, the delivery log, resend.

Firm admins only (an adviser gets a 403 page); every object is looked up in
the admin's own firm, so another firm's key, endpoint or delivery is a 404. A
new key or signing secret is rendered once, in the reply to the POST that
made it (never put in a message, a session or a URL), on a page that is not
cached and sends no referrer. Views are thin: they validate and call
:mod:`api.keys` and :mod:`api.webhooks.services`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections import selectors, wording
from connections.models import Membership
from connections.views.common import member_required, private

from . import keys
from .forms import ApiKeyForm, WebhookEndpointForm
from .models import ApiKey, EventType, WebhookDelivery, WebhookEndpoint
from .webhooks import services

DELIVERIES_PER_PAGE = 25

View = Callable[..., HttpResponseBase]


def firm_admin_required(view: View) -> View:
    """Signed in, in a firm, and its firm admin; an adviser gets a plain 403 page."""

    @member_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        membership = selectors.membership_for(user=request.user)
        if membership is None or not membership.is_firm_admin:
            return render(request, "403.html", status=403)
        return view(request, membership, *args, **kwargs)

    return wrapper


def _index() -> str:
    return reverse("integrations:index")


def _endpoint_url(endpoint: WebhookEndpoint) -> str:
    return reverse("integrations:endpoint_detail", args=[endpoint.pk])


def _endpoint(membership: Membership, pk: int) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint.objects.defer("secret", "previous_secret"), pk=pk, firm=membership.firm_id)


# --- The overview ---------------------------------------------------------------------------


@require_GET
@firm_admin_required
def integrations(request: HttpRequest, membership: Membership) -> HttpResponseBase:
    """The firm's API keys and webhook endpoints (each endpoint with its pending and failed deliveries)."""
    api_keys = ApiKey.objects.filter(firm=membership.firm_id).select_related("created_by").order_by("-created_at")
    endpoints = (
        WebhookEndpoint.objects.filter(firm=membership.firm_id)
        .defer("secret", "previous_secret")
        .annotate(
            pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING)),
            failed=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.FAILED)),
        )
        .order_by("created_at")
    )
    context = {
        "membership": membership,
        "api_keys": api_keys,
        "endpoints": endpoints,
        "api_base": request.build_absolute_uri("/api/v1/"),
        "now": timezone.now(),
    }
    return render(request, "api/integrations.html", context)


# --- API keys -------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@firm_admin_required
def key_new(request: HttpRequest, membership: Membership) -> HttpResponseBase:
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = keys.api_key_create(
            firm=membership.firm, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"], user=request.user
        )
        context = {"api_key": created.api_key, "key": created.key, "api_base": request.build_absolute_uri("/api/v1/")}
        return private(render(request, "api/key_created.html", context))
    status = 400 if request.method == "POST" else 200
    return render(request, "api/key_form.html", {"form": form}, status=status)


@require_POST
@firm_admin_required
def key_revoke(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    api_key = get_object_or_404(ApiKey, pk=pk, firm=membership.firm_id)
    keys.api_key_revoke(api_key=api_key, user=request.user)
    messages.success(request, wording.api_key_revoked(name=api_key.name))
    return redirect(_index())


# --- Webhook endpoints ----------------------------------------------------------------------


def _secret_page(request: HttpRequest, endpoint: WebhookEndpoint, secret: str, *, rotated: bool) -> HttpResponseBase:
    context = {"endpoint": endpoint, "secret": secret, "rotated": rotated}
    if rotated and endpoint.previous_secret_expires_at is not None:
        context["rotation_note"] = wording.webhook_secret_rotated(until=endpoint.previous_secret_expires_at)
    return private(render(request, "api/endpoint_secret.html", context))


@require_http_methods(["GET", "POST"])
@firm_admin_required
def endpoint_new(request: HttpRequest, membership: Membership) -> HttpResponseBase:
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            made = services.endpoint_create(
                firm=membership.firm,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
                user=request.user,
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return _secret_page(request, made.endpoint, made.secret, rotated=False)
    status = 400 if request.method == "POST" else 200
    return render(request, "api/endpoint_form.html", {"form": form, "endpoint": None}, status=status)


@require_http_methods(["GET", "POST"])
@firm_admin_required
def endpoint_edit(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk, firm=membership.firm_id)
    initial = {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types}
    form = WebhookEndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_update(
                endpoint=endpoint,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect(_endpoint_url(endpoint))
    status = 400 if request.method == "POST" else 200
    return render(request, "api/endpoint_form.html", {"form": form, "endpoint": endpoint}, status=status)


@require_GET
@firm_admin_required
def endpoint_detail(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    """The endpoint and its delivery log, newest first (status, attempts, last code and latency)."""
    endpoint = _endpoint(membership, pk)
    deliveries = (
        WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event").order_by("-created_at", "-id")
    )
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    labels = dict(EventType.choices)
    context = {
        "endpoint": endpoint,
        "page": page,
        "event_labels": [labels.get(t, t) for t in endpoint.event_types],
        "now": timezone.now(),
    }
    return render(request, "api/endpoint_detail.html", context)


@require_POST
@firm_admin_required
def endpoint_rotate(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk, firm=membership.firm_id)
    rotated = services.endpoint_secret_rotate(endpoint=endpoint)
    return _secret_page(request, rotated.endpoint, rotated.secret, rotated=True)


@require_POST
@firm_admin_required
def endpoint_enable(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    endpoint = _endpoint(membership, pk)
    services.endpoint_enable(endpoint=endpoint)
    messages.success(request, wording.webhook_endpoint_enabled(url=endpoint.url))
    return redirect(_endpoint_url(endpoint))


@require_POST
@firm_admin_required
def endpoint_disable(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    endpoint = _endpoint(membership, pk)
    services.endpoint_disable(endpoint=endpoint, reason=wording.webhook_endpoint_paused_reason())
    messages.success(request, wording.webhook_endpoint_disabled_by_person(url=endpoint.url))
    return redirect(_endpoint_url(endpoint))


# --- Deliveries -----------------------------------------------------------------------------


def _delivery(membership: Membership, pk: int) -> WebhookDelivery:
    return get_object_or_404(
        WebhookDelivery.objects.select_related("event"),
        pk=pk,
        endpoint__firm=membership.firm_id,
    )


@require_GET
@firm_admin_required
def delivery_detail(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    """Every attempt of one delivery: when, what came back, how long it took."""
    delivery = _delivery(membership, pk)
    context = {"delivery": delivery, "attempts": delivery.attempt_log.order_by("number"), "now": timezone.now()}
    return render(request, "api/delivery_detail.html", context)


@require_POST
@firm_admin_required
def delivery_resend(request: HttpRequest, membership: Membership, pk: int) -> HttpResponseBase:
    delivery = _delivery(membership, pk)
    try:
        services.delivery_resend(delivery=delivery)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, wording.webhook_delivery_resent(event_type=delivery.event.type))
    return redirect(reverse("integrations:endpoint_detail", args=[delivery.endpoint_id]))
