"""Wrong second-factor codes, per user and address: what the lockout counts (in the database, for every process)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

# The ``address`` of the row that counts a user's wrong codes from every address together.
EVERY_ADDRESS = "*"


class CodeFailures(models.Model):
    """The wrong codes (from the app or recovery codes) a user typed in a row from one address, and the lockout.

    One row per user and address, and one per user for every address together
    (``address`` is :data:`EVERY_ADDRESS`). No row, or ``failures`` 0, means
    nothing against the user there. A right code before the limit clears the
    count; at the limit ``locked_until`` is set and every code from that
    address (or, on the every-address row, from anywhere) is refused until
    then (:mod:`mfa.lockout`).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # As axes sees it (AXES_CLIENT_IP_CALLABLE); "" when it could not tell.
    address = models.CharField(max_length=45, blank=True)
    failures = models.PositiveSmallIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "wrong second-factor codes"
        verbose_name_plural = "wrong second-factor codes"
        constraints = [models.UniqueConstraint(fields=["user", "address"], name="mfa_codefailures_user_address")]

    def __str__(self) -> str:
        where = (
            "from every address" if self.address == EVERY_ADDRESS else f"from {self.address or 'an unknown address'}"
        )
        return f"{self.failures} wrong codes in a row {where}"
