"""Where the geobert worker lives: Processing ▸ Options ▸ Providers ▸ geobert."""

import os

from processing.core.ProcessingConfig import ProcessingConfig, Setting

PROVIDER = "geobert"
PYTHON = "GEOBERT_PYTHON"
SCHEDULER = "GEOBERT_SCHEDULER"


def default_python() -> str:
    return os.environ.get("GEOBERT_PYTHON", "python3")


def register_settings() -> None:
    ProcessingConfig.addSetting(
        Setting(PROVIDER, PYTHON, "Python with geobert installed (e.g. /path/to/.venv/bin/python)",
                default_python(), valuetype=Setting.FILE)
    )  # fmt: skip
    ProcessingConfig.addSetting(
        Setting(PROVIDER, SCHEDULER, "Dask scheduler address (empty: run on this machine)", "")
    )
    ProcessingConfig.readSettings()


def unregister_settings() -> None:
    ProcessingConfig.removeSetting(PYTHON)
    ProcessingConfig.removeSetting(SCHEDULER)


def python_path() -> str:
    return ProcessingConfig.getSetting(PYTHON) or default_python()


def python_is_set() -> bool:
    """Whether a geobert Python is configured (setting or ``GEOBERT_PYTHON``), not the fallback."""
    return bool(ProcessingConfig.getSetting(PYTHON) or os.environ.get("GEOBERT_PYTHON"))


def scheduler_address() -> str:
    return ProcessingConfig.getSetting(SCHEDULER) or ""
