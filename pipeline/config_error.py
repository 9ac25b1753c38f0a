"""The error of a bad option, in a module of its own so that every config, down to the lowest
(pipeline.guard's), can raise it without importing pipeline.config."""


class ConfigError(ValueError):
    """A bad option: the message says what to do instead."""
