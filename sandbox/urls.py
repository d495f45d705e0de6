"""URLs of the sandbox, mounted at ``/sandbox/`` (portal/urls.py, or sandbox/server_urls.py).

Each provider's simulator sits under its own prefix with the documented paths
beneath; every provider view receives its mount as the ``ns`` keyword, which
is how Bloquo's staging and production mounts keep separate worlds.
"""

from django.urls import include, path

from .views import bloquo, coinify, control, dapi, hints, turnqey

app_name = "sandbox"

turnqey_urls = [
    path("v1/api/token", turnqey.token, name="turnqey-token"),
    path("authorize", turnqey.authorize, name="turnqey-authorize"),
    path(
        "v1/api/collections/<str:collection>/accounts",
        turnqey.collection_accounts,
        name="turnqey-collection-accounts",
    ),
    path("v1/api/identities/<str:identity>/accounts", turnqey.identity_accounts, name="turnqey-identity-accounts"),
]

coinify_urls = [
    path("auth", coinify.auth, name="coinify-auth"),
    path("auth/revoke", coinify.revoke, name="coinify-revoke"),
    path("me", coinify.me, name="coinify-me"),
    path("me/deactivate", coinify.deactivate, name="coinify-deactivate"),
]


def bloquo_urls(prefix: str) -> list:
    return [
        path("api/v1/auth/token", bloquo.token, name=f"{prefix}-token"),
        path("api/v1/accounting/customer", bloquo.customer, name=f"{prefix}-customer"),
        path("api/v1/accounting/accounts", bloquo.accounts, name=f"{prefix}-accounts"),
    ]


dapi_urls = [
    path("connect", dapi.connect, name="dapi-connect"),
    path("v2/auth/ExchangeToken", dapi.exchange_token, name="dapi-exchange-token"),
    path("v2/data/identity/get", dapi.identity_get, name="dapi-identity"),
    path("v2/data/accounts/get", dapi.accounts_get, name="dapi-accounts"),
    path("v2/users/DelinkUser", dapi.delink_user, name="dapi-delink"),
]

control_urls = [
    path("", control.index, name="control"),
    path("reset", control.reset, name="control-reset"),
    path("apps", control.apps, name="control-apps"),
    path("subjects", control.subjects, name="control-subjects"),
    path("actions", control.actions, name="control-actions"),
    path("lifetimes", control.lifetimes, name="control-lifetimes"),
    path("faults", control.faults, name="control-faults"),
    path("faults/<int:fault_id>", control.fault_detail, name="control-fault"),
    path("requests", control.requests_log, name="control-requests"),
]

urlpatterns = [
    path("_control/", include(control_urls)),
    # Development only (SANDBOX_SIGN_IN_HINTS): who can sign in, for a demo without a command line.
    path("_hints/", hints.sign_ins, name="sign-in-hints"),
    path("turnqey/", include(turnqey_urls), {"ns": "turnqey"}),
    path("coinify/", include(coinify_urls), {"ns": "coinify"}),
    path("bloquo/", include(bloquo_urls("bloquo")), {"ns": "bloquo"}),
    path("bloquo-production/", include(bloquo_urls("bloquo-production")), {"ns": "bloquo-production"}),
    path("dapi/", include(dapi_urls), {"ns": "dapi"}),
]
