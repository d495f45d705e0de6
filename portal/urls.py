"""Top-level URLs. The sandbox is mounted only when SANDBOX_ENABLED is on."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from connections.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("connections.urls")),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
