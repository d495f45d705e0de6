"""A request the client stopped is closed from now on; close the ones stopped before, at the moment they stopped."""

from django.db import migrations
from django.db.models import F


def close_stopped(apps, schema_editor):
    ReconnectRequest = apps.get_model("connections", "ReconnectRequest")
    ReconnectRequest.objects.filter(status="paused", closed_at__isnull=True).update(closed_at=F("paused_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0009_reconnect_request_superseded"),
    ]

    operations = [
        migrations.RunPython(close_stopped, migrations.RunPython.noop),
    ]
