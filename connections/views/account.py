"""Signing in and resetting a password: Django's views, with the portal's rules on top."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.http import HttpResponse, HttpResponseRedirect

from .. import attempts, wording
from ..addresses import limit_subject
from .common import too_many


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, whose email links to ``PORTAL_BASE_URL``, limited per address and per email.

    Django builds the link from the request's host; a forged ``Host`` header
    (or a permissive ``ALLOWED_HOSTS``) would then mail a valid reset token
    for the victim's account to a link on the forger's host.

    Requests are limited per client address and per typed email address in a
    rolling window (``PASSWORD_RESETS_PER_*``), so the form can neither flood
    someone's inbox nor be used to send mail in bulk. Every request counts,
    whether or not an account has the address, and the answer over the limit
    is the same in both cases, so it reveals nothing about who has an account.
    """

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        per_address = attempts.limit(attempts.LimitName.PASSWORD_RESETS_PER_ADDRESS)
        per_email = attempts.limit(attempts.LimitName.PASSWORD_RESETS_PER_EMAIL)
        try:
            attempts.attempts_take(
                subjects=[
                    (per_address, limit_subject(self.request)),
                    (per_email, form.cleaned_data["email"].strip().lower()),
                ]
            )
        except attempts.LimitReached as exc:
            form.add_error(
                None,
                wording.password_resets_throttled(window_seconds=exc.limit.window_seconds, retry_after=exc.retry_after),
            )
            page = self.render_to_response(self.get_context_data(form=form))
            too_many(page, exc.retry_after)
            return page
        return self._send(form)

    def _send(self, form: PasswordResetForm) -> HttpResponse:
        base = urlsplit(settings.PORTAL_BASE_URL)
        form.save(
            domain_override=base.netloc,
            use_https=base.scheme == "https",
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            extra_email_context=self.extra_email_context,
        )
        return HttpResponseRedirect(self.get_success_url())
