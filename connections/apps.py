from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "connections"
    verbose_name = "Client connections"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401 - registers the system checks
            delivery,  # noqa: F401 - receives the email provider's delivery reports
        )
