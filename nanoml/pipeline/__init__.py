"""Sensor pipelines: the description that travels with a model (spec), its storage
in the model's metadata, the host twins of the front ends, windows and decisions."""
