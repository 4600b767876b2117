"""Serial side of nanoml: the protocol (protocol.py, frames.py, synthetic.py),
finding and opening the board's port (ports.py), decoding a port's stream
(stream.py), the monitor engine (monitor.py, log.py) and driving a board with
input frames (link.py). See docs/protocol.md and docs/monitor.md."""
