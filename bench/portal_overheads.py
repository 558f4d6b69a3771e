"""The portal's per-request overheads that issue 12 removed, each against what it replaced, in one
process and interleaved (ROUNDS rounds, alternating which goes first): CPU microseconds per call.

    .venv/bin/python bench/portal_overheads.py [--calls 2000] [--rounds 5] [--stack-workdir DIR]

1. the session lookup: SQLAlchemy Core on an AUTOCOMMIT Connection (the previous code) vs
   :func:`labeling.portal.db.one_row` on the pooled psycopg connection, against a real PostgreSQL
   (the local stack: ``--stack-workdir`` or a private one);
2. the hop to a thread: Starlette's ``run_in_threadpool`` (anyio; FastAPI's for sync routes) vs
   :func:`labeling.portal.deps.in_thread` (a plain executor), 20 concurrent callers, under uvloop;
3. the access-log line: uvicorn's access logger with its default configuration vs
   :class:`labeling.portal.accesslog.AccessLog` (queue on the loop, formatted and written by its
   thread), both to /dev/null; the AccessLog figure includes its writer thread's CPU.

CPU is this process's (all threads). The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import logging.config
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labeling.orthanc.local_stack import LocalStack  # noqa: E402
from labeling.portal.local import portal_env  # noqa: E402


def per_call_us(run: Callable[[int], None], calls: int) -> float:
    start = time.process_time()
    run(calls)
    return (time.process_time() - start) / calls * 1e6


def lookups(settings) -> dict[str, Callable[[int], None]]:
    from sqlalchemy import String, bindparam, literal_column, select

    from labeling.portal.db import make_engine, one_row

    engine = make_engine(settings, "postgres")
    core = engine.execution_options(isolation_level="AUTOCOMMIT")
    # One parameter, one row, built once, as the session lookup was (no portal tables in "postgres").
    statement = select(literal_column("1"), bindparam("sid", type_=String))

    def sqlalchemy(n: int) -> None:
        for _ in range(n):
            with core.connect() as conn:
                conn.execute(statement, {"sid": "x"}).first()

    def driver(n: int) -> None:
        for _ in range(n):
            one_row(engine, "SELECT 1, %(sid)s", {"sid": "x"})

    return {"SQLAlchemy Core Connection": sqlalchemy, "db.one_row": driver}


def hops() -> dict[str, Callable[[int], None]]:
    import uvloop
    from starlette.concurrency import run_in_threadpool

    from labeling.portal.deps import in_thread

    def work() -> int:
        return 1

    def runner(hop) -> Callable[[int], None]:
        def run(n: int) -> None:
            async def main() -> None:
                async def caller() -> None:
                    for _ in range(n // 20):
                        await hop(work)
                await asyncio.gather(*(caller() for _ in range(20)))
            uvloop.run(main())
        return run

    return {"run_in_threadpool (anyio)": runner(run_in_threadpool), "deps.in_thread": runner(in_thread)}


def access_logs() -> dict[str, Callable[[int], None]]:
    from uvicorn.config import LOGGING_CONFIG

    from labeling.portal.accesslog import AccessLog

    devnull = os.open(os.devnull, os.O_WRONLY)
    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = open(os.devnull, "w")  # noqa: SIM115 - for the process
    logging.config.dictConfig(config)
    access = logging.getLogger("uvicorn.access")
    scope = {"type": "http", "method": "POST", "path": "/api/assignments/123/answer", "root_path": "",
             "query_string": b"", "http_version": "1.1", "client": ("127.0.0.1", 50123)}

    def uvicorn_log(n: int) -> None:
        for _ in range(n):  # what uvicorn's httptools protocol calls per response
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50123", "POST", scope["path"], "1.1", 200)

    def ours(n: int) -> None:
        log = AccessLog(None, fd=devnull, flush_s=0.25)
        for _ in range(n):  # what AccessLog's send wrapper does per response
            log._queue.append((time.time(), scope, 200))
        log.close()

    return {"uvicorn access log": uvicorn_log, "accesslog.AccessLog": ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the order (default 5)")
    parser.add_argument("--stack-workdir", type=Path, help="use this running local stack")
    args = parser.parse_args(argv)

    own = args.stack_workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="portal-overheads-")) if own else args.stack_workdir
    stack = LocalStack(workdir)
    try:
        if own:
            print(f"starting a private local stack in {workdir} ...", flush=True)
            stack.up(timeout=120)
        os.environ.update(portal_env(workdir))
        from labeling.portal.settings import PortalSettings

        groups = {"session lookup": lookups(PortalSettings.from_env()), "thread hop": hops(),
                  "access-log line": access_logs()}
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{args.calls} calls x {args.rounds} rounds; CPU us per call, median [min-max]", flush=True)
        for group, variants in groups.items():
            for run in variants.values():
                run(min(200, args.calls))  # warm up: pool, threads, prepared statements
            results: dict[str, list[float]] = {name: [] for name in variants}
            for round_ in range(args.rounds):
                order = list(variants.items())
                for name, run in order if round_ % 2 == 0 else reversed(order):
                    results[name].append(per_call_us(run, args.calls))
            (old, old_us), (new, new_us) = results.items()
            cells = [f"{name} {statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]" for name, v in results.items()]
            print(f"{group:16s} {cells[0]:>40s} | {cells[1]:>32s} | ratio {statistics.median(new_us) / statistics.median(old_us):.2f}",
                  flush=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; machine shared with other users")
    finally:
        if own:
            stack.down(purge=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
