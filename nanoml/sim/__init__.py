"""The virtual board (`nanoml sim`): a model in TFLM's host interpreter behind
a pseudo-terminal, speaking the firmware's serial protocol. See docs/sim.md.

    from nanoml.sim import start_virtual_board
    board = start_virtual_board("model.tflite", input="serial", link=None)
    ...                      # open board.port like a serial port
    board.stop()
"""

from .board import VirtualBoard, default_link_path, start_virtual_board  # noqa: F401
from .model import SimModel  # noqa: F401
from .process import SimProcess  # noqa: F401
