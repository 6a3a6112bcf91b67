"""A minimal WebSocket client (RFC 6455) over TLS, enough to check the proxy: handshake, text and close frames.

The test environment has no WebSocket client package; the protocol's client side needed here is small.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import time
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    def __init__(self, sock: ssl.SSLSocket, buffered: bytes) -> None:
        self.sock = sock
        self.buffer = buffered
        self.close_code: int | None = None

    @classmethod
    def connect(
        cls, host: str, port: int, path: str, *, server_name: str, cafile: str, headers: dict[str, str]
    ) -> WebSocket:
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(["http/1.1"])
        sock = context.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=server_name)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {server_name}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"connection closed during the handshake: {data!r}")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        status, *header_lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in status + " ":
            raise ConnectionError(f"handshake refused: {status}")
        answer = dict(line.split(": ", 1) for line in header_lines)
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if {k.lower(): v for k, v in answer.items()}.get("sec-websocket-accept") != expected:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        return cls(sock, rest)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive_json(self, timeout: float) -> Any | None:
        """The next text message as JSON; None once the server closed (``close_code`` then says why)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return None
            # ping (0x9) / pong (0xA): nothing to do within a short test

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(bytes([0x88, 0x82]) + _masked_close())  # FIN + close, masked 2-byte payload
        self.sock.close()


def _masked_close(code: int = 1000) -> bytes:
    mask = os.urandom(4)
    payload = struct.pack("!H", code)
    return mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
