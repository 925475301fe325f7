"""What an admin can do, once: the use cases both the JSON admin routes and the web UI's forms call.

A route parses its request (path ids, the JSON body against its schema), calls a use case and renders the answer
as JSON; a UI form parses its fields, calls the same use case and renders a notice. So a change made through the UI
is validated and written exactly like the matching ``/api/v1/...`` call, and neither side reaches into the other's
module for a private helper. A use case takes the ``ApiContext`` and already-parsed values, raises ``ApiError``
(status, code, message, field) for what it refuses, and knows nothing of HTTP requests or HTML.

* ``intents``: how a change reaches the reconciler (an intent, alone or with the declaration it changes);
* ``keys``: agent keys (create, find, revoke, roll);
* ``agents``: agents (list, find, enrol, publishing policy, rename, decommission, remove);
* ``manualrules`` and ``accessgroups``: the admin's declarations;
* ``rules``: the published rules, as the reconciler recorded them; ``adoption``: taking over a hostname's foreign
  DNS records;
* ``operations``: a reconcile on demand, dead letters (list, replay).

Import contracts (pyproject.toml) keep the use cases off the route modules, the web UI and aiohttp, and the web UI
off the route modules.
"""
