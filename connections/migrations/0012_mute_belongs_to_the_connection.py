"""Muting moves from a connection's problem to the connection itself.

Each connection with an open muted problem keeps its mute: the earliest
such problem's time and who muted it go to ``Connection.muted_at`` /
``muted_by``. Closed problems' mutes had already ended. Going back copies
a connection's mute onto its open problems.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def mutes_to_connections(apps, schema_editor):
    Connection = apps.get_model("connections", "Connection")
    ConnectionProblem = apps.get_model("connections", "ConnectionProblem")
    moved = set()
    for problem in (
        ConnectionProblem.objects.filter(closed_at__isnull=True, muted_at__isnull=False)
        .order_by("connection_id", "muted_at", "id")
        .only("connection_id", "muted_at", "muted_by_id")
    ):
        if problem.connection_id in moved:
            continue
        moved.add(problem.connection_id)
        Connection.objects.filter(pk=problem.connection_id).update(
            muted_at=problem.muted_at, muted_by_id=problem.muted_by_id
        )


def mutes_to_problems(apps, schema_editor):
    Connection = apps.get_model("connections", "Connection")
    ConnectionProblem = apps.get_model("connections", "ConnectionProblem")
    for connection in Connection.objects.filter(muted_at__isnull=False).only("id", "muted_at", "muted_by_id"):
        ConnectionProblem.objects.filter(connection_id=connection.pk, closed_at__isnull=True).update(
            muted_at=connection.muted_at, muted_by_id=connection.muted_by_id
        )


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0011_request_item_withdrawn"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="muted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="connection",
            name="muted_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(mutes_to_connections, mutes_to_problems),
        migrations.RemoveField(
            model_name="connectionproblem",
            name="muted_at",
        ),
        migrations.RemoveField(
            model_name="connectionproblem",
            name="muted_by",
        ),
        migrations.AlterField(
            model_name="connectionproblem",
            name="resolution",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Open"),
                    ("recovered", "Recovered"),
                    ("recovered_muted", "Recovered while muted"),
                    ("cleared", "Cleared before anyone was told"),
                    ("superseded", "Became another problem"),
                    ("disconnected", "Connection removed"),
                ],
                default="",
                max_length=20,
            ),
        ),
    ]
