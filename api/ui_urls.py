"""The firm admins' Integrations pages (namespace ``integrations``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.integrations, name="index"),
    path("keys/new/", views.key_new, name="key_new"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key_revoke"),
    path("endpoints/new/", views.endpoint_new, name="endpoint_new"),
    path("endpoints/<int:pk>/", views.endpoint_detail, name="endpoint_detail"),
    path("endpoints/<int:pk>/edit/", views.endpoint_edit, name="endpoint_edit"),
    path("endpoints/<int:pk>/rotate/", views.endpoint_rotate, name="endpoint_rotate"),
    path("endpoints/<int:pk>/enable/", views.endpoint_enable, name="endpoint_enable"),
    path("endpoints/<int:pk>/disable/", views.endpoint_disable, name="endpoint_disable"),
    path("deliveries/<int:pk>/", views.delivery_detail, name="delivery_detail"),
    path("deliveries/<int:pk>/resend/", views.delivery_resend, name="delivery_resend"),
]
