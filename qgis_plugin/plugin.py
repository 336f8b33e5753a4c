"""Plugin object: registers the Processing provider and a toolbar entry for change detection."""

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .provider import ICON, GeobertProvider


class GeobertPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.action = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        self.provider = GeobertProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()
        self.action = QAction(QIcon(ICON), "geobert change detection…", self.iface.mainWindow())
        self.action.triggered.connect(self.open_change_dialog)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu("geobert", self.action)

    def unload(self) -> None:
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginRasterMenu("geobert", self.action)
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def open_change_dialog(self) -> None:
        import processing

        processing.execAlgorithmDialog("geobert:change")
