"""One module per page: ``PATH``, ``TITLE_KEY``, ``layout(data, lang, market)`` and
``register_callbacks(app, data, api_base=...)``; :mod:`dashboard.app` routes between them."""
