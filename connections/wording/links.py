"""What the adviser's pages and the API say about a client link that could not be sent."""

from __future__ import annotations


def link_email_failed(*, email: str) -> str:
    """The mail server refused a client link's email: nothing was kept (the link made for it is removed)."""
    return (
        f"The email to {email} could not be sent, so no link was made and the client was told nothing. "
        "Try again in a few minutes; if it keeps failing, the portal's mail server needs looking at."
    )
