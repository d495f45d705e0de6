"""The firm's integration surface: the versioned JSON API (``/api/v1/``) and signed outgoing webhooks.

Reads go through :mod:`connections.selectors`, writes through
:mod:`connections.services`; webhooks are made by reading ``ConnectionEvent``
rows after they are committed (the outbox), so nothing in ``connections``
calls anything here. Layout: ``keys`` (API keys), ``v1/`` (django-ninja),
``webhooks/`` (events, dispatch, delivery), ``views`` (the firm admins'
Integrations pages), ``tasks`` (Celery).
"""
