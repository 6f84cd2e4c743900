"""What the three Processing algorithms share: dependency check, layer -> file, engine callbacks and errors.

The algorithms are thin: the main thread turns layers into file paths, the worker thread calls ONE engine
function with progress/cancel wired to the feedback, and engine errors become QgsProcessingException so
Processing shows the message instead of a traceback. Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import math
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

from qgis.core import (
    Qgis,
    QgsMapLayer,
    QgsMessageLog,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..engine.codec.format.container import MAGIC
from ..engine.errors import CancelledError, InputError, SARCompressorError
from ..engine.io.output_paths import guarded_outputs
from ..engine.io.raster_io import is_gdal_name, open_info
from .progress import StageProgress

PLUGIN_DIR = Path(__file__).resolve().parents[1]
ICON_PATH = PLUGIN_DIR / "resources" / "icon.svg"

# import name -> pip package name, for the advice
REQUIRED_MODULES = {
    "constriction": "constriction",
    "rasterio": "rasterio",
    "matplotlib": "matplotlib",
}
CODEC_MODULES = ("constriction", "rasterio")  # compress, decompress
METRICS_MODULES = ("rasterio", "matplotlib")  # evaluate
GROUPS = {"compression": "Compression", "quality": "Quality assessment"}  # Processing toolbox group id -> name


def missing_dependencies(modules: Iterable[str] = tuple(REQUIRED_MODULES)) -> list[str]:
    """Import names of the engine's dependencies that this Python cannot find (nothing is imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a blocked or half-imported module
            found = False
        if not found:
            missing.append(name)
    return missing


def dependency_message(missing: list[str]) -> str:
    """One sentence naming what is missing and the command that installs it."""
    packages = " ".join(REQUIRED_MODULES[name] for name in missing)
    names = ", ".join(missing)
    return (
        f"SAR Compressor needs {names}: click Install dependencies in the SAR Compressor panel (it installs "
        "into your QGIS profile, not the system Python), or run `python3 -m pip install --target "
        f"PROFILE/python/dependencies {packages}` in the Python that QGIS uses, PROFILE being your QGIS profile's "
        "folder (on Windows in the OSGeo4W Shell; a plain pip install is refused on Debian 12 and Ubuntu: "
        "externally managed), then restart QGIS."
    )


def require_dependencies(modules: Iterable[str] = tuple(REQUIRED_MODULES)) -> None:
    """Raise the install advice as a QgsProcessingException when one of `modules` is missing."""
    missing = missing_dependencies(modules)
    if missing:
        raise QgsProcessingException(dependency_message(missing))


def import_dependencies(modules: Iterable[str]) -> None:
    """Import `modules` (heavy: for the dock's check, not at QGIS start); a missing one, or one that is
    installed but broken (a DLL, an ABI mismatch), raises the install advice as a QgsProcessingException."""
    modules = tuple(modules)
    require_dependencies(modules)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # broken installs raise OSError, RuntimeError..., not only ImportError
            raise QgsProcessingException(f"{name} could not be imported ({exc}). {dependency_message([name])}") from exc


def layer_file(layer: Optional[QgsRasterLayer]) -> Optional[str]:
    """The file on disk behind a raster layer of the gdal provider (a GeoTIFF, or the zip or netCDF holding the
    dataset), or None (no layer, another provider, not a file)."""
    if layer is None or layer.providerType() != "gdal":
        return None
    path = _source_path(layer)
    return path if path and Path(path).is_file() else None


def _source_path(layer: QgsRasterLayer) -> str:
    """The path in a gdal-provider layer's source ("" where it names none)."""
    return QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path", "")


def layer_dataset(layer: Optional[QgsRasterLayer]) -> Optional[str]:
    """What the engine opens for a raster layer: its source where that is a GDAL name (a zipped product, /vsizip/...,
    or a netCDF/HDF5 variable, NETCDF:"f.nc":var, as QGIS opens them), else its file (layer_file)."""
    if layer is not None and layer.providerType() == "gdal" and is_gdal_name(layer.source()):
        return layer.source()
    return layer.source() if layer_file(layer) else None


