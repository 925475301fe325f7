"""Admin commands of ``flareport``: thin, synchronous clients of the admin HTTP API.

One module per command group (``keys``, ``agents``, ``rules``, ``manual_rules``, ``access_groups``, ``ops`` for
status/reconcile/dlq), sharing ``client`` (HTTP, errors, exit codes), ``base`` (options and the run flow) and
``render`` (tables). They never touch Redis: everything goes through the API, so they work from any machine
that can reach it, with the same authentication and validation as the web UI.
"""
