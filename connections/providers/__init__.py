"""Provider clients: one module per provider behind ``base.ProviderClient``.

Look a client up with ``registry.client_class(key)``; ``base`` states the
contract (the access_rejected mechanism, renewal deadlines, the plain data),
``errors`` the one error taxonomy, ``http`` the shared request helper and
``replies`` how a reply is read.
"""
