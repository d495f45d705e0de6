"""Gunicorn's logger, with the portal's secret redaction on every line it writes.

The access log prints each request's path, and some paths are secrets: a
client link's path is its token (``/link/<token>/``), and a format with the
request line or the Referer (``%(r)s``, ``%(q)s``, ``%(f)s``) would print a
provider callback's query string with the state, Dapi's access code and user
secret. Gunicorn's access and error loggers are its own, outside Django's
``LOGGING``, so they get :class:`connections.logging.RedactSecretsFilter`
here. The filter sits on the loggers rather than on their handlers, so it
holds for whatever handlers gunicorn sets up (a file, stdout, syslog) and
after a reload.

Used by the Procfile's web line: ``gunicorn --logger-class portal.access_log.RedactingLogger``.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from connections.logging import RedactSecretsFilter


class RedactingLogger(Logger):
    """:class:`gunicorn.glogging.Logger` whose access and error lines are masked like every other log line."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            if not any(isinstance(f, RedactSecretsFilter) for f in log.filters):
                log.addFilter(RedactSecretsFilter())
