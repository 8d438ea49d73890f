"""What the market looks like now and over time, read from the stores and the live stream.

The read core between the stores and everything that renders: the live price and
presence view (:mod:`marketview.live`), analytics over stored rows
(:mod:`marketview.analytics`), prices and their display units
(:mod:`marketview.pricing`). The API's routers and the dashboard's queries call it
and only shape and render what it answers; it imports neither of them.
"""
