"""assist's section of the configuration file (SWITCHBOARD_CONFIG)."""

from __future__ import annotations

from pathlib import Path

from shared import config
from shared.config import Strict


class AssistConfig(Strict):
    # Markdown/JSON articles (a folder or one file) and the reply templates (YAML), loaded at start;
    # a relative path is relative to the configuration file.
    knowledge_base: str | None = None
    reply_library: str | None = None


def load(config_file: str) -> AssistConfig:
    return config.load(config_file, AssistConfig, "assist")


def resolve(value: str, config_file: str) -> Path:
    """A path from the configuration; a relative one is relative to the configuration file."""
    return Path(value) if Path(value).is_absolute() else Path(config_file).resolve().parent / value
