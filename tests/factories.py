"""factory_boy factories for the domain model. Shared by every test module."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from connections import models as m


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password = factory.django.Password("correct-horse-battery")


class FirmFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Firm

    name = factory.Sequence(lambda n: f"Firm {n}")
    slug = factory.Sequence(lambda n: f"firm-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Membership

    user = factory.SubFactory(UserFactory)
    firm = factory.SubFactory(FirmFactory)
    role = m.Membership.Role.ADVISER


class HouseholdFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Household
        skip_postgeneration_save = True

    firm = factory.SubFactory(FirmFactory)
    name = factory.Sequence(lambda n: f"Household {n}")

    @factory.post_generation
    def advisers(self, create: bool, extracted: list | None, **kwargs: object) -> None:
        if create and extracted:
            self.advisers.add(*extracted)


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Client

    household = factory.SubFactory(HouseholdFactory)
    name = factory.Sequence(lambda n: f"Client {n}")
    email = factory.Sequence(lambda n: f"client{n}@example.test")


class ProviderAppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ProviderApp
        django_get_or_create = ("provider", "environment", "name")

    provider = m.Provider.TURNQEY
    environment = m.Environment.SANDBOX
    name = "default"
    base_url = factory.LazyAttribute(lambda o: f"http://provider.test/{o.provider}")
    client_id = factory.LazyAttribute(lambda o: f"{o.provider}-client-id")
    client_secret = factory.LazyAttribute(lambda o: f"{o.provider}-client-secret")


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Connection

    client = factory.SubFactory(ClientFactory)
    household = factory.SelfAttribute("client.household")
    provider_app = factory.SubFactory(ProviderAppFactory)
    provider = factory.SelfAttribute("provider_app.provider")
    platform = "coinbase"
    status = m.Status.ACTIVE
    external_account_id = factory.Sequence(lambda n: f"acct-{n}")
    last_success_at = factory.LazyFunction(timezone.now)
    connected_at = factory.LazyFunction(timezone.now)
    next_check_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=30))


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Credential

    connection = factory.SubFactory(ConnectionFactory)
    kind = m.Credential.Kind.ACCESS
    value = factory.Sequence(lambda n: f"secret-token-{n}")
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=20))


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Account

    connection = factory.SubFactory(ConnectionFactory)
    external_id = factory.Sequence(lambda n: f"acc-{n}")
    name = "BTC wallet"
    currency = "BTC"
    balance = factory.Faker("pydecimal", left_digits=3, right_digits=8, positive=True)


class ConnectionEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ConnectionEvent

    connection = factory.SubFactory(ConnectionFactory)
    kind = m.ConnectionEvent.Kind.RENEWED
    actor_label = "job:check"


class AuthorizationRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.AuthorizationRequest

    connection = factory.SubFactory(ConnectionFactory, status=m.Status.PENDING, external_account_id="")
    household = factory.SelfAttribute("connection.household")
    client = factory.SelfAttribute("connection.client")
    provider_app = factory.SelfAttribute("connection.provider_app")
    provider = factory.SelfAttribute("connection.provider")
    platform = factory.SelfAttribute("connection.platform")
    state_hash = factory.Sequence(lambda n: f"{n:064d}")
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=15))


def registered_model_admins() -> list[tuple[type, object]]:
    """Every model registered with the admin site and its ModelAdmin, through the site's public API."""
    from django.apps import apps
    from django.contrib import admin

    return [
        (model, admin.site.get_model_admin(model)) for model in apps.get_models() if admin.site.is_registered(model)
    ]
