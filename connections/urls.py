"""URLs of the adviser web UI, sign-in and the public client-link and callback pages."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

auth_patterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    # POST only (Django's LogoutView refuses GET), so a link cannot sign anyone out.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

urlpatterns = [
    *auth_patterns,
    path("", views.dashboard, name="dashboard"),
    path("attention/", views.attention_list, name="attention_list"),
    path("connections/", views.connection_list, name="connection_list"),
    path("households/<int:pk>/", views.household_detail, name="household_detail"),
    path("households/<int:pk>/connect/", views.household_connect, name="household_connect"),
    path(
        "households/<int:pk>/connect/credentials/",
        views.household_connect_credentials,
        name="household_connect_credentials",
    ),
    path("households/<int:pk>/links/new/", views.household_link_new, name="household_link_new"),
    path("connections/<int:pk>/", views.connection_detail, name="connection_detail"),
    path("connections/<int:pk>/check/", views.connection_check, name="connection_check"),
    path("connections/<int:pk>/reconnect/", views.connection_reconnect, name="connection_reconnect"),
    path("connections/<int:pk>/disconnect/", views.connection_disconnect, name="connection_disconnect"),
    path("connections/<int:pk>/send-link/", views.connection_link_send, name="connection_link_send"),
    path("connect/<slug:provider>/callback/", views.connect_callback, name="connect_callback"),
    path("link/<str:token>/", views.client_link, name="client_link"),
    # Household reconnect requests and notification hygiene.
    path(
        "households/<int:pk>/reconnect-request/",
        views.household_reconnect_request,
        name="household_reconnect_request",
    ),
    path("reconnect-requests/ask/", views.reconnect_requests_ask, name="reconnect_requests_ask"),
    path("reconnect-requests/bulk/<uuid:pk>/", views.reconnect_bulk, name="reconnect_bulk"),
    path("connections/<int:pk>/quiet/", views.connection_quiet, name="connection_quiet"),
    path("settings/notifications/", views.notification_settings, name="notification_settings"),
    path("r/<str:token>/", views.reconnect_request_open, name="reconnect_request_open"),
    path("requests/<uuid:pk>/", views.reconnect_request_page, name="reconnect_request_page"),
    path("requests/<uuid:pk>/fix/<int:item_pk>/", views.reconnect_request_item, name="reconnect_request_item"),
    path("requests/<uuid:pk>/stop/", views.reconnect_request_stop, name="reconnect_request_stop"),
]
