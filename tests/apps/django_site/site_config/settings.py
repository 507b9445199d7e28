"""Settings of the test project; the SQLite file and the Redis come from the environment."""

import os

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "site_config.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["pyresqueworker.contrib.django", "shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SITE_DB", ":memory:"),
    },
}
PYRESQUE = {
    "url": os.environ.get("DJANGO_SITE_REDIS", "redis://127.0.0.1:6379/0"),
    "namespace": "shop:",
    "queues": ["orders", "checks"],
    "interval": 0.1,
}
