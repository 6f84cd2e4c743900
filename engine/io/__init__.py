"""Raster I/O: streaming rasterio reads and atomic tiled GeoTIFF writes (raster_io), and where outputs may be
written (output_paths). Imports only the engine's foundation (errors, preprocessing, metrics), never the codec."""
