"""Firms and the people in them: memberships, households, clients."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from .base import TimeStamped

# --- Firms and people ---------------------------------------------------------


class Firm(TimeStamped):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    # Firm oversight settings, set by the firm's admins (reports/ and mfa/ read them).
    mfa_required = models.BooleanField(
        default=False, help_text="Every member must sign in with a second factor (an authenticator app)."
    )
    freshness_window_hours = models.PositiveSmallIntegerField(
        default=24, help_text="A connection's data counts as fresh when it is at most this many hours old."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(TimeStamped):
    """A user's place in one firm. A user belongs to at most one firm."""

    class Role(models.TextChoices):
        ADVISER = "adviser", "Adviser"
        FIRM_ADMIN = "firm_admin", "Firm admin"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ADVISER)
    # The digest job sends each adviser what happened after this moment, then
    # moves it forward: one email per adviser per run, nothing sent twice.
    digest_sent_up_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "role"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.firm})"

    @property
    def is_firm_admin(self) -> bool:
        return self.role == self.Role.FIRM_ADMIN


class Household(TimeStamped):
    """A client household, estate or adviser record: the unit advisers work in."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="households")
    name = models.CharField(max_length=200)
    reference = models.CharField(max_length=64, blank=True, help_text="The firm's own reference for this household.")
    advisers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="assigned_households", blank=True)
    # Provider-side grouping: a new Turnqey connection joins this collection so
    # a household's sources stay together at the provider too.
    turnqey_collection = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["firm", "name"]),
            # Every scoped read joins an adviser's assignments to their households and checks each
            # household's firm: with the firm beside the id, each check is read from this index alone.
            # Without it PostgreSQL visits every household's row, and for an adviser whose households
            # are spread through a large firm it prefers reading all of the firm's households instead.
            models.Index(fields=["id", "firm"], name="household_firm_by_id"),
        ]

    def __str__(self) -> str:
        return self.name


class Client(TimeStamped):
    """A person in a household."""

    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    # Partner-side identity in provider flows (Turnqey `identity`): stable and
    # meaningless outside the portal, so no personal data leaves with it.
    identity = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
