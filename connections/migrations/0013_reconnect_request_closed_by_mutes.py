"""A reconnect request emptied by the adviser's mutes closes as "muted", not "resolved" (nothing was fixed).

Requests already closed that way are relabelled: resolved, none of their
items done, at least one withdrawn (its connection muted). Reversed, they
read "resolved" again, as before.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import Exists, OuterRef


def relabel_requests_closed_by_mutes(apps: Any, schema_editor: Any) -> None:
    request_model = apps.get_model("connections", "ReconnectRequest")
    item_model = apps.get_model("connections", "ReconnectRequestItem")
    items = item_model.objects.filter(request=OuterRef("pk"))
    request_model.objects.filter(status="resolved").filter(
        Exists(items.filter(status="withdrawn")), ~Exists(items.filter(status="done"))
    ).update(status="muted")


def relabel_back(apps: Any, schema_editor: Any) -> None:
    apps.get_model("connections", "ReconnectRequest").objects.filter(status="muted").update(status="resolved")


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0012_mute_belongs_to_the_connection"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reconnectrequest",
            name="status",
            field=models.CharField(
                choices=[
                    ("sent", "Sent"),
                    ("opened", "Opened"),
                    ("partly_done", "Partly done"),
                    ("done", "Done"),
                    ("resolved", "Nothing left to fix"),
                    ("muted", "Closed: its connections were muted"),
                    ("expired", "Expired"),
                    ("paused", "Stopped by the client"),
                    ("superseded", "Replaced by a new request"),
                ],
                default="sent",
                max_length=20,
            ),
        ),
        migrations.RunPython(relabel_requests_closed_by_mutes, relabel_back),
    ]
