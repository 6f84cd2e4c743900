"""The .sarz file format: the container (chunks, index, CRCs: container), its JSON header (sarz_header, deflated
against header_dictionary), one chunk's bytes (strip_payload) and where everything sits (layout: tiles, gain
blocks). Imports the entropy coders, the transform and io, never the passes. docs/FORMAT.md is the reference."""
