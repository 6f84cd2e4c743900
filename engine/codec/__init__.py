"""The codec's anatomy, one folder per part; imports point down this list, never up:

    passes/      encode / decode passes, survey, qualities, rate control, bands, windows
    radiometry   block means, bright targets, invalid pixels restored (what dB coding gets wrong)
    format/      the .sarz file: container, header, chunk bytes, layout
    entropy/     the refinement layer's coefficient coder (prediction, RDO, context ANS), tables, mask coding
    transform/   the CDF 9/7 wavelet

The public entry points (compress_file, decompress_file, ...) are in engine.api.
"""
