"""One piece of a plan in its own process: ``python -m edgevit.cluster.piece ARTIFACT``.

Loads the artifact with ``edgevit.runtime`` (no torch) and answers on stdout every array it
reads on stdin, in the framing of :func:`send` / :func:`receive`:

    array:  ``<dtype> <d0,d1,...>\\n`` then the raw bytes (C order)
    time:   ``time <name> <seconds>\\n``   (seconds spent computing; forwarded down a chain)
    stop:   ``stop\\n``                     (end of input; answered with this piece's time, then stop)

so that pipeline stages can be chained stdout-to-stdin like a shell pipe. With ``--each``
every answer is followed by its own time line (``time <name> <seconds>``): request and answer,
as :class:`edgevit.cluster.processes.ProcessTransport` speaks to a piece. Errors go to stderr
with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import BinaryIO

import numpy as np

STOP = b"stop\n"


def send(stream: BinaryIO, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    stream.write(f"{array.dtype.str} {','.join(map(str, array.shape))}\n".encode())
    stream.write(array.tobytes())
    stream.flush()


def receive(stream: BinaryIO) -> np.ndarray | bytes | None:
    """The next array, or a control line (``b"stop\\n"``, ``b"time ..."``), or None at end of stream."""
    header = stream.readline()
    if not header:
        return None
    if header == STOP or header.startswith(b"time "):
        return header
    dtype_text, shape_text = header.decode().split()
    dtype = np.dtype(dtype_text)
    shape = tuple(int(d) for d in shape_text.split(",")) if shape_text else ()
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = _read_exact(stream, size)
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError(f"stream ended {remaining} bytes short of an array")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def serve(artifact: str, name: str, backend: str, threads: int | None, inbox: BinaryIO, outbox: BinaryIO,
          each: bool = False) -> None:
    from edgevit.cluster.plans import run_session
    from edgevit.runtime import load

    busy = 0.0
    with load(artifact, backend=backend, threads=threads) as session:
        while (message := receive(inbox)) is not None:
            if isinstance(message, bytes):
                if message == STOP:
                    break
                outbox.write(message)  # a time line from upstream
                outbox.flush()
                continue
            start = time.perf_counter()
            output = run_session(session, message)
            seconds = time.perf_counter() - start
            busy += seconds
            send(outbox, output)
            if each:
                outbox.write(f"time {name} {seconds:.9f}\n".encode())
                outbox.flush()
    outbox.write(f"time {name} {busy:.9f}\n".encode() + STOP)
    outbox.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgevit.cluster.piece")
    parser.add_argument("artifact")
    parser.add_argument("--name", default="piece")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--each", action="store_true", help="follow every answer with its time line")
    args = parser.parse_args(argv)
    try:
        serve(args.artifact, args.name, args.backend, args.threads, sys.stdin.buffer, sys.stdout.buffer, args.each)
    except Exception as exc:  # noqa: BLE001 - the coordinator shows this line
        print(f"{args.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
