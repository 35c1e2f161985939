"""The one resource: where the data lives, which topics to read, and the checks' thresholds."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from pipelines.compact import CompactSettings
from pipelines.settings import Settings, load_settings
from pipelines.warehouse import WarehousePaths


class RwiResource(ConfigurableResource):
    """The lake, the DuckDB files and the Kafka topics of one deployment.

    Built from ``RWI_DATA_DIR``, ``RWI_TOPIC_PREFIX``, ``KAFKA_BOOTSTRAP_SERVERS`` and
    ``RWI_PBX`` when the definitions load (see ``definitions.py``).
    """

    data_dir: str = Field(description="Lake and DuckDB files (RWI_DATA_DIR).")
    topic_prefix: str = Field(default="rwi", description="Topic prefix (RWI_TOPIC_PREFIX).")
    bootstrap_servers: str = Field(description="Kafka bootstrap (KAFKA_BOOTSTRAP_SERVERS).")
    pbx: str = Field(default="default", description="PBX instance name (RWI_PBX).")
    dead_letter_max_rate: float = Field(
        default=0.05, description="Largest share of dead letters among the messages of the "
        "check window that still lets a run publish.")
    dead_letter_min_count: int = Field(
        default=5, description="Dead letters in the window below which the rate is not judged.")
    check_window_hours: float = Field(
        default=1.0, description="Window (by Kafka timestamp) of the dead-letter and schema "
        "checks.")
    open_call_max_hours: float = Field(
        default=4.0, description="A call leg still open this long after it was created is "
        "flagged.")
    freshness_slo_s: float = Field(
        default=60.0, description="Oldest event still missing from the published database, in "
        "seconds, before freshness fails.")
    full_rebuild_rows: int = Field(
        default=500_000, description="New raw rows above which the analytics tables are "
        "rebuilt in full instead of incrementally.")

    @classmethod
    def from_settings(cls, settings: Settings) -> RwiResource:
        return cls(
            data_dir=str(settings.data_dir),
            topic_prefix=settings.topic_prefix,
            bootstrap_servers=settings.kafka.bootstrap,
            pbx=settings.pbx,
        )

    def settings(self) -> Settings:
        """The project settings these values stand for."""
        return load_settings(environ={
            "RWI_DATA_DIR": self.data_dir,
            "RWI_TOPIC_PREFIX": self.topic_prefix,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "RWI_PBX": self.pbx,
        })

    def paths(self) -> WarehousePaths:
        return WarehousePaths.under(Path(self.data_dir))

    def compact_settings(self) -> CompactSettings:
        # The job publishes only after the checks pass, in its own step.
        return CompactSettings(publish=False)