def layer_problem(layer: Optional[QgsRasterLayer], what: str) -> Optional[str]:
    """Why SAR Compressor cannot read a layer (not loaded, another provider than GDAL, its file gone, not a file),
    or None: what raster_file refuses, and what the panel says before Run."""
    if layer is None or not layer.isValid():
        return f"The {what} raster layer could not be loaded."
    if layer.providerType() != "gdal":
        return (
            f"The {what} layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
            "SAR Compressor reads files only: save it as a GeoTIFF first."
        )
    if layer_dataset(layer) is not None:
        return None
    path = _source_path(layer)
    if path and not Path(path).exists():
        return (
            f"The {what} layer '{layer.name()}' reads {path}, which no longer exists (moved or deleted): "
            "add the file again from where it is now."
        )
    return f"The {what} layer '{layer.name()}' is not a file on disk ({layer.source()}); save it as a GeoTIFF first."


def raster_file(layer: Optional[QgsRasterLayer], what: str) -> str:
    """The GDAL dataset name of a file-based raster layer (layer_dataset); anything else (WMS, database, a file
    that is gone...) is refused (layer_problem)."""
    problem = layer_problem(layer, what)
    if problem is not None:
        raise QgsProcessingException(problem)
    return layer_dataset(layer)


def input_file_problem(name: str, value: str, sarz: bool) -> Optional[str]:
    """Why QGIS refused the file parameter `name` (`sarz`: it wants a .sarz, else a raster), where its own words
    mislead ('Could not load source layer for INPUT: x.sarz not found' of a file that is there): the path is
    missing or a folder, a .sarz where a raster is wanted or the reverse, or not a raster GDAL reads. None where
    none of these explains it."""
    if not value or is_gdal_name(value):
        return None
    path = Path(value)
    if not path.exists():
        layer = _project_layer(value)
        if layer is not None:
            return _layer_given(name, layer, sarz)
        return f"{name}: {value} was not found (no such file, nor a layer of that name in the project)."
    if path.is_dir():
        return f"{name}: {value} is a folder, not a file."
    try:
        with open(path, "rb") as f:
            is_sarz = f.read(len(MAGIC)) == MAGIC
    except OSError as exc:
        return f"{name}: cannot read {value}: {exc.strerror or exc}."
    if sarz and not is_sarz:
        return f"{name}: {value} is not a .sarz file (SAR Compressor's compressed format)."
    if is_sarz and not sarz:
        return (
            f"{name}: {value} is a compressed .sarz file: decode it with 'Decompress SAR raster' first (or drop it "
            "on the map to open it)."
        )
    if not sarz:
        try:
            open_info(path)
        except InputError as exc:
            return f"{name}: {exc}"
    return None


def _project_layer(value: str) -> Optional[QgsMapLayer]:
    """The project's layer of id or name `value`, or None."""
    project = QgsProject.instance()
    return project.mapLayer(value) or next(iter(project.mapLayersByName(value)), None)


def _layer_given(name: str, layer: QgsMapLayer, sarz: bool) -> str:
    """Why a layer of the project does not do for the file parameter `name` (QGIS's refusal was 'not found'): a
    vector or other non-raster layer, or any layer where a .sarz file is wanted (Decompress takes a file)."""
    if not isinstance(layer, QgsRasterLayer):
        what = "a vector layer" if isinstance(layer, QgsVectorLayer) else "not a raster layer"
        wanted = "a .sarz file" if sarz else "a raster layer or file"
        return f"{name}: '{layer.name()}' is {what}: give {wanted}."
    source = _source_path(layer) or layer.source()
    if sarz:
        wanted = "give a .sarz file (or its VRT) by its path"
        return f"{name}: '{layer.name()}' is a map layer; {wanted} (the layer's: {source})"
    return f"{name}: the raster layer '{layer.name()}' cannot be read ({source})."


def enum_name_problem(param: QgsProcessingParameterDefinition, value: object) -> Optional[str]:
    """Why an option-name parameter (static_enum) refused `value`, naming its options: qgis_process's help offers
    their numbers, which QGIS then refuses as 'Incorrect parameter value'; None where it is not such a case."""
    if not isinstance(param, QgsProcessingParameterEnum) or not param.usesStaticStrings() or value is None:
        return None
    if str(value) in param.options():
        return None
    return f"{param.name()}: {value} is not one of {', '.join(param.options())} (give the option's name)."


def band_count(layer: QgsRasterLayer) -> int:
    """The raster's own bands: QGIS shows a GDAL per-dataset mask (an internal or .msk mask) as one more, alpha,
    band, which the raster does not have (the engine reads the mask with its band)."""
    dataset = layer_dataset(layer)
    if dataset is None:
        return layer.bandCount()
    try:
        return open_info(dataset).count
    except SARCompressorError:
        return layer.bandCount()


