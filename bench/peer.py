"""The pages' peer: Django admin's changelist of the same connections (what a Django team ships first).

The portal's own ``ConnectionAdmin`` (its columns, filters, search and
``list_select_related``), on an admin site of the benchmark's own that also
accepts a filter by the households' advisers: the dashboard's peer is the
changelist of one adviser's connections, the household page's the changelist
of one household's. It is mounted beside the portal's URLs
(:data:`urlpatterns`, used with ``ROOT_URLCONF = "bench.peer"``) and visited by
a superuser through the same test client as the pages.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import path

from connections.admin import ConnectionAdmin
from connections.models import Connection
from portal.urls import urlpatterns as portal_urlpatterns

PREFIX = "bench-peer-admin/"


class PeerConnectionAdmin(ConnectionAdmin):
    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        if lookup.startswith("household__advisers"):
            return True
        return super().lookup_allowed(lookup, value, request)


site = admin.AdminSite(name="bench_peer")
site.register(Connection, PeerConnectionAdmin)

urlpatterns = [path(PREFIX, site.urls), *portal_urlpatterns]


def changelist_url(**filters: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return f"/{PREFIX}connections/connection/" + (f"?{query}" if query else "")
