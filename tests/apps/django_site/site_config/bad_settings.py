"""The test project's settings with a misspelt PYRESQUE key."""

from .settings import *  # noqa: F403
from .settings import PYRESQUE

PYRESQUE = {**PYRESQUE, "concurency": 4}
