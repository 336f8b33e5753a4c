"""The "geobert" Processing provider."""

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import (
    ChangeDetectionAlgorithm,
    CheckEnvironmentAlgorithm,
    LandCoverAlgorithm,
    TrainLandCoverAlgorithm,
)
from .settings import register_settings, unregister_settings

ICON = str(Path(__file__).with_name("icon.svg"))


class GeobertProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "geobert"

    def name(self) -> str:
        return "geobert"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def load(self) -> bool:
        register_settings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        unregister_settings()

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        for alg in (
            ChangeDetectionAlgorithm(),
            LandCoverAlgorithm(),
            TrainLandCoverAlgorithm(),
            CheckEnvironmentAlgorithm(),
        ):
            self.addAlgorithm(alg)
