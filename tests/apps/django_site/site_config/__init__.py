"""A tiny Django project for tests/test_django.py: one app (``shop``), SQLite."""
