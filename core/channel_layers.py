"""The Redis channel layer with its blocking pop timeout as a setting (config/channel_layers.py
keeps the socket timeout longer than it)."""

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):
    def __init__(self, *args, pop_timeout: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.brpop_timeout = pop_timeout