def resolve_band(layer: QgsRasterLayer, band: int, what: str, parameter: str) -> int:
    """The 1-based band: the chosen one, or band 1 of a single-band raster (others must choose, in `parameter`)."""
    count = band_count(layer)
    if band < 0:  # QGIS's band parameter takes any integer
        raise QgsProcessingException(f"Band {band} does not exist: bands count from 1 (parameter {parameter}).")
    if band == 0:
        if count > 1:
            raise QgsProcessingException(
                f"The {what} raster has {count} bands: choose the band to use (parameter {parameter})."
            )
        return 1
    if band > count:
        raise QgsProcessingException(f"Band {band} does not exist: the {what} raster has {count} band(s).")
    return band


def geotiff_path(path: str, what: str) -> str:
    """The engine writes GeoTIFF only: refuse other extensions instead of writing a mislabelled file."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(f"The {what} must be a GeoTIFF (.tif), got '{path}'.")
    return path


def engine_callbacks(
    feedback: QgsProcessingFeedback,
) -> tuple[Callable[[int, int], None], Callable[[], bool]]:
    """(progress, cancel) for the engine: progress(done, total) -> percent, cancel -> feedback.isCanceled."""

    def progress(done: int, total: int) -> None:
        if total > 0:
            feedback.setProgress(100.0 * done / total)

    return progress, feedback.isCanceled


def engine_module(name: str, modules: Iterable[str]) -> ModuleType:
    """Import `engine.<name>` on first use; a dependency that is there but broken (a DLL, an ABI mismatch)
    becomes the install advice instead of a traceback."""
    try:
        return importlib.import_module(f"..engine.{name}", __package__)
    except (ImportError, OSError) as exc:
        top = (getattr(exc, "name", None) or "").split(".")[0]
        advice = dependency_message([top] if top in REQUIRED_MODULES else list(modules))
        raise QgsProcessingException(f"The SAR Compressor engine could not be loaded ({exc}). {advice}") from exc


@contextmanager
def engine_errors() -> Iterator[None]:
    """Engine failures -> QgsProcessingException (CancelledError passes: callers end the run quietly). Anything
    else is a bug: one line for the user and the traceback in the log (the dock showed 30 lines of one)."""
    try:
        yield
    except (CancelledError, QgsProcessingException):
        raise
    except SARCompressorError as exc:
        raise QgsProcessingException(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 (an engine bug must still reach the user as a message)
        QgsMessageLog.logMessage(traceback.format_exc(), "SAR Compressor", Qgis.Critical)
        raise QgsProcessingException(
            f"internal error ({type(exc).__name__}: {exc}); the traceback is in the log (View > Panels > Log "
            "Messages, SAR Compressor): please report it"
        ) from exc


@contextmanager
def destination_rules(inputs: Iterable[Optional[str]], outputs: Iterable[Optional[str]]) -> Iterator[None]:
    """The engine's output rules (engine.io.output_paths) around a run: an existing destination is replaced, as
    QGIS's own rule is (its dialog asks first), but never an input, a folder, a FIFO or a device, and not while
    another run writes it."""
    with engine_errors(), guarded_outputs(inputs, outputs, overwrite=True):
        yield


def processing_temp_folder() -> Path:
    """QGIS's temporary processing folder (deleted when QGIS exits), resolved."""
    return Path(QgsProcessingUtils.tempFolder()).resolve()


