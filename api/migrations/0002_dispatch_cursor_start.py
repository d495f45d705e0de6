"""Start the webhook dispatcher at the end of the existing history.

Events written before the API existed are history, not news: no firm had an
endpoint, and replaying years of them into the feed on the first deploy would
only be a long first pass.
"""

from django.db import migrations
from django.db.models import Max


def start_at_the_end(apps, schema_editor):
    ConnectionEvent = apps.get_model("connections", "ConnectionEvent")
    DispatchCursor = apps.get_model("api", "DispatchCursor")
    high = ConnectionEvent.objects.aggregate(high=Max("id"))["high"] or 0
    DispatchCursor.objects.update_or_create(pk=1, defaults={"last_event_id": high, "pending_high": high})


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("connections", "0003_reason_unreadable_and_turnqey_grouping"),
    ]

    operations = [migrations.RunPython(start_at_the_end, migrations.RunPython.noop)]
