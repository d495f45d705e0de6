"""Wrong second-factor codes, per user: what the lockout counts. In the database, so every process agrees."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class CodeFailures(models.Model):
    """The wrong codes (from the app or recovery codes) a user typed in a row, and the lockout they led to.

    No row, or ``failures`` 0, means nothing against the user. A right code
    before the limit clears the count; at the limit ``locked_until`` is set
    and every code is refused until then (:mod:`mfa.lockout`).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    failures = models.PositiveSmallIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "wrong second-factor codes"
        verbose_name_plural = "wrong second-factor codes"

    def __str__(self) -> str:
        return f"{self.failures} wrong codes in a row"
