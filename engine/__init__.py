"""SAR Compressor engine: the SAR raster codec. Pure Python + numpy + rasterio + constriction: no QGIS, no torch
(no network is bundled: the codec's learned parts are fitted per tile while compressing, MODELS.md).

Nothing heavy is imported here, so the QGIS plugin can import the package while a dependency is missing.

Where things are (a reader finds each part of the codec by folder name):

    api.py           compress_file / decompress_file / compress_array / ...: the one entry point
    cli.py  batch.py  strip_tasks.py  zarr_codec.py  gdal_vrt.py  verify.py  inspect.py  input_checks.py
    simulate.py      front ends: the command line, Dask, numcodecs/Zarr, the GDAL VRT pixel function, checks
    codec/
      passes/        encode / decode passes: survey (pass 1), qualities, rate control, the shared per-tile pass,
                     several bands and inter-band prediction, window and overview decoding
      restoration/   the adaptive loop filter, fitted per tile by the encoder (Wiener filters against the original)
      radiometry.py  block means, bright targets, invalid pixels restored: what dB-domain coding gets wrong
      format/        the .sarz file: container (chunks, index, CRCs), JSON header, chunk bytes, layout
      entropy/       the refinement layer's coefficient coder (prediction, RDO, context-modelled ANS), frequency
                     tables and varints, the invalid-pixel mask
      transform/     the CDF 9/7 wavelet
    io/              raster reading and writing (rasterio), where outputs may be written, one writer per output
    errors.py  preprocessing.py  metrics.py  json_text.py
                     the foundation: exceptions, the coding domain and masks, quality figures, strict JSON

Imports point one way, down this list: front ends -> codec.passes -> codec.restoration, codec.radiometry ->
codec.format -> codec.entropy -> codec.transform (codec.restoration uses only codec.entropy and codec.transform);
codec.format and above may use io; everything may use the foundation, which imports only itself. No module imports
another that imports it back, and nothing here imports QGIS, the algorithms, the dock or training.
tests/test_architecture.py checks all of it on the source.
"""

from .errors import CancelledError, ContainerError, InputError, SARCompressorError

__all__ = ["CancelledError", "ContainerError", "InputError", "SARCompressorError"]
