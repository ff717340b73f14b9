"""Catalog DB for tests and the all-in-one mode: the mongoeco MongoDB wire-protocol server.

Runs from its own Python 3.13 venv (mongoeco needs >= 3.13). Listens on 127.0.0.1 only.
Usage: server.py PORT [SQLITE_FILE]   (no file: memory engine, nothing kept)
"""

import asyncio
import sys

from mongoeco.engines import SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def main(port: int, db_file: str | None) -> None:
    engine = SQLiteEngine(db_file) if db_file else None
    async with AsyncMongoEcoProxyServer(host="127.0.0.1", port=port, engine=engine) as srv:
        print(srv.address.uri, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
