"""SAR Compressor engine: learned SAR raster codec. Pure Python + torch + numpy + rasterio, no QGIS.

Nothing heavy is imported here, so the QGIS plugin can import the package while torch is missing.
"""

from .errors import CancelledError, ContainerError, InputError, ModelError, SARCompressorError

__all__ = ["CancelledError", "ContainerError", "InputError", "ModelError", "SARCompressorError"]
