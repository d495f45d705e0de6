"""Keeping secrets out of every log line: :func:`redact` and :class:`RedactSecretsFilter`.

Defence in depth. Code never logs a secret on purpose (it logs ids, kinds and
statuses); this filter masks what might slip through anyway: a bearer header
in an exception message, a provider's error body that echoes a token, a
``repr`` of a request body, a traceback whose frames quote a URL with
credentials in it.

What is masked (the value only; the name stays so the line still reads):

* ``Bearer <token>`` anywhere, and ``Authorization: <scheme> <credentials>``;
* ``name=value``, ``name: value``, ``"name": "value"`` and ``'name': 'value'``
  when the name is secret-shaped: it contains ``token``, ``secret``,
  ``password``, ``passwd``, ``api_key``/``apikey``, ``access_code``,
  ``authorization``, ``signature``, ``checksum``, ``private_key``,
  ``sessionid``, ``cookie`` (any case, camelCase or snake_case, so
  ``clientSecret``, ``refresh_token`` and ``X-Api-Key`` are all caught); and
  ``state=``, ``code=``, ``pwd=`` or a quoted ``"state":`` (whole names in data
  shapes only, so "status code: 500" stays readable), and likewise the names
  of credential kinds (``refresh=``, ``"offline": …``, ``access``,
  ``permanent``, ``app``), which is how a dict of secrets by kind prints.
  Quoted values are masked up to their closing quote, spaces included; the
  ``value`` of a ``kind='refresh', value='…'`` pair is masked too;
* the same pairs URL-encoded, once or more (``accessCode%3D…``,
  ``%26state%3D…``, ``%2522offline%2522%253A…``), as they appear inside a
  ``next=`` parameter or a logged redirect;
* the password in a URL's user-info (``scheme://user:password@host``);
* the token of a client link or a reconnect request in a path
  (``/link/<token>/``, ``/r/<token>/``, or encoded, ``%2Flink%2F<token>``):
  Django logs the path of every 4xx response ("Gone: /link/…/"), and the
  path is the secret;
* the whole query string of a provider callback (``/connect/<provider>/callback/?…``,
  plain or encoded): it carries the state, Dapi's access code and user secret,
  and the client's identities;
* Fernet tokens (our own ciphertext, ``gAAAAA…``), JWT-shaped strings
  (``eyJ….….…``) and PEM private key blocks, whatever surrounds them.

``settings.LOGGING`` attaches the filter to every handler, and the Celery
signals below attach it to the handlers Celery adds in a worker, so no record
reaches an output unfiltered. The filter formats the record's message and
traceback once, redacts the text, and leaves it on the record (``msg`` with no
``args``, ``exc_text``), so every later handler and formatter sees the masked
text. :func:`redact` is also what event messages and provider error texts go
through before they are stored or shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

REDACTED = "[redacted]"

# A name that holds a secret, matched inside a longer name too (``clientSecret``,
# ``refresh_token``, ``X-Api-Key``), with any separator (``=`` or ``:``).
_SECRET_WORDS = (
    r"token|secret|password|passwd|api[_-]?key|apikey|access[_-]?code|authorization|signature|checksum|"  # noqa: S105
    r"private[_-]?key|session[_-]?id|cookie"
)
# The kinds a Credential can have (connections.models.Credential.Kind) that the
# words above do not already catch: how a dict of secrets keyed by kind prints.
_KIND_NAMES = r"access|refresh|offline|permanent|app"
# Names that are secrets only as a whole name and only in data shapes
# (``state=…``, ``"code": …``): in prose ("status code: 500", "breaker
# state: open", "access was revoked") they are not.
_EXACT_NAMES = rf"state|code|pwd|{_KIND_NAMES}"
# (A value already masked is left alone, which keeps redact() idempotent.)
# The value: a quoted string up to its closing quote (spaces included), or an
# optional auth scheme and one bare word.
_VALUE = (
    r"(?![\"']?\[redacted\])"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|(?:(?:bearer|basic|token|digest)\s+)?[^\s\"'&,;)}\]]+)"
)
_NAME_START = r"(?<![A-Za-z0-9_.-])"

_KEY_VALUE = re.compile(
    rf"(?P<prefix>{_NAME_START}(?P<quote>[\"']?)[A-Za-z0-9_.-]*?(?:{_SECRET_WORDS})[A-Za-z0-9_.-]*(?P=quote)\s*[:=]\s*)"
    + _VALUE,
    re.IGNORECASE,
)
_EXACT_KEY_VALUE = re.compile(
    rf"(?P<prefix>{_NAME_START}(?:(?P<quote>[\"'])(?:{_EXACT_NAMES})(?P=quote)\s*[:=]|(?:{_EXACT_NAMES})\s*=)\s*)"
    + _VALUE,
    re.IGNORECASE,
)
# ``kind='refresh', value='…'``: a credential written out field by field.
_KIND_VALUE = re.compile(
    rf"(?P<prefix>{_NAME_START}(?P<q1>[\"']?)kind(?P=q1)\s*[:=]\s*[\"']?(?:{_KIND_NAMES}|api_key|user_secret)[\"']?"
    r"\s*[,;]?\s*(?P<q2>[\"']?)value(?P=q2)\s*[:=]\s*)" + _VALUE,
    re.IGNORECASE,
)

# URL-encoded, once or more: ``%3D`` is ``=``, ``%253D`` is ``=`` encoded twice.
_ENC = r"%(?:25)*"
_ENC_QUOTE = rf"{_ENC}2[27]"
# The separator says how deeply the pair is encoded (``depth``: how many
# ``25``s); the value ends at ``&``, a quote, a space, ``,``, ``)``, ``;``,
# ``]`` or ``}`` encoded to that same depth. One encoded deeper is part of
# the value (``%2526`` inside a pair whose ``=`` is ``%3D``).
_ENC_SEPARATOR = r"%(?P<depth>(?:25)*)3"
_ENC_VALUE = (
    rf"(?!(?:{_ENC_QUOTE})?\[redacted\])"
    r"(?:%(?P=depth)2[27])?(?:(?!%(?P=depth)(?:2[0267C]|29|3B|5D|7D))[^\s\"'&,;)}\]])+"
)
# An encoded name starts after a character that cannot be part of it, or after
# an encoded one (``%26state``, ``%3Fstate``, ``%2526state``), up to four deep.
_ENC_NAME_START = "(?:(?<![A-Za-z0-9_.-])|" + "|".join(rf"(?<=%{'25' * n}[0-9A-Fa-f]{{2}})" for n in range(4)) + ")"
_ENC_GAP = rf"(?:\s|\+|{_ENC}20)*"
_ENC_KEY_VALUE = re.compile(
    rf"(?P<prefix>{_ENC_NAME_START}(?:{_ENC_QUOTE})?[A-Za-z0-9_.-]*?(?:{_SECRET_WORDS})[A-Za-z0-9_.-]*"
    rf"(?:{_ENC_QUOTE})?{_ENC_GAP}{_ENC_SEPARATOR}[AD]{_ENC_GAP})" + _ENC_VALUE,
    re.IGNORECASE,
)
# Whole names only, as above: ``state%3D…`` and ``%22state%22%3A…``.
_ENC_EXACT_PAIR = re.compile(
    rf"(?P<prefix>{_ENC_NAME_START}(?:{_EXACT_NAMES}){_ENC_SEPARATOR}D{_ENC_GAP})" + _ENC_VALUE, re.IGNORECASE
)
_ENC_EXACT_QUOTED = re.compile(
    rf"(?P<prefix>{_ENC_NAME_START}{_ENC_QUOTE}(?:{_EXACT_NAMES}){_ENC_QUOTE}{_ENC_GAP}{_ENC_SEPARATOR}A{_ENC_GAP})"
    + _ENC_VALUE,
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<prefix>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)", re.IGNORECASE)
_SLASH = rf"(?:/|{_ENC}2F)"
_LINK_PATH = re.compile(
    rf"(?P<prefix>{_SLASH}(?:link|r){_SLASH})(?!\[redacted\])(?:(?!{_ENC}(?:2F|3F|23))[^/\s?#'\"<>])+", re.IGNORECASE
)
# A provider callback's query, whole: it carries the state, Dapi's access code
# and user secret, and the client's identities. Plain (a request line), or
# encoded inside another URL's parameter, where it ends at the next plain ``&``.
_CALLBACK_QUERY = re.compile(r"(?P<prefix>/connect/[A-Za-z0-9_-]+/callback/?\?)(?!\[redacted\])[^\s\"'<>]+")
_ENC_CALLBACK_QUERY = re.compile(
    rf"(?P<prefix>{_ENC}2Fconnect{_ENC}2F[A-Za-z0-9_-]+{_ENC}2Fcallback(?:{_ENC}2F)?{_ENC}3F)"
    r"(?!\[redacted\])[^\s\"'<>&]+",
    re.IGNORECASE,
)
_FERNET = re.compile(r"gAAAAA[A-Za-z0-9_-]{20,}={0,2}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)


def _masked_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value[:1] in {'"', "'"}:
        return f"{match.group('prefix')}{value[0]}{REDACTED}{value[0]}"
    return f"{match.group('prefix')}{REDACTED}"


def _keep_prefix(match: re.Match[str]) -> str:
    return f"{match.group('prefix')}{REDACTED}"


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str], ...] = (
    # Whole-token shapes first, so a name=value rule never leaves half of one.
    (_PEM, REDACTED),
    (_FERNET, REDACTED),
    (_JWT, REDACTED),
    (_URL_PASSWORD, _keep_prefix),
    (_LINK_PATH, _keep_prefix),
    (_CALLBACK_QUERY, _keep_prefix),
    (_ENC_CALLBACK_QUERY, _keep_prefix),
    (_KIND_VALUE, _masked_value),
    (_KEY_VALUE, _masked_value),
    (_EXACT_KEY_VALUE, _masked_value),
    (_ENC_KEY_VALUE, _keep_prefix),
    (_ENC_EXACT_PAIR, _keep_prefix),
    (_ENC_EXACT_QUOTED, _keep_prefix),
    (_BEARER, _keep_prefix),
)


def redact(text: str) -> str:
    """``text`` with every secret-shaped part replaced by ``[redacted]`` (see the module docstring).

    Idempotent: redacting redacted text changes nothing.
    """
    if not text:
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Masks secrets in a record's message (with its arguments applied), traceback and stack.

    Never drops a record: a message that cannot be formatted is logged as its
    raw template, redacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the log line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            # Format the traceback now, redacted; formatters print the cached
            # exc_text when exc_info is gone, so no handler formats it raw.
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def attach_redaction(logger: logging.Logger) -> None:
    """Add a :class:`RedactSecretsFilter` to each handler of ``logger`` that lacks one."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
            handler.addFilter(RedactSecretsFilter())


def _celery_logger_set_up(logger: logging.Logger | None = None, **kwargs: object) -> None:
    # Celery adds its own handlers in a worker (the task logger's, the root
    # logger's when it is not configured yet); they get the filter too.
    if logger is not None:
        attach_redaction(logger)


try:
    from celery.signals import after_setup_logger, after_setup_task_logger
except ImportError:  # pragma: no cover - Celery is a runtime dependency
    pass
else:
    after_setup_logger.connect(_celery_logger_set_up, weak=False)
    after_setup_task_logger.connect(_celery_logger_set_up, weak=False)
