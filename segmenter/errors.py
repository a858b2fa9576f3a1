"""One error type for bad user input, shared downstream so the CLI can report it in one line."""


class InputError(ValueError):
    """Bad input from the user (file, config value, weights); the message is shown as is."""
