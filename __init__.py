"""QGIS entry point. Kept import-light: QGIS must start even when the engine's dependencies are missing."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .sar_compressor_plugin import SARCompressorPlugin

    return SARCompressorPlugin(iface)
