"""The geobert Processing algorithms: each one runs a geobert worker process."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QThread

from . import styles
from .settings import python_is_set, python_path, scheduler_address
from .worker import WorkerResult, geobert_command, run_worker


def cancel_poll(feedback: QgsProcessingFeedback) -> Callable[[], bool]:
    """``feedback.isCanceled`` for the worker's poll loop; on the application's main thread
    it first handles pending events.

    The toolbox runs an algorithm in a task thread, but ``qgis_process`` and the batch dialog
    run it on the main thread, which the poll loop would block for the whole run: the GUI froze,
    the batch dialog's Cancel was seen only after the item, and ``qgis_process`` never saw
    Ctrl-C (its SIGINT handler is a socket notifier that needs the event loop).
    """
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        return feedback.isCanceled

    def poll() -> bool:
        QCoreApplication.processEvents()
        return feedback.isCanceled()

    return poll


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a geobert style to a result layer once Processing has loaded it."""

    _alive: ClassVar[list["StylePostProcessor"]] = []  # Processing keeps only a raw pointer

    def __init__(self, kind: str, colors: dict[str, str] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.colors = colors or {}

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        apply_style(layer, self.kind, self.colors)
        project = context.project() or QgsProject.instance()
        replace_earlier_layers(layer, project)
        layer.setCustomProperty(KIND_PROPERTY, self.kind)
        stack_results(layer, project)

    @classmethod
    def create(cls, kind: str, colors: dict[str, str] | None = None) -> "StylePostProcessor":
        proc = cls(kind, colors)
        cls._alive.append(proc)
        return proc


KIND_PROPERTY = "geobert/kind"
#: top to bottom in the layer tree: polygons over the class/change rasters over the ramps (the
#: ramps are opaque where the probability is high and would hide everything under them)
STACK_RANK = {
    "change_polygons": 0, "landcover_polygons": 0, "change": 1, "landcover": 1,
    "probability": 2, "confidence": 2,
}  # fmt: skip


def stack_results(layer: Any, project: Any) -> None:
    """Order one run's layers (same output folder, same tree group) by :data:`STACK_RANK`.

    Processing adds the results in the order of their paths, each on top (``change.gpkg``
    first, so at the bottom under the rasters); this restacks them after each one is added.
    """
    from qgis.core import QgsLayerTreeLayer

    node = project.layerTreeRoot().findLayer(layer.id())
    if node is None or node.parent() is None:
        return
    parent = node.parent()
    folder = os.path.dirname(_file_of(layer))
    ours = [
        n
        for n in parent.children()
        if isinstance(n, QgsLayerTreeLayer)
        and n.layer() is not None
        and n.layer().customProperty(KIND_PROPERTY) in STACK_RANK
        and os.path.dirname(_file_of(n.layer())) == folder
    ]
    wanted = sorted(ours, key=lambda n: STACK_RANK[n.layer().customProperty(KIND_PROPERTY)])
    if wanted == ours:
        return
    start = min(parent.children().index(n) for n in ours)
    # clones in first: a layer that leaves the tree entirely is removed from the project
    for clone in reversed([n.clone() for n in wanted]):
        parent.insertChildNode(start, clone)
    for n in ours:
        parent.removeChildNode(n)


def _file_of(layer: Any) -> str:
    """The file behind a layer (its source without ``|layername=…``), resolved."""
    return os.path.realpath(layer.source().split("|")[0])


def replace_earlier_layers(layer: Any, project: Any) -> None:
    """Remove the project's other layers that show the same file (and layer): a rerun into the
    same output folder replaces the previous result on the map instead of leaving the old
    layers, which would still draw the previous run's pixels."""
    source = layer.source()
    for other in list(project.mapLayers().values()):
        if other.id() == layer.id():
            continue
        same_file = _file_of(other) == _file_of(layer)
        same_sublayer = other.source().partition("|")[2] == source.partition("|")[2]
        if same_file and same_sublayer:
            project.removeMapLayer(other.id())
    # QGIS pools open datasets by path: the new layer may have been handed the previous run's
    # connection (its file was replaced underneath), so read the file again
    layer.dataProvider().reloadData()
    if hasattr(layer, "updateExtents"):
        layer.updateExtents()
    layer.triggerRepaint()


def apply_style(layer: Any, kind: str, colors: dict[str, str] | None = None) -> None:
    """Style a loaded geobert output by its kind."""
    if kind == "change" and isinstance(layer, QgsRasterLayer):
        styles.style_change_mask(layer)
    elif kind == "probability" and isinstance(layer, QgsRasterLayer):
        if not styles.style_from_sidecar(layer):
            styles.style_probability(layer)
    elif kind == "change_polygons" and isinstance(layer, QgsVectorLayer):
        styles.style_change_polygons(layer)
    elif kind == "landcover" and isinstance(layer, QgsRasterLayer):
        styles.style_landcover(layer)
    elif kind == "confidence" and isinstance(layer, QgsRasterLayer):
        styles.style_probability(layer)
    elif kind == "landcover_polygons" and isinstance(layer, QgsVectorLayer):
        styles.style_landcover_polygons(layer, colors or {})


class GeobertAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: run the worker, map its progress and errors onto Processing's."""

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def group(self) -> str:
        return "geobert"

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return "geobert"

    def run_geobert(
        self,
        args: list[str],
        feedback: QgsProcessingFeedback,
        summary_path: Path | None = None,
    ) -> WorkerResult:
        """Run the worker; on success show the run's warnings (from ``summary_path``) and then
        geobert's own closing lines (what it wrote: polygons, hectares, scores) in the log."""
        if not python_is_set():
            feedback.pushInfo(
                f"no geobert Python is set (Processing ▸ Options ▸ Providers ▸ geobert): trying "
                f"{python_path()} from the PATH"
            )
        cmd = geobert_command(python_path(), *args)
        feedback.pushCommandInfo(" ".join(cmd))
        result = run_worker(
            cmd,
            on_progress=feedback.setProgress,
            is_cancelled=cancel_poll(feedback),
            on_line=feedback.pushInfo,
        )
        if result.cancelled:
            raise QgsProcessingException("geobert: cancelled; no output was written")
        if not result.ok:
            feedback.pushDebugInfo(result.stderr)
            raise QgsProcessingException(result.error or "the geobert worker failed")
        if summary_path is not None:
            self.report_warnings(summary_path, feedback)
        for line in result.stderr.splitlines():
            # the warnings logged by geobert itself came from summary.json just above
            if line.strip() and not line.startswith("WARNING geobert."):
                feedback.pushInfo(line.strip())
        return result

    @staticmethod
    def report_warnings(summary_path: Path, feedback: QgsProcessingFeedback) -> None:
        """Show the model the run used (what it was trained on, its bands, pixel size and
        threshold) and the run's reasons not to trust the result (``summary.json``'s
        ``warnings``, as warnings) in the Processing log."""
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        card = summary.get("model_card") or {}
        if card:
            shown = ("task", "bands", "pixel_m", "classes", "threshold", "trained on")
            feedback.pushInfo(
                f"model {Path(summary.get('model', '')).name}: "
                + "; ".join(f"{k} {card[k]}" for k in shown if k in card)
            )
        notes = summary.get("warnings", [])
        push = getattr(feedback, "pushWarning", None)  # QGIS ≥ 3.20
        for note in notes:
            if push is not None:
                push(f"geobert: {note}")
            else:
                feedback.reportError(f"geobert: {note}", fatalError=False)

    MODEL, MIN_AREA, SCHEDULER, OUTPUT_FOLDER = "MODEL", "MIN_AREA", "SCHEDULER", "OUTPUT_FOLDER"
    EXTENT, OUTPUT_CRS = "EXTENT", "OUTPUT_CRS"

    def add_grid_parameters(self) -> None:
        """Optional area of interest and output CRS (geobert's --bounds and --crs)."""
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, "Area to process (empty: the whole input)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterCrs(
                self.OUTPUT_CRS, "Output CRS (empty: the input's)", optional=True
            )
        )

    def grid_arguments(self, parameters, context, input_crs) -> list[str]:
        """``--crs`` and ``--bounds`` for the chosen output CRS and extent; the extent is
        transformed to the output CRS (the input's CRS when none is chosen)."""
        args = []
        crs = self.parameterAsCrs(parameters, self.OUTPUT_CRS, context)
        if crs.isValid():
            args += ["--crs", crs.authid() or crs.toWkt()]
        else:
            crs = input_crs
            if parameters.get(self.EXTENT) not in (None, "") and not crs.isValid():
                raise QgsProcessingException(
                    "the input folder's CRS could not be read, so the area to process cannot "
                    "be placed in it: choose an output CRS as well, or load the input as a layer"
                )
        if parameters.get(self.EXTENT) not in (None, ""):
            box: QgsRectangle = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
            if not box.isNull() and not box.isEmpty():
                corners = (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum())
                args += ["--bounds", *(repr(v) for v in corners)]
        return args

    BANDS = "BANDS"
    #: the band-order choices offered (geobert's --bands presets), first: the files' own names
    BAND_CHOICES: ClassVar[list[tuple[str, str]]] = [
        ("", "From the files (band descriptions or file names)"),
        ("s2-l1c", "Sentinel-2 L1C stack: B01…B08, B8A, B09…B12 (13)"),
        ("s2-l2a", "Sentinel-2 L2A stack: B01…B08, B8A, B09, B11, B12 (12)"),
        ("s2-10m", "Sentinel-2 10 m bands: B02, B03, B04, B08"),
        ("s2-rgbn", "Natural colour + near infrared: B04, B03, B02, B08"),
    ]

    def add_input_parameters(self, layer_key: str, label: str) -> None:
        """One scene: a loaded raster layer, or a folder (band files, a Sentinel-2 ``.SAFE``).

        A layer QGIS opened from a Sentinel-2 product (its ``MTD_MSIL*.xml`` or ``.zip``) is the
        whole product to geobert: every band at its own resolution, offsets applied, L2A clouds
        masked."""
        self.addParameter(QgsProcessingParameterRasterLayer(layer_key, label, optional=True))
        self.addParameter(
            QgsProcessingParameterFile(
                layer_key + "_FOLDER",
                f"{label}, as a folder instead: band files (…_B02.tif …) or a Sentinel-2 .SAFE",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )

    def scene_input(self, parameters, context, layer_key: str, what: str) -> tuple[str, str, Any]:
        """The worker's path, a display name and the CRS of one scene parameter pair."""
        layer = self.parameterAsRasterLayer(parameters, layer_key, context)
        folder = self.parameterAsFile(parameters, layer_key + "_FOLDER", context)
        if layer is not None and folder:
            raise QgsProcessingException(
                f"{what}: choose a layer or a folder, not both ({layer.name()}, {folder})"
            )
        if layer is not None:
            return layer.source(), layer.name(), layer.crs()
        if folder:
            if not Path(folder).is_dir():
                raise QgsProcessingException(f"{what}: {folder} is not a folder")
            return folder, Path(folder).name, folder_crs(Path(folder))
        raise QgsProcessingException(
            f"{what}: choose a raster layer, or a folder of band files or a Sentinel-2 .SAFE"
        )

    def add_model_parameter(self, label: str) -> None:
        self.addParameter(
            QgsProcessingParameterFile(self.MODEL, label, extension="safetensors", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.BANDS,
                "Band order of the input (for stacks without band names, e.g. from Build "
                "Virtual Raster)",
                options=[label for _, label in self.BAND_CHOICES],
                defaultValue=0,
            )
        )

    def add_area_scheduler_output_parameters(self, area_label: str, min_area: float) -> None:
        """Minimum area, Dask scheduler and output folder: shared by the mapping tools."""
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MIN_AREA, area_label, QgsProcessingParameterNumber.Double, min_area,
                minValue=0.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterString(
                self.SCHEDULER, "Dask scheduler (tcp://host:port; empty: this machine)",
                defaultValue="", optional=True,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder")
        )

    PRECISION, WORKERS, THRESHOLD = "PRECISION", "WORKERS", "THRESHOLD"
    PRECISION_CHOICES: ClassVar[list[tuple[str, str]]] = [
        ("auto", "auto: bfloat16 where the CPU has bf16 units and the model was validated in it"),
        ("fp32", "fp32 (float32 everywhere)"),
        ("bf16", "bf16 (bfloat16; slow on CPUs without bf16 units)"),
    ]

    def add_run_parameters(self, threshold: bool = False) -> None:
        """Advanced: the change threshold, inference precision and local worker threads (the
        CLI's --threshold, --precision, --workers). Inference runs on this machine's CPU (or
        on the Dask cluster named above)."""
        params = []
        if threshold:
            params.append(
                QgsProcessingParameterNumber(
                    self.THRESHOLD,
                    "Change threshold (on the probability layer, calibrated for the shipped "
                    "model; empty: the model's own — lower flags more change, higher less)",
                    QgsProcessingParameterNumber.Double, None, optional=True, minValue=0.01,
                    maxValue=0.99,
                )
            )  # fmt: skip
        params.append(
            QgsProcessingParameterEnum(
                self.PRECISION, "Inference precision (on the CPU)",
                options=[label for _, label in self.PRECISION_CHOICES], defaultValue=0,
            )
        )  # fmt: skip
        params.append(
            QgsProcessingParameterNumber(
                self.WORKERS, "Worker threads on this machine (empty: all CPUs)",
                QgsProcessingParameterNumber.Integer, None, optional=True, minValue=1,
            )
        )  # fmt: skip
        for param in params:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)

    def run_parameter_arguments(self, parameters, context) -> list[str]:
        """The CLI options of :meth:`add_run_parameters`' parameters that are set."""
        args = []
        if parameters.get(self.THRESHOLD) not in (None, ""):
            threshold = self.parameterAsDouble(parameters, self.THRESHOLD, context)
            args += ["--threshold", str(threshold)]
        if self.PRECISION in parameters:
            choice = self.parameterAsEnum(parameters, self.PRECISION, context)
            args += ["--precision", self.PRECISION_CHOICES[choice][0]]
        if parameters.get(self.WORKERS) not in (None, ""):
            args += ["--workers", str(self.parameterAsInt(parameters, self.WORKERS, context))]
        return args

    def output_folder(self, parameters, context) -> str:
        """The output folder's path; the worker creates it, and only when the run succeeds (a
        failed or cancelled run leaves no empty folder; a file or an unwritable place is its
        one-line error)."""
        return self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)

    def run_arguments(self, parameters, context) -> list[str]:
        """The worker options for the model, minimum area and scheduler parameters."""
        args = ["--min-area", str(self.parameterAsDouble(parameters, self.MIN_AREA, context))]
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if model:
            args += ["-m", model]
        preset = self.BAND_CHOICES[self.parameterAsEnum(parameters, self.BANDS, context)][0]
        if preset:
            args += ["--bands", preset]
        args += self.run_parameter_arguments(parameters, context)
        return args + _scheduler_args(self.parameterAsString(parameters, self.SCHEDULER, context))

    def add_layer(
        self,
        context: QgsProcessingContext,
        path: str,
        name: str,
        output: str,
        kind: str,
        colors: dict[str, str] | None = None,
    ) -> None:
        details = QgsProcessingContext.LayerDetails(name, context.project(), output)
        details.setPostProcessor(StylePostProcessor.create(kind, colors))
        context.addLayerToLoadOnCompletion(path, details)


RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


def folder_crs(folder: Path) -> Any:
    """The CRS of a band folder or ``.SAFE`` (its first raster file's; invalid when none reads):
    what an area to process is placed in when no output CRS is chosen."""
    from qgis.core import QgsCoordinateReferenceSystem

    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in RASTER_SUFFIXES and "_TCI" not in path.name.upper():
            layer = QgsRasterLayer(str(path), "crs probe", "gdal")
            if layer.isValid() and layer.crs().isValid():
                return layer.crs()
    return QgsCoordinateReferenceSystem()


def _scheduler_args(value: str) -> list[str]:
    address = value.strip() or scheduler_address()
    return ["--scheduler", address] if address else []


class ChangeDetectionAlgorithm(GeobertAlgorithm):
    BEFORE, AFTER, ZONES = "BEFORE", "AFTER", "ZONES"

    def name(self) -> str:
        return "change"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "Change detection"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return (
            "Detects change between two dates of the same place with the geobert change model. "
            "Each date is a loaded raster layer — a layer opened from a Sentinel-2 product "
            "(its MTD_MSIL1C/2A.xml or .zip) is read as the whole product, every band at its "
            "own resolution — or a folder: band files named …_B02.tif …, or a .SAFE. "
            "The later date is aligned onto the earlier date's grid. Writes a change probability "
            "raster, a change mask (0 no change, 1 change, nodata where either date is invalid), "
            "change polygons (area_m2, area_ha, mean/max probability), summary.json and a "
            "quicklook into the output folder. An area to process gives exactly that extent "
            "(nodata outside the dates); an output CRS reprojects the results (areas stay "
            "ground areas).\n\n"
            "The default model is the shipped one (trained on the 10 labelled OSCD cities, "
            "Sentinel-2 L1C, 13 bands, 10 m; the second date is radiometrically normalised onto "
            "the first). Reasons not to trust a result (dates far apart in season or haze, far "
            "more change flagged than in training, another pixel size, clouds) are warnings in "
            "the log and in summary.json. geobert runs on the CPU in a separate Python process "
            "(set in Processing ▸ Options ▸ Providers ▸ geobert)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_input_parameters(self.BEFORE, "Earlier date")
        self.add_input_parameters(self.AFTER, "Later date")
        self.add_model_parameter("Change model (default: shipped)")
        self.add_grid_parameters()
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.ZONES,
                "Zones for a change report (districts, parcels, planning units; optional)",
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.add_area_scheduler_output_parameters("Minimum polygon area (m²)", 500.0)
        self.add_run_parameters(threshold=True)
        self.addOutput(QgsProcessingOutputRasterLayer("PROBABILITY", "Change probability"))
        self.addOutput(QgsProcessingOutputRasterLayer("CHANGE", "Change mask"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Change polygons"))
        self.addOutput(QgsProcessingOutputFile("SUMMARY", "Summary (JSON)"))
        self.addOutput(QgsProcessingOutputFile("REPORT", "Change report per zone (HTML)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        scene = self.scene_input
        before, before_name, crs = scene(parameters, context, self.BEFORE, "Earlier date")
        after, after_name, _ = scene(parameters, context, self.AFTER, "Later date")
        if before == after:
            raise QgsProcessingException(
                f"the earlier and the later date are the same input ({before_name}): choose the "
                "layer or folder of each date (both layer fields start on the same layer)"
            )
        out = self.output_folder(parameters, context)
        args = ["change", before, after, "-o", out, "--overwrite"]
        args += self.grid_arguments(parameters, context, crs)
        zones = None
        if parameters.get(self.ZONES) not in (None, ""):
            zones = self.parameterAsCompatibleSourceLayerPath(
                parameters, self.ZONES, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
            args += ["--zones", zones]  # PATH|layername=L: geobert reads that layer
        summary = Path(out) / "summary.json"
        self.run_geobert(args + self.run_arguments(parameters, context), feedback, summary)
        dates = f"{before_name} → {after_name}"
        paths = {
            "PROBABILITY": str(Path(out) / "change_probability.tif"),
            "CHANGE": str(Path(out) / "change.tif"),
            "POLYGONS": str(Path(out) / "change.gpkg") + "|layername=change",
            "SUMMARY": str(Path(out) / "summary.json"),
        }
        if zones is not None:
            paths["REPORT"] = str(Path(out) / "report.html")
            feedback.pushInfo(f"change report per zone: {paths['REPORT']}")
        self.add_layer(
            context,
            paths["PROBABILITY"],
            f"change probability {dates}",
            "PROBABILITY",
            "probability",
        )
        self.add_layer(context, paths["CHANGE"], f"change {dates}", "CHANGE", "change")
        self.add_layer(
            context, paths["POLYGONS"], f"change polygons {dates}", "POLYGONS", "change_polygons"
        )
        return {**paths, self.OUTPUT_FOLDER: out}


class LandCoverAlgorithm(GeobertAlgorithm):
    INPUT, MODE, CELL_SIZE = "INPUT", "MODE", "CELL_SIZE"
    MODES: ClassVar[list[str]] = ["pixel", "patch"]

    def name(self) -> str:
        return "classify"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "Land-cover classification"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return (
            "Classifies a scene (a loaded raster layer, a layer opened from a Sentinel-2 "
            "product, or a folder of band files or a .SAFE) with a geobert land-cover model: "
            "class raster (with the model's "
            "colours and names), confidence, polygons per class (class, area_ha, area_m2, "
            "mean_confidence), areas.csv and a quicklook, in the output folder. An area to "
            "process gives exactly that extent; an output CRS reprojects the results.\n\n"
            "Mode: <b>pixel</b> gives every pixel its class (fine boundaries; small regions "
            "under the minimum mapping unit join their largest neighbour); <b>patch</b> gives "
            "one class per cell of 'Cell size' pixels (the class with the highest mean "
            "probability over the cell), as a grid of square polygons: faster to read as a "
            "summary, coarser.\n\n"
            "The default model is the shipped one (8 OpenStreetMap land-use classes of a "
            "Brandenburg Sentinel-2 L1C scene, 13 bands, 10 m); a scene far from its training "
            "spectra is flagged in the log. geobert runs on the CPU in a separate Python "
            "process (set in Processing ▸ Options ▸ Providers ▸ geobert)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_input_parameters(self.INPUT, "Scene")
        self.add_model_parameter("Land-cover model (default: shipped)")
        self.addParameter(
            QgsProcessingParameterEnum(self.MODE, "Mode", options=self.MODES, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.CELL_SIZE, "Cell size for patch mode (pixels)",
                QgsProcessingParameterNumber.Integer, 64, minValue=1,
            )
        )  # fmt: skip
        self.add_grid_parameters()
        self.add_area_scheduler_output_parameters("Minimum mapping unit (m²)", 5000.0)
        self.add_run_parameters()
        self.addOutput(QgsProcessingOutputRasterLayer("LANDCOVER", "Land cover"))
        self.addOutput(QgsProcessingOutputRasterLayer("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Land-cover polygons"))
        self.addOutput(QgsProcessingOutputFile("AREAS", "Areas per class (CSV)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        scene, name, crs = self.scene_input(parameters, context, self.INPUT, "Scene")
        out = self.output_folder(parameters, context)
        mode = self.MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        args = ["classify", scene, "-o", out, "--overwrite", "--mode", mode]
        args += ["--cell-size", str(self.parameterAsInt(parameters, self.CELL_SIZE, context))]
        args += self.grid_arguments(parameters, context, crs)
        summary = Path(out) / "summary.json"
        self.run_geobert(args + self.run_arguments(parameters, context), feedback, summary)
        paths = {
            "LANDCOVER": str(Path(out) / "landcover.tif"),
            "CONFIDENCE": str(Path(out) / "confidence.tif"),
            "POLYGONS": str(Path(out) / "landcover.gpkg") + "|layername=landcover",
            "AREAS": str(Path(out) / "areas.csv"),
        }
        colors = {n: c for _, n, c in styles.landcover_classes(QgsRasterLayer(paths["LANDCOVER"]))}
        self.add_layer(context, paths["LANDCOVER"], f"land cover {name}", "LANDCOVER", "landcover")
        self.add_layer(
            context,
            paths["CONFIDENCE"],
            f"land-cover confidence {name}",
            "CONFIDENCE",
            "confidence",
        )
        self.add_layer(
            context, paths["POLYGONS"], f"land-cover polygons {name}", "POLYGONS",
            "landcover_polygons", colors,
        )  # fmt: skip
        return {**paths, self.OUTPUT_FOLDER: out}


class TrainLandCoverAlgorithm(GeobertAlgorithm):
    INPUT, LABELS, CLASS_FIELD, STEPS, OUTPUT = "INPUT", "LABELS", "CLASS_FIELD", "STEPS", "OUTPUT"
    FIX_GEOMETRIES, VALIDATION_FRACTION = "FIX_GEOMETRIES", "VALIDATION_FRACTION"
    ADAPT_STEPS = "ADAPT_STEPS"
    #: geobert train-landcover --adapt-steps' default and its warm-up (a test keeps them equal)
    ADAPT_DEFAULT, ADAPT_WARMUP = 1000, 50

    def name(self) -> str:
        return "trainlandcover"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "Train land-cover model"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return (
            "Trains a land-cover model from a scene and a layer of training polygons with a "
            "class field (any CRS). Whole blocks of the labelled area are held out and scored; "
            "the scores are in the log and inside the model. A validation share above 0 sets "
            "that share of the training blocks aside and keeps the training step that scores "
            "best on them (the held-out blocks are never used to choose). Before training, "
            "the pretrained encoder is adapted to the scene by masked-image-modelling steps on "
            "its own pixels (no labels; 1000 steps: about 12-15 minutes on 2 CPU cores): over "
            "areas away from the polygons it raised macro-F1 by 3 points. 0 steps skips it."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_input_parameters(self.INPUT, "Scene")
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.LABELS, "Training polygons", [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.CLASS_FIELD, "Class field", parentLayerParameterName=self.LABELS
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.STEPS, "Training steps", QgsProcessingParameterNumber.Integer, 800, minValue=1
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.ADAPT_STEPS,
                "Steps adapting the encoder to the scene first (0: none, otherwise above 50)",
                QgsProcessingParameterNumber.Integer,
                self.ADAPT_DEFAULT,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.FIX_GEOMETRIES,
                "Repair invalid polygons (otherwise an invalid polygon stops the run)",
                defaultValue=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.VALIDATION_FRACTION,
                "Share of training blocks for choosing the step (0: keep the last step)",
                QgsProcessingParameterNumber.Double,
                0.0,
                minValue=0.0,
                maxValue=0.9,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT, "Model", "geobert model (*.safetensors)"
            )
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        """Refuse 1-50 adaptation steps before anything runs, as the CLI would (its warm-up
        alone is 50 steps): the message shows in the dialog, not after minutes of work."""
        ok, message = super().checkParameterValues(parameters, context)
        adapt = self.parameterAsInt(parameters, self.ADAPT_STEPS, context)
        if ok and 0 < adapt <= self.ADAPT_WARMUP:
            return False, (
                f"Steps adapting the encoder to the scene: {adapt} is within its "
                f"{self.ADAPT_WARMUP} warm-up steps; give 0 (none) or more, e.g. "
                f"{self.ADAPT_DEFAULT}"
            )
        return ok, message

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        scene, _, _ = self.scene_input(
            parameters, context, self.INPUT, "Scene the polygons were drawn on"
        )
        labels = self.parameterAsCompatibleSourceLayerPath(
            parameters, self.LABELS, context, ["gpkg", "shp"], "gpkg", feedback
        )
        field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        steps = self.parameterAsInt(parameters, self.STEPS, context)
        args = ["train-landcover", "--image", scene, "--labels", labels.split("|")[0],
                "--class-field", field, "-o", out, "--steps", str(steps),
                "--adapt-steps", str(self.parameterAsInt(parameters, self.ADAPT_STEPS, context)),
                "--overwrite"]  # fmt: skip
        if self.parameterAsBool(parameters, self.FIX_GEOMETRIES, context):
            args.append("--fix-geometries")
        validation = self.parameterAsDouble(parameters, self.VALIDATION_FRACTION, context)
        if validation > 0:
            args += ["--validation-fraction", str(validation)]
        self.run_geobert(args, feedback)
        return {self.OUTPUT: out}


class CheckEnvironmentAlgorithm(GeobertAlgorithm):
    # One visible parameter on purpose: QGIS 3.22 runs a tool without parameters straight from
    # the toolbox with a message-bar progress whose float → QProgressBar.setValue(int) raises a
    # TypeError (a yellow "Python error" bar even on success) and hides the result in the log.
    PYTHON, STATUS = "PYTHON", "STATUS"

    def name(self) -> str:
        return "check"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "Check geobert environment"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return (
            "Reports whether a Python can run geobert (its version), and how to install it if "
            "not. Leave the Python empty to check the one set in Processing ▸ Options ▸ "
            "Providers ▸ geobert (or GEOBERT_PYTHON); choose one to try it before setting it. "
            "geobert runs on the CPU in a separate process with that Python."
        )

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(
                self.PYTHON,
                "Python to check (empty: the one in the geobert settings)",
                optional=True,
                fileFilter="All files (*)",  # QGIS 3.22 refuses names without a dot otherwise
            )
        )
        self.addOutput(QgsProcessingOutputString(self.STATUS, "geobert environment"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        from .worker import check_environment

        python = self.parameterAsFile(parameters, self.PYTHON, context) or python_path()
        if not python_is_set() and python == python_path():
            feedback.pushInfo(f"no geobert Python is set: checking {python} from the PATH")
        ok, message = check_environment(python)
        if not ok:
            raise QgsProcessingException(message)
        status = f"{python} runs {message}: the geobert tools are ready"
        feedback.pushInfo(status)
        return {self.STATUS: status}
