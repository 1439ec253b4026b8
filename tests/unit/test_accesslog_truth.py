"""The access log tells the truth: a full disk (one warning, lost lines counted, writing resumes),
log rotation (``reopen``), a file that cannot be opened, and the bytes a response really sent
when its connection ended early (the protocol's held lines)."""

from __future__ import annotations

import errno
import io
import logging
import os
from pathlib import Path

import pytest

from evserver.accesslog import AccessLog, CannotOpenLog
from evserver.bodies import FileRegion, Response
from evserver.http.events import Request
from evserver.protocol import ServerProtocol
from tests.unit.test_accesslog import GET, NOON


class FlakyStream(io.StringIO):
    """A stream whose writes fail with ENOSPC while ``full`` is set, like a full disk."""

    full = False

    def write(self, text: str, /) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


def test_a_full_disk_warns_once_counts_lost_lines_and_writing_resumes(
        caplog: pytest.LogCaptureFixture) -> None:
    stream = FlakyStream()
    log = AccessLog(stream)
    stream.full = True
    with caplog.at_level(logging.WARNING, logger="evserver.accesslog"):
        for _ in range(3):
            log("192.0.2.1", NOON, GET, 200, 1)
            log("192.0.2.2", NOON, GET, 200, 1)
            log.flush()  # never raises: the server goes on
        assert log.lines_lost == 6 and stream.getvalue() == ""
        assert len(caplog.records) == 1 and "No space left" in caplog.records[0].getMessage()
        stream.full = False
        log("192.0.2.3", NOON, GET, 200, 1)
        log.flush()
    assert stream.getvalue().startswith("192.0.2.3 ")
    assert len(caplog.records) == 2 and "6 line(s) lost" in caplog.records[1].getMessage()
    assert log.lines_lost == 6  # a total since the start, for the stats page


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_dev_full_loses_lines_without_stopping_the_caller() -> None:
    log = AccessLog.open("/dev/full")
    assert log is not None
    log("192.0.2.1", NOON, GET, 200, 1)
    log.flush()
    assert log.lines_lost == 1
    log.close()


def test_reopen_writes_on_to_a_new_file_after_a_rename(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog.open(str(path))
    assert log is not None
    log("192.0.2.1", NOON, GET, 200, 1)
    log.flush()
    path.rename(tmp_path / "access.log.1")  # logrotate's move
    log("192.0.2.2", NOON, GET, 200, 1)
    log.reopen()  # what the SIGUSR1 handler does: only a flag
    assert not path.exists()
    log.flush()  # the waiting line goes to the new file, opened by name
    log.close()
    assert (tmp_path / "access.log.1").read_text().split()[0] == "192.0.2.1"
    assert path.read_text().split()[0] == "192.0.2.2"


def test_a_log_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    with pytest.raises(CannotOpenLog) as caught:
        AccessLog.open(str(tmp_path))  # a folder
    assert str(caught.value) == f"cannot open the access log {str(tmp_path)!r}: Is a directory"


# -- the bytes a response really sent --------------------------------------------------------

FILE_SIZE = 100_000
SMALL = b"small body"


class Recorder:
    """An access logger that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, int]] = []

    def __call__(self, peer: str, timestamp: float, request: Request | None, status: int,
                 body_bytes: int) -> None:
        self.lines.append((request.target if request else "-", status, body_bytes))


def handler(request: Request) -> Response:
    if request.target == "/big":
        return Response(200, f"Content-Length: {FILE_SIZE}\r\n".encode(),
                        (FileRegion(-1, 0, FILE_SIZE, close_after=False),), FILE_SIZE)
    return Response(200, b"Content-Length: 10\r\n", (SMALL,), len(SMALL))


def wire_length(items: list[object]) -> int:
    return sum(item.count if isinstance(item, FileRegion) else len(item)  # type: ignore[arg-type]
               for item in items)


def conversation(*targets: str) -> tuple[ServerProtocol, Recorder, int]:
    recorder = Recorder()
    protocol = ServerProtocol(handler, access_log=recorder)
    items = protocol.receive(b"".join(f"GET {t} HTTP/1.1\r\nHost: h\r\n\r\n".encode()
                                      for t in targets))
    return protocol, recorder, wire_length(items)


def test_a_small_response_is_logged_at_once() -> None:
    protocol, recorder, _ = conversation("/small")
    assert recorder.lines == [("/small", 200, len(SMALL))] and protocol.held_lines is None


def test_a_long_response_is_logged_once_sent_whole() -> None:
    protocol, recorder, _ = conversation("/big")
    assert recorder.lines == []  # held until the driver says it has gone out
    protocol.output_sent()
    assert recorder.lines == [("/big", 200, FILE_SIZE)] and protocol.held_lines is None


@pytest.mark.parametrize("unsent", [1, 4096, FILE_SIZE - 1, FILE_SIZE])
def test_a_response_cut_short_logs_the_bytes_that_left(unsent: int) -> None:
    protocol, recorder, _ = conversation("/big")
    protocol.connection_lost(unsent)
    assert recorder.lines == [("/big", 200, FILE_SIZE - unsent)]


def test_responses_pipelined_behind_a_long_one_share_the_cut_in_order() -> None:
    protocol, recorder, _ = conversation("/big", "/small", "/small")
    assert recorder.lines == []
    small_wire = conversation("/small")[2]  # one small response's head and body
    protocol.connection_lost(small_wire + 3)  # the last one, and 3 bytes of the one before

    assert recorder.lines == [("/big", 200, FILE_SIZE), ("/small", 200, len(SMALL) - 3),
                              ("/small", 200, 0)]


def test_nothing_sent_at_all_logs_zero_bytes() -> None:
    protocol, recorder, total = conversation("/big", "/small")
    protocol.connection_lost(total)
    assert recorder.lines == [("/big", 200, 0), ("/small", 200, 0)]
