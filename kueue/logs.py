"""Logging set-up shared by the server and the worker."""

from __future__ import annotations

import logging
import sys

from kueue import config as kconfig

_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}


def setup(level: str, program: str) -> None:
    logging.basicConfig(
        level=_LEVELS.get(level.lower(), logging.INFO),
        format=f"%(asctime)s {program} %(levelname)s %(name)s: %(message)s",
    )


def start_program(program: str, config_path: str | None) -> kconfig.Config | None:
    """Load the config and set up logging for a long-running program; None
    (after one line on stderr) when the config cannot be used."""
    try:
        config = kconfig.load(config_path)
    except kconfig.ConfigError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return None
    setup(config.common_settings.log_level, program)
    for warning in config.warnings:
        logging.getLogger(program).warning("%s", warning)
    return config
