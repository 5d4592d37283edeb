"""``tubemill serve``'s REST API: batches, files, search and subscriptions over HTTP for scripts and automation.

A front end like the CLI and the app (top layer, next to ``pipeline.cli``): it drives the same
:class:`~pipeline.engine.core.Engine`, owning the home when nobody does and following the owner
through the control files otherwise. ``guard`` keeps it to its caller (bearer token, Host allowlist,
slowed bad tokens), ``files`` keeps file routes inside the batch folders, ``routes`` holds the
endpoints and ``server`` binds uvicorn (loopback unless an address is given explicitly).
"""
