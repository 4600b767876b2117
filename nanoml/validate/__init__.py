"""`nanoml validate`: the board's (or the virtual board's) outputs against TFLM's
host reference interpreter on the same inputs.

inputs.py reads the samples, result.py compares and decides, run.py talks to
the board. Nothing here prints.
"""
