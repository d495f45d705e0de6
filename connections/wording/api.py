"""What the firm's API replies and problem bodies say, and the sentences of its webhook pages."""

from __future__ import annotations

from datetime import datetime

from .formats import duration, when, window_words
from .names import API, PENDING

# --- The firm's API and webhooks ----------------------------------------------------------
# What the API's replies and problem bodies (RFC 9457) say, and the integration
# pages' sentences. The API names an actor "api:<key prefix>" (actor_words).


def api_actor(*, key_prefix: str) -> str:
    """The ``actor_label`` of something a firm's API key did (the key's public prefix, never the key)."""
    return f"{API}:{key_prefix}"


def api_key_refused() -> str:
    return (
        "This request needs a valid API key, sent as 'Authorization: Bearer <key>'. "
        "The key was missing, unknown or revoked."
    )


def api_scope_refused(*, scope: str) -> str:
    return f"This API key may only read. Changes need a key with the '{scope}' scope; a firm admin can create one."


def api_rate_limited(*, retry_after: int) -> str:
    return f"Too many requests with this API key. Try again in {retry_after} second{'s' if retry_after != 1 else ''}."


def api_not_found() -> str:
    return "Nothing with this id is visible to this API key."


def api_invalid_input(*, fields: list[str]) -> str:
    return f"The request has {len(fields)} invalid field{'s' if len(fields) != 1 else ''}: {', '.join(fields)}."


def api_invalid_json() -> str:
    return "The request body is not valid JSON."


def api_invalid_cursor(*, name: str) -> str:
    return f"'{name}' is not a value this API returned; leave it out to start from the beginning."


def api_unknown_event(*, event_id: str) -> str:
    return f"'{event_id}' is not an event of this firm's feed (or it is older than the feed keeps)."


def api_idempotency_key_invalid() -> str:
    return "An Idempotency-Key must be 1 to 255 printable ASCII characters."


def api_idempotency_key_reused() -> str:
    return (
        "This Idempotency-Key was already used for a different request. "
        "Use a new key for a new request; repeat the original request to get its result."
    )


def api_idempotency_in_progress() -> str:
    return "A request with this Idempotency-Key is still being processed. Repeat it in a moment to get its result."


def api_server_error() -> str:
    return "The portal could not complete this request because of an internal error. It was logged; try again later."


def api_check_queued(*, source: str) -> str:
    return f"{source}: a check was queued. Its outcome shows in the connection's status and events."


def api_check_refused(*, source: str, status: str) -> str:
    if status == PENDING:
        return f"{source}: not checked, because the client has not finished authorizing yet."
    return api_disconnected(source=source)


def api_disconnected(*, source: str) -> str:
    return f"{source}: disconnected on purpose, which is final. Connect the source anew instead."


def webhook_url_https_required() -> str:
    return "Webhook endpoints must use https://."


def webhook_url_malformed() -> str:
    return "Enter a full URL such as https://crm.example.com/hooks/portal."


def webhook_url_has_credentials() -> str:
    return "Leave user names and passwords out of the URL; every delivery is signed instead."


def webhook_url_address_refused(*, host: str) -> str:
    return (
        f"{host} is (or resolves to) a private, loopback, link-local or reserved address. "
        "Webhooks are only delivered to public internet addresses."
    )


def webhook_url_unresolvable(*, host: str) -> str:
    return f"{host} could not be resolved. Check the host name."


def webhook_delivery_dropped() -> str:
    return "Not sent: the endpoint was disabled."


def webhook_endpoint_disabled(*, url: str, failing_since: datetime) -> str:
    return (
        f"Webhook deliveries to {url} have failed continuously since {when(failing_since)}, so the portal "
        "stopped sending to it. Fix the receiver, then enable the endpoint again on the Integrations page; "
        "events missed meanwhile can be read from GET /api/v1/events."
    )


def api_key_revoked(*, name: str) -> str:
    return f"The API key '{name}' was revoked. Requests with it are refused from now on."


def webhook_endpoint_enabled(*, url: str) -> str:
    return f"Deliveries to {url} are on again. Events missed while it was off can be read from GET /api/v1/events."


def webhook_endpoint_disabled_by_person(*, url: str) -> str:
    return f"Deliveries to {url} are off until you enable the endpoint again."


def webhook_endpoint_paused_reason() -> str:
    return "Disabled by a firm admin."


def webhook_delivery_resent(*, event_type: str) -> str:
    return f"The {event_type} event is being sent again, with the same id and a fresh retry schedule."


def webhook_secret_rotated(*, until: datetime) -> str:
    return (
        "A new signing secret is shown below, once. Deliveries are signed with both the new and the previous "
        f"secret until {when(until)}: switch your receiver to the new one before then."
    )


def api_key_limit_reached(*, what: str, limit: int, window_seconds: float, retry_after: float) -> str:
    """A key held to a per-person limit (``what`` says what it did: "sent client links")."""
    return (
        f"Not done: this API key has {what} {limit} time{'s' if limit != 1 else ''} in the last "
        f"{window_words(window_seconds)}, the most the portal allows one key or one person, so nothing "
        f"was sent and no provider was called. Try again in {duration(retry_after)}."
    )


def api_link_email_failed(*, detail: str) -> str:
    """A client link whose email failed (``detail`` is :func:`.links.link_email_failed`): what the caller may do."""
    return (
        f"{detail} Retry this request later (the same Idempotency-Key may be used again), or create the link with "
        '{"send_email": false} and deliver its URL yourself.'
    )
