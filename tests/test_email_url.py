"""EMAIL_URL is read by one pure function: mail servers as django-environ reads them, ESPs through anymail."""

from __future__ import annotations

import pytest

from portal.email_url import EmailUrlError, email_settings_from_url


def test_an_smtp_url_is_django_environs_reading_with_its_credentials_decoded() -> None:
    config = email_settings_from_url("smtp+tls://mailer:p%40ss%2Fword@mail.example.com:587")
    assert config["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (config["EMAIL_HOST"], config["EMAIL_PORT"]) == ("mail.example.com", 587)
    assert (config["EMAIL_HOST_USER"], config["EMAIL_HOST_PASSWORD"]) == ("mailer", "p@ss/word")
    assert config["EMAIL_USE_TLS"] is True
    assert "ANYMAIL" not in config


def test_smtps_and_smtp_ssl_and_plain_smtp_choose_their_encryption() -> None:
    assert email_settings_from_url("smtps://u:p@mail.example.com:587")["EMAIL_USE_TLS"] is True
    ssl = email_settings_from_url("smtp+ssl://u:p@mail.example.com:465")
    assert ssl["EMAIL_USE_SSL"] is True
    plain = email_settings_from_url("smtp://localhost:1025")
    assert not plain.get("EMAIL_USE_TLS")
    assert not plain.get("EMAIL_USE_SSL")


def test_console_is_the_console_backend() -> None:
    for url in ("console://", "consolemail://"):
        assert email_settings_from_url(url)["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


def test_an_anymail_mailgun_url_sets_the_backend_key_and_query_settings() -> None:
    config = email_settings_from_url("anymail+mailgun://key-0123abc@?sender_domain=mg.example.com")
    assert config == {
        "EMAIL_BACKEND": "anymail.backends.mailgun.EmailBackend",
        "ANYMAIL": {"MAILGUN_API_KEY": "key-0123abc", "MAILGUN_SENDER_DOMAIN": "mg.example.com"},
    }


def test_postmark_takes_a_server_token_and_mailjet_a_key_and_a_secret() -> None:
    assert email_settings_from_url("anymail+postmark://1f2e3d4c-token@") == {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL": {"POSTMARK_SERVER_TOKEN": "1f2e3d4c-token"},
    }
    mailjet = email_settings_from_url("anymail+mailjet://public:se%2Fcret@")
    assert mailjet["ANYMAIL"] == {"MAILJET_API_KEY": "public", "MAILJET_SECRET_KEY": "se/cret"}
    ses = email_settings_from_url("anymail+amazon_ses://?configuration_set_name=portal")
    assert ses == {
        "EMAIL_BACKEND": "anymail.backends.amazon_ses.EmailBackend",
        "ANYMAIL": {"AMAZON_SES_CONFIGURATION_SET_NAME": "portal"},
    }


@pytest.mark.parametrize(
    "url",
    [
        "anymail+pigeon://s3cret-key@",  # an ESP anymail does not have
        "anymail+mailgun://s3cret-key@api.mailgun.net",  # a host it would ignore
        "anymail+postmark://s3cret-key:s3cret-more@",  # one credential too many
        "gopher://s3cret-key@mail.example.com",  # not a mail scheme
        "s3cret-key",  # not a URL
    ],
)
def test_an_unreadable_url_is_refused_without_repeating_its_credential(url: str) -> None:
    with pytest.raises(EmailUrlError) as refused:
        email_settings_from_url(url)
    assert "s3cret" not in str(refused.value)
