"""docs/protocol.md agrees with the one definition of the format
(nanoml/serial/protocol.py): the generated tables are current and every
example line parses with a correct checksum."""

from __future__ import annotations

import re
from pathlib import Path

from nanoml.serial import protocol as P

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def test_message_tables_match_the_code():
    text = DOC.read_text()
    assert P.DOC_BEGIN in text and P.DOC_END in text
    embedded = text.split(P.DOC_BEGIN, 1)[1].split(P.DOC_END, 1)[0]
    assert embedded.strip() == P.markdown_tables().strip(), (
        "docs/protocol.md is stale: regenerate the section with `python -m nanoml.serial.protocol`")


def test_every_message_type_is_documented():
    text = DOC.read_text()
    for mtype in P.MESSAGES:
        assert f"### `{mtype}`" in text


def test_example_lines_parse():
    lines = [x for x in re.findall(r"^~nm .*$", DOC.read_text(), flags=re.M) if "<" not in x]
    assert len(lines) >= 8
    for line in lines:
        m = P.parse_line(line.encode())
        assert isinstance(m, P.Message) and m.known, (line, m)
