"""Credentials and settings as a user writes them: docker's config.json, pypull's config.toml
(both under the per-test directories the autouse fixture in conftest.py sets), Basic auth."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path


def write_docker_config(doc: dict[str, object]) -> Path:
    path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def write_pypull_config(text: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "pypull" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()
