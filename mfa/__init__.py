"""A second factor for portal users: TOTP (an authenticator app) with recovery codes, on django-otp.

django-otp rather than django-allauth's MFA: the portal signs people in with
Django's own ``LoginView``, throttled by django-axes; django-otp adds a second
step after that sign-in without replacing it (``OTPMiddleware`` marks a
session as verified), so axes keeps throttling passwords exactly as before,
and its devices throttle wrong codes themselves. allauth would replace the
sign-in, its forms and its throttling with its own.

Who needs it (:func:`policy.second_factor_required`): members of a firm that
requires it, and staff (Django admin users) in production. The flow is
:mod:`mfa.middleware` (nowhere else until the second step is done) and
:mod:`mfa.views`. What happened is announced through :mod:`mfa.signals`;
this app does not know who listens (the audit trail does).
"""
