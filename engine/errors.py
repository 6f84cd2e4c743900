"""Exception types of the engine: every user-facing failure is one of these, so callers can catch one family."""


class SARCompressorError(Exception):
    """Base class: a problem the user can act on (message names the problem)."""


class InputError(SARCompressorError):
    """The input raster cannot be compressed as asked (band count, dtype, all-nodata, ...)."""


class ContainerError(SARCompressorError):
    """A .sarz file is not readable: wrong magic, unknown version, truncated, corrupt (CRC)."""


class CancelledError(SARCompressorError):
    """The caller's cancel check returned True; no output was left behind."""


class NoValidPixels(InputError):
    """A band to measure has no pixel valid in both rasters (all nodata, non-finite or no-signal fill)."""


class UnreachableTarget(InputError):
    """A target bits per pixel below what the raster can be coded in (at the coarsest step)."""


class OutputError(InputError):
    """An output cannot be written where asked (it is an input, exists, is not a regular file, the disk is
    full, another run writes it); whatever was at the destination before is left as it was."""


class OutputBusyError(OutputError):
    """Another live run of this host holds the output's lock (a batch waits for it, then looks at what it wrote; a
    lock it cannot judge, another host's, is an OutputError: a batch waiting on it would wait for ever)."""


def refuse_sarz(path: object) -> None:
    """InputError where a raster is expected and `path` names a .sarz: GDAL's "not recognized as a supported file
    format" did not say what the file is, nor what to do."""
    if str(path).lower().endswith(".sarz"):
        raise InputError(
            f"{path} is a .sarz (compressed by this tool), not a raster: decompress it first, or read it through its "
            "VRT (sar-compressor vrt)"
        )
