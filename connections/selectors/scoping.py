"""Who may see what: the one scoping rule and the querysets every other selector derives from.

Also the status severities roll-ups use, and the related fields pages read without their secrets.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from ..models import (
    Client,
    ClientLink,
    Connection,
    Household,
    Membership,
    NotificationSettings,
    Status,
)
from .prebuilt import STAND_IN_HOUSEHOLD_ID, STAND_IN_USER_ID, prebuilt_statement, stand_in_user

# How bad each status is, for roll-ups and "worst status of the day".
# Disconnected is deliberate, not a fault, so it never makes a household look worse.
STATUS_SEVERITY: dict[str, int] = {
    Status.DISCONNECTED: 0,
    Status.ACTIVE: 1,
    Status.PENDING: 2,
    Status.DEGRADED: 3,
    Status.NEEDS_RECONNECT: 4,
}
SEVERITY_STATUS: dict[int, str] = {v: k for k, v in STATUS_SEVERITY.items()}

# Statuses whose data the adviser still relies on ("data as of").
LIVE_STATUSES = (Status.ACTIVE, Status.DEGRADED, Status.NEEDS_RECONNECT)

User = AuthUser | AnonymousUser


# Pages never decrypt a secret: related provider apps are read without theirs
# (one secret no key decrypts must not take down every page that names the app).
NO_SECRETS = ("provider_app__client_secret",)


# --- Scoping ----------------------------------------------------------------------


def membership_for(*, user: User) -> Membership | None:
    """The user's membership, or ``None`` (anonymous, or not attached to a firm).

    Loaded once with its firm (pages read both) and cached on the user object's
    one-to-one accessor for the rest of the request; a membership the second
    step already loaded is reused as it is.
    """
    if not isinstance(user, AuthUser) or not user.is_authenticated:
        return None
    if not _MEMBERSHIP_OF_USER.is_cached(user):
        membership = membership_read(user_id=user.pk)
        if membership is None:
            return None
        user.membership = membership
    try:
        return user.membership
    except Membership.DoesNotExist:
        return None


def membership_queryset(*, user_id: int) -> QuerySet[Membership]:
    """A user's membership as every page of theirs wants it, in one query: with its firm, and
    ``time_zone_name``, the zone of their digest settings (None without settings)."""
    zone = NotificationSettings.objects.filter(user_id=OuterRef("user_id")).values("time_zone")[:1]
    return Membership.objects.select_related("firm").annotate(time_zone_name=Subquery(zone)).filter(user_id=user_id)


def membership_read(*, user_id: int) -> Membership | None:
    """``membership_queryset(user_id=user_id).first()``, by SQL built once per process
    (:class:`~connections.selectors.prebuilt.PrebuiltStatement`): every page asks it."""
    statement = prebuilt_statement(
        ("membership",), lambda: membership_queryset(user_id=STAND_IN_USER_ID).order_by("pk")[:1]
    )
    rows: list[Membership] = statement.rows(now=timezone.now(), user=user_id)
    return rows[0] if rows else None


_MEMBERSHIP_OF_USER = Membership._meta.get_field("user").remote_field  # the User -> Membership accessor


def household_queryset_for(*, user: User) -> QuerySet[Household]:
    """Every household ``user`` may see. THE scoping rule; everything derives from it."""
    membership = membership_for(user=user)
    if membership is None:
        return Household.objects.none()
    households = firm_household_queryset(firm_id=membership.firm_id)
    if not membership.is_firm_admin:
        # An adviser appears at most once per household in the M2M table, so
        # this join never duplicates rows.
        households = households.filter(advisers=user.pk)
    return households


_ID_RANGE = (-(2**63), 2**63 - 1)  # a BigAutoField's


def household_read(*, user: User, pk: int) -> Household | None:
    """The household ``pk`` with its firm, if ``user`` may see it (:func:`household_queryset_for`), else None.

    By SQL built once per process (:class:`~connections.selectors.prebuilt.PrebuiltStatement`): every
    household page and action starts here.
    """
    membership = membership_for(user=user)
    if membership is None or not _ID_RANGE[0] <= pk <= _ID_RANGE[1]:
        return None  # an id no row can have (the ORM's lookup finds nothing for it; SQL would refuse it)
    is_firm_admin = membership.is_firm_admin

    def build() -> QuerySet[Household]:
        marker = stand_in_user(is_firm_admin=is_firm_admin)
        return household_queryset_for(user=marker).select_related("firm").filter(pk=STAND_IN_HOUSEHOLD_ID)

    rows: list[Household] = prebuilt_statement(("household", is_firm_admin), build).rows(
        now=timezone.now(), user=membership.user_id, firm=membership.firm_id, household=pk
    )
    return rows[0] if rows else None


def firm_household_queryset(*, firm_id: int) -> QuerySet[Household]:
    """Every household of one firm: what its firm admins see, and what the firm's API keys see.

    The firm-wide half of :func:`household_queryset_for`, for callers that act
    for a whole firm rather than for a person (the API authenticates a firm's
    key, not a user).
    """
    return Household.objects.filter(firm_id=firm_id)


def firm_connection_queryset(*, firm_id: int) -> QuerySet[Connection]:
    """Connections of one firm's households (see :func:`firm_household_queryset`)."""
    return Connection.objects.filter(household__in=firm_household_queryset(firm_id=firm_id))


def connection_queryset_for(*, user: User) -> QuerySet[Connection]:
    """Connections of the households ``user`` may see (:func:`household_queryset_for`).

    The same rule written as joins rather than ``household IN (the user's households)``: an adviser
    appears at most once per household, so joining the household and the adviser's assignment never
    repeats a connection, and PostgreSQL walks the adviser's households once instead of first
    de-duplicating them for the ``IN`` (the dashboard's attention list: 2.9 -> 1.1 ms for 2,000
    households). ``tests/web/test_scoping.py`` holds the two forms to the same rows.
    """
    membership = membership_for(user=user)
    if membership is None:
        return Connection.objects.none()
    connections = Connection.objects.filter(household__firm_id=membership.firm_id)
    if not membership.is_firm_admin:
        connections = connections.filter(household__advisers=user.pk)
    return connections


def client_queryset_for(*, user: User) -> QuerySet[Client]:
    return Client.objects.filter(household__in=household_queryset_for(user=user))


def client_link_queryset_for(*, user: User) -> QuerySet[ClientLink]:
    return ClientLink.objects.filter(household__in=household_queryset_for(user=user))
