#!/usr/bin/env python3
"""A one-peer tracker for the BitTorrent benchmark: every announce is answered with exactly one
compact peer (the seeder under test), so aria2c, which cannot be pointed at a peer directly,
downloads from that seeder alone.

  bt_tracker.py PORT_FILE   then write "HOST:PORT" of the seeder to measure into
                            PORT_FILE.peer before each download (re-read on every announce)
Prints nothing; writes its own listening port into PORT_FILE.
"""

import http.server
import socket
import struct
import sys

port_file = sys.argv[1]


class Tracker(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(port_file + ".peer") as f:
            host, port = f.read().strip().rsplit(":", 1)
        peers = socket.inet_aton(host) + struct.pack(">H", int(port))
        body = b"d8:intervali1800e5:peers6:" + peers + b"e"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Tracker)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
