"""nanoml: from a trained model to a measured deployment on the Arduino Nano 33 BLE Sense."""

__version__ = "0.1.0"
