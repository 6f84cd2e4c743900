"""`python -m sar_compressor` and the `sar-compressor` script: the command-line tool.

OpenBLAS is held to one thread before numpy loads it (unless the environment says otherwise): the codec already
codes several tiles at once (codec/passes/strip_window.LOOKAHEAD), and the OpenBLAS threads of its small least-squares
fits spin on the cores those tiles need. 4096x4096 single-look, quality 5, 2 cores, 5 runs each, interleaved:
compression 4.26 s median instead of 4.44 s, system time 0.5-0.9 s instead of 1.2-1.5 s, the same bytes (the
determinism tests code under 1 and 2 BLAS threads)."""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .engine.cli import main  # noqa: E402 (numpy reads the variable when it loads)

if __name__ == "__main__":
    sys.exit(main())
