"""Outgoing webhooks, signed per the Standard Webhooks specification.

``events`` says which connection events a firm hears about (one pure mapping);
``dispatch`` reads committed ConnectionEvent rows (the outbox) and makes the
firm's events and their deliveries; ``delivery`` makes one attempt (sign, POST,
record, schedule the retry, disable an endpoint that keeps failing);
``transport`` is the HTTP POST itself; ``addresses`` the URL rules;
``signing`` the secrets and signatures; ``services`` what people do to
endpoints (create, rotate, enable, resend).
"""
