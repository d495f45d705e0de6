"""Demo data for development, built through the real lifecycle (``manage.py seed_demo``).

* :mod:`.world`: what the demo holds (logins, households, clients, every
  provider in every status);
* :mod:`.seed`: creating what the world specifies and is missing, in one
  transaction (the command only checks it may run);
* :mod:`.in_process`: the sandbox answered by this process while no web server runs;
* :mod:`.sources`: where a demo connection's grant and troubles come from (real
  sandbox subjects through the real provider clients, or placeholders);
* :mod:`.history`: a connection's past checks, lived through the status rules
  on a simulated clock;
* :mod:`.lives`: a connection's whole life, through the lifecycle's entry points.
"""
