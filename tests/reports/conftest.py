"""Fixtures for the second factor and firm oversight: the web tests' world (two firms, advisers, a firm admin)."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.http import StreamingHttpResponse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.web.conftest import (  # noqa: F401 - fixtures shared with tests/web
    PASSWORD,
    World,
    browser_context_args,
    browser_type_launch_args,
    fake_provider,
    world,
)

__all__ = ["PASSWORD", "World", "code_for", "csv_rows", "enrolled"]


def csv_rows(response: Any) -> list[dict[str, str]]:
    """The rows of a streamed CSV response, by header."""
    assert isinstance(response, StreamingHttpResponse), type(response)
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


def code_for(device: TOTPDevice) -> str:
    """The code the authenticator app would show now."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def enrolled(user: Any) -> TOTPDevice:
    """A confirmed authenticator and one recovery code, ``recover1``."""
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    static = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    static.token_set.create(token="recover1")
    return device
