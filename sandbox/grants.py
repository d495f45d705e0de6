"""A person granting a partner app access, answered the way each provider hands the grant over.

What ``manage.py sandbox_grant`` does, for a caller that wants a working
subject without a browser (the portal's demo data, a developer at a shell):

* :func:`grant_answer` creates the subject a person's consent or sign-in would
  create, and answers, in the provider's own documented terms, what the
  partner receives to complete the connect: for a sign-in form the fields
  under the provider's names (Coinify ``email`` and ``password``, Bloquo
  ``clientId`` and ``clientSecret``), for a browser redirect the query
  parameters the provider appends to the app's redirect URI (Turnqey
  ``identity``, ``collection``, ``platform``, ``status``; Dapi
  ``accessCode``, ``connectionID``, ``userSecret``, ``userID``, ``tokenID``);
* :func:`grant_break` breaks the subject the same person names, the way a
  reason says (``revoked``, ``expired``, ``credentials_invalid``), so the
  partner's next call meets that problem. A break a provider cannot suffer
  is refused with the reason why.

A person is named by the partner app (Turnqey client, Coinify partner, Dapi
app key; Bloquo key pairs belong to no app), their name, email and partner
side identity, and the platform: the facts a partner knows of its own client.
"""

from __future__ import annotations

from typing import Any

from .services import SandboxError, simulator_for, subject_act
from .services.common import Person

__all__ = ["BREAKS", "Person", "grant_answer", "grant_break"]

BREAKS = ("revoked", "expired", "credentials_invalid")


def grant_answer(*, provider: str, person: Person) -> dict[str, Any]:
    """Create the person's subject at ``provider`` and answer what the partner receives.

    ``{"provider", "fields": {...}}`` for a sign-in form, ``{"provider",
    "params": {...}}`` for a redirect, each with ``"subject"``: the subject's
    ids (no secret), for the control API's actions.
    """
    mount, simulator = simulator_for(provider)
    return {"provider": mount, **simulator.grant_answer(mount=mount, person=person)}


def grant_break(*, provider: str, person: Person, how: str) -> dict[str, Any]:
    """Break the subject ``person`` names at ``provider`` (its latest grant) the way ``how`` says.

    Returns ``{"provider", "broken", "affected"}``; raises :class:`SandboxError`
    for an unknown subject (404) or a break the provider cannot suffer.
    """
    if how not in BREAKS:
        raise SandboxError(f"break must be one of: {', '.join(BREAKS)}.")
    mount, simulator = simulator_for(provider)
    action = simulator.grant_break(mount=mount, person=person, how=how)  # a control API action, or None: done
    affected = 1 if action is None else subject_act({"provider": mount, **action})["affected"]
    return {"provider": mount, "broken": how, "affected": affected}
