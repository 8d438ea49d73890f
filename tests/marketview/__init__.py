"""Tests of the read core: the live view, analytics and pricing."""
