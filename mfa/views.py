"""Setting up, giving and managing the second factor. Pages in the portal's own layout."""

from __future__ import annotations

import datetime as dt
from base64 import b32encode

import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User as AuthUser
from django.db import transaction
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp import verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import lockout, policy, signals
from .forms import CodeForm, SetupForm


def _next(request: HttpRequest, default: str = "dashboard") -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    from django.urls import reverse

    return reverse(default)


def _user(request: HttpRequest) -> AuthUser:
    user = request.user
    assert isinstance(user, AuthUser)  # login_required ran
    return user


def _private(response: HttpResponseBase) -> HttpResponseBase:
    # These pages show a secret (the app's key, recovery codes): never cached, never sent to another site in a Referer.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    return response


def _new_recovery_codes(device: StaticDevice) -> list[str]:
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(policy.RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


@login_required
def manage(request: HttpRequest) -> HttpResponseBase:
    user = _user(request)
    recovery = policy.recovery_device_for(user)
    context = {
        "device": policy.authenticator_for(user),
        "recovery_left": recovery.token_set.count() if recovery is not None else 0,
        "required": policy.second_factor_required(user),
        "verified": policy.session_verified(user),
    }
    return _private(render(request, "mfa/manage.html", context))


@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
@login_required
def setup(request: HttpRequest) -> HttpResponseBase:
    """Add an authenticator app: scan, type one code to prove it works, keep the recovery codes."""
    user = _user(request)
    if policy.has_second_factor(user):
        # Only the manage page, once this session has given a code, may change an existing factor.
        return redirect("mfa:manage")
    device = policy.authenticator_for(user, confirmed=False) or TOTPDevice.objects.create(
        user=user, name=policy.AUTHENTICATOR_NAME, confirmed=False
    )
    form = SetupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["code"]):
            with transaction.atomic():
                recovery = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
                codes = _new_recovery_codes(recovery)
                device.confirmed = True
                device.save()
            otp_login(request, device)
            context = {"codes": codes, "next": _next(request), "first_time": True}
            return _private(render(request, "mfa/recovery_codes.html", context))
        allowed, _ = device.verify_is_allowed()
        form.add_error(
            "code",
            "That code did not match. Check the time on your phone and type the code it shows now."
            if allowed
            else "Too many wrong codes in a row. Wait a few seconds, then try the newest code.",
        )
    url = device.config_url
    context = {
        "form": form,
        "qr": segno.make(url, error="m").svg_data_uri(scale=5, border=2),
        "secret": b32encode(device.bin_key).decode(),
        "required": policy.second_factor_required(user),
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }
    return _private(render(request, "mfa/setup.html", context, status=400 if form.errors else 200))


def _locked_words(until: dt.datetime) -> str:
    return (
        "Too many wrong codes in a row. For your safety no code is accepted, not even the right one, "
        f"until {timezone.localtime(until):%H:%M} ({timezone.localtime(until):%d %b %Y}). "
        "Sign out and come back then, or ask your firm admin for help."
    )


@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
@login_required
def verify(request: HttpRequest) -> HttpResponseBase:
    """The second step of signing in: a code from the app, or a recovery code (each works once).

    Wrong codes lock the user out like wrong passwords (:mod:`mfa.lockout`);
    django-otp's doubling wait per device applies beneath that.
    """
    user = _user(request)
    device = policy.authenticator_for(user)
    if device is None or policy.session_verified(user):
        return redirect(_next(request))
    form = CodeForm(request.POST or None)
    status = 200
    address = lockout.address_of(request)
    until = lockout.locked_until(user, address=address)
    if request.method == "POST" and form.is_valid():
        code = form.normalised()
        by_app = code.isdigit()
        method = "authenticator" if by_app else "recovery_code"
        candidate = device if by_app else policy.recovery_device_for(user)
        if until is not None:
            # Not even checked: a right code during the lockout would tell a guesser it was right.
            signals.second_factor_failed.send(
                sender=verify, request=request, user=user, method=method, throttled=True, locked_until=until
            )
            form.add_error("code", _locked_words(until))
            status = 429
        elif candidate is not None and not candidate.verify_is_allowed()[0]:
            signals.second_factor_failed.send(sender=verify, request=request, user=user, method=method, throttled=True)
            form.add_error("code", "Too many wrong codes in a row. Wait a little, then try again.")
        else:
            accepted = verify_token(user, candidate.persistent_id, code) if candidate is not None else None
            if accepted is not None:
                lockout.success_record(user, address=address)
                otp_login(request, accepted)
                signals.second_factor_passed.send(sender=verify, request=request, user=user, method=method)
                if not by_app:
                    messages.info(request, "You used a recovery code; it will not work again.")
                return redirect(_next(request))
            failure = lockout.failure_record(user, address=address)
            if failure.locked_until is not None:
                until = failure.locked_until
                signals.second_factor_locked.send(
                    sender=verify,
                    request=request,
                    user=user,
                    method=method,
                    failures=failure.failures_everywhere if failure.everywhere else failure.failures,
                    until=until,
                    address=address,
                    everywhere=failure.everywhere,
                )
                form.add_error("code", _locked_words(until))
                status = 429
            else:
                signals.second_factor_failed.send(sender=verify, request=request, user=user, method=method)
                form.add_error("code", "That code is not right. Type the code your app shows now, or a recovery code.")
    if form.errors and status == 200:
        status = 400
    context = {
        "form": form,
        "next": request.POST.get("next") or request.GET.get("next", ""),
        "locked_words": _locked_words(until) if until is not None and not form.errors else "",
    }
    return _private(render(request, "mfa/verify.html", context, status=status))


@require_POST
@login_required
def recovery_codes(request: HttpRequest) -> HttpResponseBase:
    """A new set of recovery codes; the old ones stop working."""
    user = _user(request)
    recovery = policy.recovery_device_for(user)
    if recovery is None or not policy.session_verified(user):
        return redirect("mfa:manage")
    with transaction.atomic():
        codes = _new_recovery_codes(recovery)
        # The name carries when the set was made; the audit trail reads the rename as "replaced".
        recovery.name = f"Recovery codes ({timezone.now():%Y-%m-%d %H:%M:%S.%f})"
        recovery.save()
    return _private(render(request, "mfa/recovery_codes.html", {"codes": codes, "next": _next(request, "mfa:manage")}))


@require_POST
@login_required
def remove(request: HttpRequest) -> HttpResponseBase:
    user = _user(request)
    if not policy.session_verified(user):
        return redirect("mfa:manage")
    if policy.second_factor_required(user):
        messages.error(request, "Your firm (or your admin access) requires a second factor, so it cannot be removed.")
        return redirect("mfa:manage")
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        for device in TOTPDevice.objects.filter(user=user):
            device.delete()
    messages.success(request, "The second factor was removed. You sign in with your password alone.")
    return redirect("mfa:manage")
