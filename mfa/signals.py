"""What the second step of a sign-in announces. Arguments: ``request``, ``user``, ``method``
("authenticator" or "recovery_code"); a refusal also says whether it was ``throttled``."""

from django.dispatch import Signal

second_factor_passed = Signal()
second_factor_failed = Signal()
