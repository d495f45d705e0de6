"""Provider clients: one module per provider behind ``base.ProviderClient``.

Look a client up with ``registry.client_class(key)``; ``base`` states the
contract (errors, the access_rejected mechanism, renewal deadlines, HTTP).
"""
