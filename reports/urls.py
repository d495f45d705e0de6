"""Firm oversight, mounted at /reports/."""

from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("", views.reports_index, name="index"),
    path("freshness/", views.freshness_page, name="freshness"),
    path("freshness/export.csv", views.freshness_csv, name="freshness_csv"),
    path("providers/", views.provider_health_page, name="provider_health"),
    path("exports/connections.csv", views.connections_csv, name="connections_csv"),
    path("exports/events.csv", views.events_csv, name="events_csv"),
    path("exports/client-links.csv", views.client_links_csv, name="client_links_csv"),
    path("exports/reconnect-requests.csv", views.reconnect_requests_csv, name="reconnect_requests_csv"),
    path("households/<int:pk>/report.pdf", views.household_pdf, name="household_pdf"),
    path("audit/", views.audit_page, name="audit"),
    path("audit/export.csv", views.audit_csv, name="audit_csv"),
    path("access/", views.access_page, name="access"),
    path("access/export.csv", views.access_csv, name="access_csv"),
    path("settings/", views.firm_settings_page, name="settings"),
]
