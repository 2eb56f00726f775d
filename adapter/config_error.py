"""The one error for configuration that cannot work, raised wherever a setting is used."""


class ConfigError(Exception):
    """Configuration that cannot work. The message names the setting and never its value
    when the value is a secret."""
