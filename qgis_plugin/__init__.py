"""geobert for QGIS: Processing algorithms that run the geobert command line out of process."""


def classFactory(iface):  # noqa: N802 - QGIS's plugin entry point name
    from .plugin import GeobertPlugin

    return GeobertPlugin(iface)
