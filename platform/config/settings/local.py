"""Developer machine and demo: the embedded database; DEBUG only when DJANGO_DEBUG=true."""

from config.env import env_bool
from config.settings.base import *  # noqa: F403

DEBUG = env_bool("DJANGO_DEBUG", False)
