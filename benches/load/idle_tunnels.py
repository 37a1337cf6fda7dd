#!/usr/bin/env python3
"""Hold many idle CONNECT tunnels open through an HTTP proxy (benches/load.sh).

Each tunnel: TCP to the proxy, `CONNECT HOST:PORT`, `200`, then a full TLS handshake
with the origin through it (a proxy may wait for the ClientHello before it relays, and
an idle HTTPS keep-alive connection is what a browser leaves behind), then nothing.
At most --parallel tunnels are being set up at once.

When all are set up it prints `READY ok=N errors=E setup_s=S first_error=...` on
stdout and holds them until SIGTERM or SIGINT (or --hold seconds), then checks that
every tunnel is still open (a read that would block), closes them all and prints
`DONE still_open=K closed_early=C`.
"""
import argparse
import asyncio
import signal
import ssl
import sys
import time


async def one(args, ctx, sem, conns, errs):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(args.proxy_host, args.proxy_port), args.timeout)
            conns.append((reader, writer))
            writer.write(f"CONNECT {args.host}:{args.port} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), args.timeout)
            if b" 200" not in head.split(b"\r\n", 1)[0]:
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            await asyncio.wait_for(writer.start_tls(ctx, server_hostname=args.host), args.timeout)
        except Exception as e:  # noqa: BLE001 - counted and reported
            errs.append(f"{type(e).__name__}: {e}")


async def main_async(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca in args.cafile:
        ctx.load_verify_locations(cafile=ca)
    sem = asyncio.Semaphore(args.parallel)
    conns, errs = [], []
    t0 = time.monotonic()
    await asyncio.gather(*(one(args, ctx, sem, conns, errs) for _ in range(args.count)))
    ok = len(conns) - len(errs)
    first = errs[0] if errs else ""
    print(f"READY ok={ok} errors={len(errs)} setup_s={time.monotonic() - t0:.1f} first_error={first!r}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.hold)
    except asyncio.TimeoutError:
        pass

    still, early = 0, 0
    for reader, writer in conns:
        if reader.at_eof() or writer.is_closing():
            early += 1
        else:
            still += 1
    for _, writer in conns:
        writer.close()
    print(f"DONE still_open={still} closed_early={early}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", required=True, help="HOST:PORT")
    ap.add_argument("--host", required=True, help="CONNECT and TLS name")
    ap.add_argument("--port", type=int, required=True, help="origin HTTPS port")
    ap.add_argument("--cafile", action="append", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--hold", type=float, default=600.0)
    args = ap.parse_args()
    args.proxy_host, _, p = args.proxy.rpartition(":")
    args.proxy_port = int(p)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
