"""Capture: labelled sensor data from the board (raw sample link, takes, manifest, exports)."""
