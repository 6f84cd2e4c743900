"""The encode and decode passes: the survey (pass 1) and the qualities, the shared per-tile pass (strip_window),
encoding (encode_pass), decoding (decode_pass, window_decode for windows and overviews), several bands and
inter-band prediction (band_set, interband), rate control. The top of the codec: imports any of it, nothing of
the codec imports it."""
