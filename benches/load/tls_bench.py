#!/usr/bin/env python3
"""TLS client for benches/load.sh: handshakes per second and keep-alive requests per second,
either direct to an HTTPS origin or through an HTTP proxy's CONNECT tunnel.

The same client code runs both ways, so the ratio proxy/direct is what counts; Python
itself is part of the cost (it shares the cores with the proxy and the origin).

  handshake mode: each operation opens a TCP connection (to the proxy, then CONNECT
    HOST:PORT; or straight to the origin), does a full TLS handshake (no session
    resumption) with SNI HOST, sends `GET PATH` with `Connection: close`, reads the whole
    response and closes. --hosts-file gives the names to use: each name once, in order
    (cold leaf cache), until the list or --duration runs out; --host repeats one name
    (warm cache).
  keepalive mode: one TLS connection, `GET PATH` again and again on it (HTTP/1.1
    keep-alive) for --duration seconds.

Prints one JSON object on stdout: ok, errors, elapsed_s, rate (ok/elapsed_s), p50_ms,
p99_ms, first_error.
"""
import argparse
import json
import socket
import ssl
import sys
import threading
import time


def parse_hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def recv_head(sock):
    """Read an HTTP head (up to the blank line) byte-exactly from a plain socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("connection closed before the end of the proxy reply")
        buf += chunk
        if len(buf) > 16384:
            raise ConnectionError("proxy reply head too long")
    return buf


def open_tls(args, ctx, host):
    """TCP (+ CONNECT through the proxy) + TLS handshake; returns the TLS socket."""
    tport = args.port
    if args.proxy:
        sock = socket.create_connection(parse_hostport(args.proxy), timeout=args.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"CONNECT {host}:{tport} HTTP/1.1\r\nHost: {host}:{tport}\r\n\r\n".encode())
        head = recv_head(sock)
        status = head.split(b"\r\n", 1)[0]
        if b" 200" not in status:
            sock.close()
            raise ConnectionError(f"CONNECT refused: {status.decode(errors='replace')}")
    else:
        sock = socket.create_connection((args.connect_ip, tport), timeout=args.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except Exception:
        sock.close()
        raise


def read_response(f):
    """Read one HTTP/1.1 response with Content-Length from file object f; returns status."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before the status line")
    status = int(line.split()[1])
    length = None
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if length is None:
        raise ConnectionError("response without Content-Length")
    body = f.read(length)
    if len(body) != length:
        raise ConnectionError("short body")
    return status


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = []
        self.ok = 0
        self.errors = 0
        self.first_error = None

    def good(self, dt):
        with self.lock:
            self.ok += 1
            self.lat.append(dt)

    def bad(self, e):
        with self.lock:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(e).__name__}: {e}"


def handshake_worker(args, ctx, names, stats, deadline):
    while time.monotonic() < deadline:
        host = next(names, None)
        if host is None:
            return
        t0 = time.monotonic()
        try:
            tls = open_tls(args, ctx, host)
            try:
                tls.sendall(f"GET {args.path} HTTP/1.1\r\nHost: {host}:{args.port}\r\nConnection: close\r\n\r\n".encode())
                with tls.makefile("rb") as f:
                    st = read_response(f)
                if st != 200:
                    raise ConnectionError(f"status {st}")
            finally:
                tls.close()
            stats.good(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            stats.bad(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["handshake", "keepalive"], required=True)
    ap.add_argument("--proxy", help="HOST:PORT of the proxy; direct when absent")
    ap.add_argument("--connect-ip", default="127.0.0.1", help="address of the origin when direct")
    ap.add_argument("--port", type=int, required=True, help="origin HTTPS port")
    ap.add_argument("--host", help="the one TLS name to use (warm)")
    ap.add_argument("--hosts-file", help="names to use once each, in order (cold)")
    ap.add_argument("--path", default="/1k")
    ap.add_argument("--cafile", action="append", required=True, help="trusted CA (repeatable)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
    for ca in args.cafile:
        ctx.load_verify_locations(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    stats = Stats()

    t0 = time.monotonic()
    deadline = t0 + args.duration
    if args.mode == "handshake":
        if args.hosts_file:
            with open(args.hosts_file) as fh:
                hosts = [h.strip() for h in fh if h.strip()]
            it = iter(hosts)
        elif args.host:
            def forever(h):
                while True:
                    yield h
            it = forever(args.host)
        else:
            ap.error("--host or --hosts-file")
        lock = threading.Lock()

        class Shared:  # thread-safe next() over the name iterator
            def __next__(self):
                with lock:
                    return next(it)

            def __iter__(self):
                return self

        names = Shared()
        threads = [threading.Thread(target=handshake_worker, args=(args, ctx, names, stats, deadline))
                   for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        host = args.host or ap.error("--host")
        try:
            tls = open_tls(args, ctx, host)
            req = f"GET {args.path} HTTP/1.1\r\nHost: {host}:{args.port}\r\n\r\n".encode()
            f = tls.makefile("rb")
            t0 = time.monotonic()
            deadline = t0 + args.duration
            while time.monotonic() < deadline:
                r0 = time.monotonic()
                try:
                    tls.sendall(req)
                    st = read_response(f)
                    if st != 200:
                        raise ConnectionError(f"status {st}")
                    stats.good(time.monotonic() - r0)
                except Exception as e:  # noqa: BLE001
                    stats.bad(e)
                    break
            f.close()
            tls.close()
        except Exception as e:  # noqa: BLE001
            stats.bad(e)
    elapsed = time.monotonic() - t0
    lat = sorted(stats.lat)

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 3) if lat else None

    print(json.dumps({
        "mode": args.mode, "via": args.proxy or "direct", "ok": stats.ok, "errors": stats.errors,
        "elapsed_s": round(elapsed, 3), "rate": round(stats.ok / elapsed, 1) if elapsed > 0 else 0,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "first_error": stats.first_error,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
