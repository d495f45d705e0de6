"""URLconf of the separate sandbox server: only ``/sandbox/``, same paths as inside the portal."""

from django.urls import include, path

urlpatterns = [path("sandbox/", include("sandbox.urls"))]
