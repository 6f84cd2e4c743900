"""The entropy model and coders: the refinement layer's coefficient coder (refine: per-subband prediction from the
base or a reference band, RDO quantization under SSIM weights from ssim_weights, context-modelled ANS), the signs'
laws fitted per tile (sign_contexts), the byte-level tables and varints (codes), the invalid-pixel mask
(mask_coding). Imports the transform, never the file format or the passes."""
