"""The stallwatch HTTP API (FastAPI): ``api.main.create_app`` builds it, ``api.server`` runs it."""
