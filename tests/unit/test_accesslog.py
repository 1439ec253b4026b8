"""The access log: both formats, escaping (a client must not forge lines), the per-second memo,
and batched writes. The log is fed exactly what the protocol hands it; the lines are read back
from a StringIO, or (several writers, whole lines per write) from a file or a socket."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import pytest

from evserver.accesslog import ATOMIC_WRITE_BYTES, MAX_PENDING_LINES, AccessLog, LineWriter
from evserver.http.events import Request
from evserver.http.parser import RequestParser

NOON = time.mktime((2026, 11, 21, 12, 0, 0, 0, 0, -1)) + 0.25
"""A local time, so the stamp is predictable whatever the machine's time zone."""


def parsed(head: bytes) -> Request:
    parser = RequestParser()
    parser.feed(head)
    request = parser.next_event()
    assert isinstance(request, Request)
    return request


def stamp(when: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(when))


def written(log: AccessLog, stream: io.StringIO) -> list[str]:
    log.flush()
    return stream.getvalue().splitlines()


GET = parsed(b"GET /a.txt?x=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\n"
             b"User-Agent: curl/8\r\n\r\n")


def test_common_format_line() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    log("192.0.2.1", NOON, GET, 200, 1234)
    log("192.0.2.1", NOON, GET, 304, 0)  # no body: "-" as Apache and nginx write it
    assert written(log, stream) == [
        f'192.0.2.1 - - [{stamp(NOON)}] "GET /a.txt?x=1 HTTP/1.1" 200 1234',
        f'192.0.2.1 - - [{stamp(NOON)}] "GET /a.txt?x=1 HTTP/1.1" 304 -',
    ]


def test_combined_format_adds_referer_and_user_agent() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, "combined")
    log("::1", NOON, GET, 200, 5)
    log("::1", NOON, parsed(b"HEAD / HTTP/1.0\r\n\r\n"), 200, 0)
    assert written(log, stream) == [
        f'::1 - - [{stamp(NOON)}] "GET /a.txt?x=1 HTTP/1.1" 200 5 "http://r/" "curl/8"',
        f'::1 - - [{stamp(NOON)}] "HEAD / HTTP/1.0" 200 - "-" "-"',
    ]


@pytest.mark.parametrize("log_format", ["common", "combined"])
def test_an_unparsed_request_is_logged_as_a_dash(log_format: str) -> None:
    stream = io.StringIO()
    log = AccessLog(stream, log_format)
    log("192.0.2.9", NOON, None, 400, 150)
    tail = ' "-" "-"' if log_format == "combined" else ""
    assert written(log, stream) == [f'192.0.2.9 - - [{stamp(NOON)}] "-" 400 150{tail}']


def test_quotes_backslashes_controls_and_non_ascii_are_escaped() -> None:
    # Whatever a request holds (the parser already refuses most of it), the log must not let it
    # end a quoted field, start a new line or reach a terminal raw.
    headers = {"host": "h", "user-agent": 'x" "forged\t\xff'}
    request = Request("GET", '/a"b\\c\x7f\xe9\r\n', "1.1", headers, list(headers.items()),
                      keep_alive=True)
    stream = io.StringIO()
    log = AccessLog(stream, "combined")
    log("192.0.2.1", NOON, request, 404, 0)
    (line,) = written(log, stream)
    assert line.endswith(r'"GET /a\x22b\x5Cc\x7F\xE9\x0D\x0A HTTP/1.1" 404 - "-" '
                         r'"x\x22 \x22forged\x09\xFF"')


def test_the_same_line_in_one_second_is_memoised_and_the_next_second_is_not() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    for offset in (0.0, 0.5, 0.7):
        log("192.0.2.1", NOON + offset, GET, 200, 7)
    log("192.0.2.1", NOON + 1.0, GET, 200, 7)
    log("192.0.2.2", NOON + 1.1, GET, 200, 7)  # another client: another line
    log("192.0.2.2", NOON + 1.2, GET, 206, 3)  # another status and size
    lines = written(log, stream)
    assert lines[:3] == [f'192.0.2.1 - - [{stamp(NOON)}] "GET /a.txt?x=1 HTTP/1.1" 200 7'] * 3
    later = stamp(NOON + 1.0)
    assert later != stamp(NOON)
    assert lines[3:] == [f'192.0.2.1 - - [{later}] "GET /a.txt?x=1 HTTP/1.1" 200 7',
                         f'192.0.2.2 - - [{later}] "GET /a.txt?x=1 HTTP/1.1" 200 7',
                         f'192.0.2.2 - - [{later}] "GET /a.txt?x=1 HTTP/1.1" 206 3']


def test_combined_lines_differing_only_in_user_agent_are_not_confused() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, "combined")
    for agent in (b"one", b"two", b"one"):
        log("192.0.2.1", NOON, parsed(b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: " + agent
                                      + b"\r\n\r\n"), 200, 1)
    assert [line.rsplit(" ", 1)[1] for line in written(log, stream)] == ['"one"', '"two"',
                                                                         '"one"']


def test_lines_wait_for_flush_and_a_pile_up_is_written_at_once() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    log("192.0.2.1", NOON, GET, 200, 1)
    assert stream.getvalue() == "" and log.pending == 1  # batched: nothing written yet
    for _ in range(MAX_PENDING_LINES - 1):
        log("192.0.2.1", NOON, GET, 200, 1)
    assert log.pending == 0  # the bound on memory wrote them without waiting for flush()
    assert stream.getvalue().count("\n") == MAX_PENDING_LINES


def test_a_broken_stream_does_not_stop_the_caller() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    stream.close()
    log("192.0.2.1", NOON, GET, 200, 1)
    log.flush()  # ValueError from the closed stream is swallowed: the server goes on
    assert log.pending == 0


# -- several processes, one log: whole lines per write ---------------------------------------


def test_a_file_gets_each_flush_in_one_append(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    first = AccessLog.open(str(path))
    second = AccessLog.open(str(path))  # another worker: its own descriptor, O_APPEND too
    assert first is not None and second is not None
    for log, peer in ((first, "192.0.2.1"), (second, "192.0.2.2"), (first, "192.0.2.3")):
        log(peer, NOON, GET, 200, 1)
        log.flush()  # each appends at the end, whatever the other wrote meanwhile
    first.close()
    second.close()
    assert [line.split()[0] for line in path.read_text().splitlines()] == [
        "192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_a_pipe_or_socket_gets_whole_lines_at_most_pipe_buf_bytes_a_write() -> None:
    # A SOCK_SEQPACKET pair keeps each write as one record, so the reader sees the writes.
    reader, writer_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with reader, writer_end:
        writer = LineWriter(writer_end.fileno())
        assert writer.piece_limit == ATOMIC_WRITE_BYTES
        lines = [f"line {n} " + "x" * (n % 90) + "\n" for n in range(300)]
        long_line = "y" * (ATOMIC_WRITE_BYTES + 10) + "\n"
        text = "".join(lines[:150]) + long_line + "".join(lines[150:])
        writer.write(text)
        writer_end.shutdown(socket.SHUT_WR)
        records = []
        while record := reader.recv(2 * ATOMIC_WRITE_BYTES):
            records.append(record)
    assert b"".join(records).decode() == text
    assert all(record.endswith(b"\n") for record in records)
    assert long_line.encode() in records  # too long to be kept whole: written alone
    assert all(len(record) <= ATOMIC_WRITE_BYTES for record in records
               if record != long_line.encode())
    assert len(records) < 10  # filled up, not a write per line


def test_a_file_gets_one_write_whatever_its_size(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as file:
        assert LineWriter(file.fileno()).piece_limit is None
