"""Signing in and resetting a password: Django's views, with the portal's rules on top."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.http import HttpResponse, HttpResponseRedirect


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, whose email links to ``PORTAL_BASE_URL``.

    Django builds the link from the request's host; a forged ``Host`` header
    (or a permissive ``ALLOWED_HOSTS``) would then mail a valid reset token
    for the victim's account to a link on the forger's host.
    """

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
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
