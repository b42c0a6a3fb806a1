"""The review page: a small web surface over ``daemon.review`` for people who prefer it to SQL or the CLI.

``app`` builds the Starlette application (queue, draft, approve / edit / reject), ``security``
holds the login, session, CSRF and origin rules, ``server`` runs it under uvicorn (inside
``mailsense run`` when ``[web] enabled``), ``cli`` adds ``mailsense web``.
"""
