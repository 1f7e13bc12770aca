#!/usr/bin/env python3
"""A tiny TCP proxy that records each connection's bytes, both directions, to
<out>/<label>-<n>.c2s and .s2c. The label is read from <out>/LABEL at accept time."""
import asyncio, os, sys, itertools

listen_port, upstream_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
counter = itertools.count(1)

def label():
    try:
        return open(os.path.join(out, "LABEL")).read().strip() or "x"
    except OSError:
        return "x"

async def pump(reader, writer, sink):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            sink.write(data)
            sink.flush()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass

async def handle(creader, cwriter):
    name = f"{label()}-{next(counter):03d}"
    try:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        cwriter.close()
        return
    with open(os.path.join(out, name + ".c2s"), "wb") as c2s, open(os.path.join(out, name + ".s2c"), "wb") as s2c:
        await asyncio.gather(pump(creader, swriter, c2s), pump(sreader, cwriter, s2c))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
