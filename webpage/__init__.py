"""What every HTML page we serve has in common, whichever renderer serves it.

The API's public trace pages and the dashboard both send pages to browsers; the
security headers they send (:mod:`webpage.headers`) live here so that neither
renderer imports the other.
"""
