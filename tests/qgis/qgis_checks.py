"""Checks that run inside a real QGIS (Debian's python3-qgis), headless.

Run by tests/qgis/test_qgis_plugin.py as ``/usr/bin/python3 qgis_checks.py CHECK ARGS_JSON``;
prints one JSON object with what it observed. The geobert worker is the Python given in the
environment variable GEOBERT_PYTHON (the project's venv).
"""

import json
import sys
import time
from pathlib import Path


def start_qgis():
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    return app, processing


class StubIface:
    """The parts of QgisInterface the plugin uses, recording what it adds."""

    def __init__(self):
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.toolbar = []
        self.menus = []

    def mainWindow(self):  # noqa: N802
        return self.window

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.append(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.remove(action)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        self.menus.append((name, action))

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        self.menus.remove((name, action))


def load_plugin(plugin_dir: str):
    import qgis.utils

    sys.path.insert(0, plugin_dir)
    qgis.utils.iface = StubIface()
    assert qgis.utils.loadPlugin("geobert_qgis"), "loadPlugin failed"
    assert qgis.utils.startPlugin("geobert_qgis"), "startPlugin failed"
    return qgis.utils.plugins["geobert_qgis"]


class Recorder:
    def __init__(self):
        from qgis.core import QgsProcessingFeedback

        self.feedback = QgsProcessingFeedback()
        self.values = []
        self.feedback.progressChanged.connect(self.values.append)


def legend_labels(layer):
    """The labelled entries the Layers panel shows under the layer (a continuous ramp is one
    entry without a label of its own: its type name)."""
    from qgis.core import QgsLayerTreeLayer, QgsRasterSymbolLegendNode, QgsSimpleLegendNode
    from qgis.PyQt.QtCore import Qt

    nodes = layer.legend().createLayerTreeModelLegendNodes(QgsLayerTreeLayer(layer))
    return [
        n.data(Qt.DisplayRole) if isinstance(n, QgsRasterSymbolLegendNode) else type(n).__name__
        for n in nodes
        if not isinstance(n, QgsSimpleLegendNode)  # the band's name
    ]


def renderer_info(layer):
    r = layer.renderer()
    info = {"type": r.type()}
    if r.type() == "paletted":
        info["classes"] = {
            str(c.value): [c.label, c.color.name(), c.color.alpha()] for c in r.classes()
        }
    if r.type() == "singlebandpseudocolor":
        shader = r.shader().rasterShaderFunction()
        info["range"] = [r.classificationMin(), r.classificationMax()]
        info["ramp"] = [
            [i.value, i.label, i.color.name(), i.color.alpha()] for i in shader.colorRampItemList()
        ]
        info["legend"] = legend_labels(layer)
    if r.type() == "categorizedSymbol":
        info["categories"] = {c.value(): c.symbol().color().name() for c in r.categories()}
    return info


def check_change(args):
    from qgis.core import QgsProcessingContext, QgsProject, QgsRasterLayer

    _app, processing = start_qgis()
    plugin = load_plugin(args["plugin_dir"])
    import qgis.utils

    iface = qgis.utils.iface
    result = {
        "plugin": type(plugin).__name__,
        "toolbar": [a.text() for a in iface.toolbar],
        "menus": [name for name, _ in iface.menus],
        "algorithms": sorted(
            a.id() for a in QgsApplication_registry().providerById("geobert").algorithms()
        ),
    }
    before = QgsRasterLayer(args["before"], "abudhabi 2016")
    after = QgsRasterLayer(args["after"], "abudhabi 2018")
    rec = Recorder()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    out = processing.run(
        "geobert:change",
        {"BEFORE": before, "AFTER": after, "OUTPUT_FOLDER": args["out"], "MIN_AREA": 500},
        context=context,
        feedback=rec.feedback,
    )
    # the run's own progress (loading the results below reports progress of its own)
    run_progress = list(rec.values)
    # load and style as Processing does at the end of a dialog run
    from processing.gui.Postprocessing import handleAlgorithmResults

    alg = QgsApplication_registry().algorithmById("geobert:change")
    handleAlgorithmResults(alg, context, rec.feedback, False, out)
    layers = {lyr.name(): lyr for lyr in QgsProject.instance().mapLayers().values()}
    tree = QgsProject.instance().layerTreeRoot()
    result["order"] = [n.name() for n in tree.findLayers()]  # top to bottom
    result["label_min_scale"] = {
        lyr.name(): lyr.labeling().settings().minimumScale
        for lyr in layers.values()
        if getattr(lyr, "labeling", lambda: None)() is not None
    }
    result["outputs"] = {k: v for k, v in out.items()}
    result["progress"] = run_progress
    result["layers"] = {name: renderer_info(layer) for name, layer in layers.items()}
    # draw the change layer over nothing and read pixel colours
    result["render"] = render(layers, args["png"])
    # an older geobert's output (no change_probability.qml): the plugin's 0-1 ramp
    import shutil

    from geobert_qgis.algorithms import apply_style

    older = Path(args["out"]).parent / "older" / "change_probability.tif"
    older.parent.mkdir()
    shutil.copy(out["PROBABILITY"], older)
    layer = QgsRasterLayer(str(older), "older")
    apply_style(layer, "probability")
    result["older_probability"] = renderer_info(layer)
    plugin.unload()
    result["unloaded"] = (
        not iface.toolbar
        and not iface.menus
        and QgsApplication_registry().providerById("geobert") is None
    )
    print(json.dumps(result))


def check_rerun(args):
    """Change detection twice into one folder, results loaded each time as the dialog does."""
    from qgis.core import QgsProcessingContext, QgsProject, QgsRasterLayer, QgsVectorLayer

    _app, processing = start_qgis()
    load_plugin(args["plugin_dir"])
    handle = processing_postprocessing()
    alg = QgsApplication_registry().algorithmById("geobert:change")
    before = QgsRasterLayer(args["before"], "abudhabi 2016")
    after = QgsRasterLayer(args["after"], "abudhabi 2018")
    kept = QgsVectorLayer(args["other"], "a layer of the user's")  # never touched
    QgsProject.instance().addMapLayer(kept)
    runs = []
    for min_area in (0, 20000):
        rec = Recorder()
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        out = processing.run(
            "geobert:change",
            {"BEFORE": before, "AFTER": after, "OUTPUT_FOLDER": args["out"], "MIN_AREA": min_area},
            context=context,
            feedback=rec.feedback,
        )
        handle(alg, context, rec.feedback, False, out)
        runs.append(json.loads(Path(out["SUMMARY"]).read_text())["polygons"])
    layers = list(QgsProject.instance().mapLayers().values())
    polygons = [lyr for lyr in layers if lyr.name().startswith("change polygons")]
    print(
        json.dumps(
            {
                "names": sorted(lyr.name() for lyr in layers),
                "polygons_per_run": runs,
                "features_shown": [lyr.featureCount() for lyr in polygons],
            }
        )
    )


def processing_postprocessing():
    """Processing's own loading and styling of results (importable once QGIS is started)."""
    from processing.gui.Postprocessing import handleAlgorithmResults

    return handleAlgorithmResults


def QgsApplication_registry():  # noqa: N802
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry()


def render(layers, png):
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    change = next(lyr for n, lyr in layers.items() if n.startswith("change abudhabi"))
    settings = QgsMapSettings()
    settings.setLayers([change])
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setOutputSize(QSize(change.width(), change.height()))
    settings.setExtent(change.extent())
    settings.setDestinationCrs(change.crs())
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    img = job.renderedImage()
    img.save(png)
    provider = change.dataProvider()
    block = provider.block(1, change.extent(), change.width(), change.height())
    red = white = 0
    mismatch = 0
    for row in range(change.height()):
        for col in range(change.width()):
            v = block.value(row, col)
            c = QColor(img.pixel(col, row))
            is_red = c.red() > 200 and c.green() < 60 and c.blue() < 60
            is_white = c.red() > 250 and c.green() > 250 and c.blue() > 250
            if v == 1:
                red += is_red
                mismatch += not is_red
            elif v == 0:
                white += is_white
                mismatch += not is_white
    return {"changed_drawn_red": red, "unchanged_drawn_white": white, "mismatch": mismatch}


def run_change_for_error(processing, args, feedback) -> str:
    """Run geobert:change on args' dates into args' folder; the Processing error text, or ""."""
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsRasterLayer

    try:
        processing.run(
            "geobert:change",
            {
                "BEFORE": QgsRasterLayer(args["before"]),
                "AFTER": QgsRasterLayer(args["after"]),
                "OUTPUT_FOLDER": args["out"],
            },
            context=QgsProcessingContext(),
            feedback=feedback,
        )
    except QgsProcessingException as exc:
        return str(exc)
    return ""


def check_cancel(args):
    """Cancel as the batch dialog's button does: an event on the main thread, which runs the
    algorithm (as batch mode and qgis_process do) — seen only if the run lets events through."""
    from qgis.PyQt.QtCore import QTimer

    _app, processing = start_qgis()
    load_plugin(args["plugin_dir"])
    rec = Recorder()
    timer = QTimer()
    timer.setInterval(50)

    def cancel_after_first_progress():
        if rec.values and rec.values[-1] > 0:
            rec.feedback.cancel()
            timer.stop()

    timer.timeout.connect(cancel_after_first_progress)
    timer.start()
    t0 = time.time()
    error = run_change_for_error(processing, args, rec.feedback)
    print(
        json.dumps(
            {
                "error": error,
                "seconds": time.time() - t0,
                "progress": rec.values,
                "out_exists": Path(args["out"]).exists(),
            }
        )
    )


def check_error(args):
    _app, processing = start_qgis()
    load_plugin(args["plugin_dir"])
    print(json.dumps({"error": run_change_for_error(processing, args, Recorder().feedback)}))


def check_classify(args):
    from qgis.core import QgsProcessingContext, QgsProject, QgsRasterLayer

    _app, processing = start_qgis()
    handle_results = processing_postprocessing()
    load_plugin(args["plugin_dir"])
    rec = Recorder()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {"INPUT": QgsRasterLayer(args["scene"], "brandenburg"), "OUTPUT_FOLDER": args["out"]}
    if "extent" in args:
        params["EXTENT"] = args["extent"]
    out = processing.run("geobert:classify", params, context=context, feedback=rec.feedback)
    run_progress = list(rec.values)
    handle_results(
        QgsApplication_registry().algorithmById("geobert:classify"),
        context,
        rec.feedback,
        False,
        out,
    )
    layers = {lyr.name(): renderer_info(lyr) for lyr in QgsProject.instance().mapLayers().values()}
    print(json.dumps({"outputs": out, "progress": run_progress, "layers": layers}))


def check_train(args):
    from qgis.core import QgsProcessingContext, QgsRasterLayer, QgsVectorLayer

    _app, processing = start_qgis()
    load_plugin(args["plugin_dir"])
    rec = Recorder()
    labels = QgsVectorLayer(args["labels"], "training polygons", "ogr")
    out = processing.run(
        "geobert:trainlandcover",
        {
            "INPUT": QgsRasterLayer(args["scene"], "scene"),
            "LABELS": labels,
            "CLASS_FIELD": "fclass",
            "STEPS": 3,
            "ADAPT_STEPS": 0,  # its own test: tests/geobert/test_landcover_adapt.py
            "VALIDATION_FRACTION": 0.3,
            "OUTPUT": args["out"],
        },
        context=QgsProcessingContext(),
        feedback=rec.feedback,
    )
    print(json.dumps({"outputs": out, "progress": rec.values}))


def check_opened(args):
    """Rasters opened as a user opens them (Add Raster Layer: the default style is loaded)."""
    from qgis.core import QgsRasterLayer

    start_qgis()
    info = {}
    for path in args["paths"].split(","):
        layer = QgsRasterLayer(path, Path(path).stem)
        assert layer.isValid(), path
        info[Path(path).name] = renderer_info(layer)
    print(json.dumps(info))


if __name__ == "__main__":
    check, payload = sys.argv[1], json.loads(sys.argv[2])
    globals()[f"check_{check}"](payload)
