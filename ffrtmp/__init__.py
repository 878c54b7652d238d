"""ffrtmp: a distributed FFmpeg/GStreamer job system over CURVE-encrypted ZeroMQ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from ffrtmp.client import Client


def __getattr__(name: str) -> Any:
    # The client pulls in zmq; keep `import ffrtmp` cheap for tools that only want the version.
    if name == "Client":
        from ffrtmp.client import Client

        return Client
    raise AttributeError(name)
