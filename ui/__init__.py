"""Dock panel: the QGIS user interface over the Processing algorithms (needs qgis.gui; nothing imports it)."""
