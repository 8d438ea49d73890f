"""The market managers' dashboard: a multi-page Dash app over the store and the live view.

:func:`dashboard.app.create_dashboard` builds it; ``stallwatch serve`` mounts it under
``/dashboard/`` of the API's server (:mod:`stallwatch.webapp`).
"""
