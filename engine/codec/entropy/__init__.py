"""The entropy model and coders: the refinement layer's coefficient coder (refine: per-subband prediction from the base
or a reference band, the tile's stream; its walk and contexts in contexts, its table bank and quantizer in tables,
the encoder's rate-distortion lowering under SSIM weights from ssim_weights in rd_lowering), the signs' laws and the
second phase's prediction fitted per tile (sign_contexts, phase_prediction), the byte-level tables, varints and law
pairs (codes), the invalid-pixel mask (mask_coding). Imports the transform, never the file format or the passes."""
