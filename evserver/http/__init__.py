"""The HTTP/1.1 wire format (RFC 9110, RFC 9112): bytes in, events out; heads out as bytes.

What this package knows: bytes and the HTTP/1.1 message syntax. What it must not know: sockets,
selectors, threads, files, the clock. It never calls ``recv``, never writes, never logs; a date
is handed in by the caller. That is what makes it testable byte by byte ("sans-I/O").

Its modules, lowest first:

- requests in: ``grammar`` (the ABNF as character classes and patterns), ``checks`` (the cold
  checks of the request line and the framing fields), ``parser`` (the states and their readers),
  handing out ``events``, raising ``errors``, bounded by ``limits``;
- responses out: ``status`` (the one table of reason phrases), ``response`` (status line, field
  lines, chunks), ``errorpage`` (the HTML of an error), ``dates`` (HTTP-date).
"""
