"""Integrations with web frameworks; each lives in its own subpackage and imports its framework
only when it is used (``pyresqueworker.contrib.django`` for Django)."""