def within(path: str, roots: Iterable[Path]) -> bool:
    """Whether `path` is one of `roots` (resolved folders) or inside one."""
    resolved = Path(path).resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def fmt_number(value) -> str:
    """A metric for logs and reports: 4 decimals, 'n/a' for None (too small to measure), inf as is."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def cancelled(feedback: QgsProcessingFeedback) -> dict:
    """The result of a cancelled run: the engine already removed its partial output."""
    feedback.pushInfo("Cancelled: no output was written.")
    return {}


class SARAlgorithm(QgsProcessingAlgorithm):
    """Base of the provider's algorithms: input checks before the run, translation, shared parameters.

    Subclasses resolve their layers in `resolve_inputs` (main thread). It runs twice: in checkParameterValues,
    so dialogs, processing.run and qgis_process refuse bad input with its message before anything starts, and
    in prepareAlgorithm, for paths that skip the check (model children, batch rows).
    """

    NAME = ""  # the id within the provider
    DISPLAY_NAME = ""
    GROUP_ID = "compression"  # a key of GROUPS
    DEPENDENCIES: tuple[str, ...] = CODEC_MODULES
    FILE_INPUTS: tuple[tuple[str, bool], ...] = ()
    """(parameter, wants a .sarz) of each parameter that names a file the algorithm reads (refusal_reason)."""

    def createInstance(self) -> SARAlgorithm:  # noqa: N802 (QGIS API names)
        return type(self)()

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        return self.tr(GROUPS[self.GROUP_ID])

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP_ID

    def refusal_reason(self, parameters: dict, context: QgsProcessingContext) -> Optional[str]:
        """Why QGIS's own check refused one of the files given as paths (input_file_problem), in words that name
        the problem; None to keep QGIS's message. Only a parameter QGIS refuses is explained (a layer given by its
        id or name is no path: it was called missing where another parameter was wrong)."""
        for name, sarz in self.FILE_INPUTS:
            value = parameters.get(name)
            if not isinstance(value, str) or self.parameterDefinition(name).checkValueIsAcceptable(value, context):
                continue
            problem = input_file_problem(name, value, sarz)
            if problem:
                return problem
        for param in self.parameterDefinitions():
            problem = enum_name_problem(param, parameters.get(param.name()))
            if problem:
                return problem
        return None

    def resolve_inputs(self, parameters: dict, context: QgsProcessingContext) -> None:
        """Turn layers into files and bands, raising QgsProcessingException for unusable input (default:
        no layers to resolve)."""

    def add_raster_parameters(self, name: str, label: str, band_name: str, band_label: str) -> None:
        """A raster layer input and the choice of its band (optional: resolve_band asks for it above one band)."""
        self.addParameter(QgsProcessingParameterRasterLayer(name, self.tr(label)))
        self.addParameter(
            QgsProcessingParameterBand(band_name, self.tr(band_label), parentLayerParameterName=name, optional=True)
        )

    def raster_band(
        self, parameters: dict, context: QgsProcessingContext, name: str, band_name: str
    ) -> tuple[QgsRasterLayer, str, int]:
        """Main thread: the layer of raster parameter `name`, its file and its 1-based band, all checked."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        what = name.lower()
        path = raster_file(layer, what)
        band = self.parameterAsInt(parameters, band_name, context)
        return layer, path, resolve_band(layer, band, what, band_name)

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API names)
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, self.refusal_reason(parameters, context) or message
        try:
            require_dependencies(self.DEPENDENCIES)
            self.resolve_inputs(parameters, context)
        except QgsProcessingException as exc:
            return False, str(exc)
        return True, ""

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802
        self.resolve_inputs(parameters, context)
        return True

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("SARCompressor", text)

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def advanced(self, param: QgsProcessingParameterDefinition) -> None:
        """Add a secondary parameter, shown under 'Advanced parameters'."""
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(param)

    def static_enum(self, name: str, label: str, options: Iterable[str], default: str) -> QgsProcessingParameterEnum:
        """An enum parameter whose value is the option text, not its index (scripts and models stay readable)."""
        param = QgsProcessingParameterEnum(name, self.tr(label), options=list(options), defaultValue=default)
        param.setUsesStaticStrings(True)
        return param

    def engine(self, name: str) -> ModuleType:
        """The engine module `name`, after checking this algorithm's dependencies (worker thread)."""
        require_dependencies(self.DEPENDENCIES)
        return engine_module(name, self.DEPENDENCIES)

    def run_engine(
        self,
        function: Callable,
        feedback: QgsProcessingFeedback,
        *args,
        stages: Optional[StageProgress] = None,
        **kwargs,
    ):
        """`function(*args, **kwargs)` (a codec call) with progress, cancel and log wired to `feedback` (through
        `stages` when given: stage text and time left); its stats, or None when the run was cancelled (the
        engine removed its partial output)."""
        progress, cancel = engine_callbacks(feedback)
        log = feedback.pushInfo
        if stages is not None:
            progress, log = stages.callbacks()
        try:
            with engine_errors():
                stats = function(*args, progress=progress, cancel=cancel, log=log, **kwargs)
        except CancelledError:
            return None
        return stats
