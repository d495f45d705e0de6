from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Local simulators of the four provider APIs.

    Written from the providers' documentation only: it imports nothing from
    ``connections`` and the provider clients import nothing from it.
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "sandbox"
    verbose_name = "Provider sandbox"
