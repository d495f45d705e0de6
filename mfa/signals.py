"""What the second step of a sign-in announces. Arguments: ``request``, ``user``, ``method``
("authenticator" or "recovery_code"); a refusal also says whether it was ``throttled`` (and, during a
lockout, ``locked_until``); a lockout says how many ``failures`` led to it and ``until`` when it lasts."""

from django.dispatch import Signal

second_factor_passed = Signal()
second_factor_failed = Signal()
second_factor_locked = Signal()
