"""Top-level URLs. The sandbox is mounted only when SANDBOX_ENABLED is on."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from connections.health import healthz
from portal import outbox

# Django renders 400/403/404 from the templates of the same name; 500 needs a view to keep the header.
handler500 = "portal.errors.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("account/security/", include("mfa.urls")),
    path("reports/", include("reports.urls")),
    # Development only: every page of it is a 404 while DEBUG is off.
    path("dev/outbox/", outbox.outbox_list, name="dev_outbox"),
    path("dev/outbox/<str:name>/", outbox.outbox_detail, name="dev_outbox_message"),
    path("", include("api.urls")),
    path("", include("connections.urls")),
]

# Delivery reports from the email provider (django-anymail), only when their basic-auth secret is set.
if settings.ANYMAIL.get("WEBHOOK_SECRET"):
    urlpatterns.append(path("anymail/", include("anymail.urls")))

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
