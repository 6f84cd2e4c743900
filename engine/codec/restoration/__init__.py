"""Reconstruction fitted by the encoder and applied by the decoder: the adaptive loop filter (loop_filter)."""
