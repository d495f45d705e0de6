"""Top-level URLs. The sandbox is mounted only when SANDBOX_ENABLED is on."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from connections.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("connections.urls")),
]

# Delivery reports from the email provider (django-anymail), only when their basic-auth secret is set.
if settings.ANYMAIL.get("WEBHOOK_SECRET"):
    urlpatterns.append(path("anymail/", include("anymail.urls")))

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
