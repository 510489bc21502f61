"""Dagster resources: the operator's settings and the artifact store built from them."""

from __future__ import annotations

from dagster import ConfigurableResource

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import Settings, load_settings


class GastownSettings(ConfigurableResource):
    """The `gastown-ft.toml` in force: an explicit path, else $GASTOWN_FT_CONFIG, ./gastown-ft.toml,
    or the defaults."""

    config_file: str = ""

    def load(self) -> Settings:
        return load_settings(self.config_file or None)

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.load().artifacts.dir)
