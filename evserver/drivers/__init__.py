"""Drivers: how bytes move between one socket and its ``ServerProtocol``.

What this package knows: one connection's socket, its deadlines (idle, header, send) and its
close (plain, or lingering). What it must not know: HTTP (the protocol decides what to answer;
a driver only asks it ``receive``, ``resume``, ``paused``, ``should_close``, ``linger``,
``mid_request`` and ``timed_out``), accepting, and how many connections run at once (that is
``evserver.servers``)::

    evented.Connection   the socket is non-blocking; the reactor calls it back on readable or
                         writable and on its deadline; it never waits
    blocking.drive       the socket is blocking with kernel timeouts; it waits in recv and send
                         until the connection ends

The two run the same conversation, so a model comparison measures the concurrency and nothing
else; what they must agree on (read size, deadlines, lingering close) is defined once in
``policy``. TLS lives below the drivers, in ``evserver.net.tls``: a driver asks a transport (or a
TLS socket) for bytes and gives it items, whatever it does with them. What a driver does know:
that a TLS connection begins with a handshake (it runs it, under the first request's deadline),
and which class to use, chosen once per connection.
"""
