"""The one Dagster ``Definitions`` of rwi-etl: assets, checks, jobs, sensor and schedule.

``dagster dev`` loads this module (``[tool.dagster]`` in pyproject.toml names it; or
``dagster dev -m dagster_project.definitions``). Settings are read once, here, from the
environment: ``RWI_DATA_DIR``, ``RWI_TOPIC_PREFIX``, ``KAFKA_BOOTSTRAP_SERVERS``, ``RWI_PBX``.
``rwi-etl run`` builds the same definitions from its own settings
(``dagster_project.project.build_definitions``).
"""

from dagster_project.project import build_definitions
from pipelines.settings import load_settings

defs = build_definitions(load_settings())
