"""The one error for configuration that cannot work, raised wherever a setting is used."""


class ConfigError(Exception):
    """Configuration that cannot work. The message names the setting and never its value
    when the value is a secret.

    `problems` lists each problem on its own when one error reports several at once
    (every bad setting of a deployment), so a caller can show them one by one."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]
