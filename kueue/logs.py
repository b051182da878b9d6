"""Logging set-up shared by the server and the worker."""

from __future__ import annotations

import logging

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
