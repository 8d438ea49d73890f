"""Tests of the HTTP API, each against a real uvicorn server."""
