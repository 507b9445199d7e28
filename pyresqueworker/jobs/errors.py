"""The errors a payload can fail with before any handler runs (both report Ruby's names).

Their own module, so the ActiveJob decoder and the registry that registers it both import
them without importing each other.
"""

from __future__ import annotations

__all__ = ["PayloadError", "UnknownJobClass"]


class UnknownJobClass(LookupError):
    """No handler is registered for the payload's class (Ruby raises ``NameError``)."""

    resque_name = "NameError"

    def __init__(self, class_name: str) -> None:
        self.class_name = class_name
        # Ruby's text exactly (resque-web and Ruby tools show it); the worker logs the hint.
        super().__init__(f"uninitialized constant {class_name}")


class PayloadError(ValueError):
    """The payload does not have the shape of a Resque job (not an object, no class, ...)."""

    resque_name = "Resque::Helpers::DecodeException"
