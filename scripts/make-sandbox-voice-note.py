#!/usr/bin/env python3
"""Writes crates/hourglass-server/assets/sandbox-voice-note.ogg: a real Ogg Opus file
(RFC 7845), one second long, that the sandbox serves as a customer's voice note.

No Opus encoder is needed: every audio packet is a 20 ms CELT frame with the TOC byte
0xF8 and no payload, which decoders play as silence (RFC 6716 §3.2.1: a zero-length
frame). The container (pages, granule positions, CRCs) is complete, so players and
browsers accept it.
"""
import struct
import sys
from pathlib import Path


def crc32_ogg(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def page(header_type: int, granule: int, serial: int, sequence: int, packets: list[bytes]) -> bytes:
    lacing = []
    for packet in packets:
        size = len(packet)
        while size >= 255:
            lacing.append(255)
            size -= 255
        lacing.append(size)
    header = struct.pack(
        "<4sBBqIIIB", b"OggS", 0, header_type, granule, serial, sequence, 0, len(lacing)
    ) + bytes(lacing)
    body = b"".join(packets)
    crc = crc32_ogg(header + body)
    return header[:22] + struct.pack("<I", crc) + header[26:] + body


def main() -> None:
    serial = 0x686F7572  # "hour"
    pre_skip = 312
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, 48000, 0, 0)
    vendor = b"hourglass sandbox"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    frames = 50  # 50 x 20 ms = 1 s
    packets = [b"\xf8"] * frames
    granule = pre_skip + frames * 960
    out = page(0x02, 0, serial, 0, [head])
    out += page(0x00, 0, serial, 1, [tags])
    out += page(0x04, granule, serial, 2, packets)
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/hourglass-server/assets/sandbox-voice-note.ogg")
    target.write_bytes(out)
    print(f"wrote {target} ({len(out)} bytes)")


if __name__ == "__main__":
    main()
