"""The operator station's web app (Starlette, server-sent events, jinja2) and `serve()`.

One page shows every bench of the line side by side. The operator logs in by badge scan (or
name), scans a serial per bench, sees the model the PLC's KIND names, confirms the profile's
operator steps, starts; the bench's card follows the run live over server-sent events and ends
in a large verdict, the failing requirements and why, the table's final safe state from the
record, and the certificate. Abort sends SIGINT to that run's `rig certify`.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..errors import ConfigError
from ..line import Line, Person
from .benches import BenchRuntime, Refused

HERE = Path(__file__).resolve().parent
#: How long a trace plot may take to appear after its CSV was announced (it is drawn next).
PLOT_WAIT_S = 5.0
#: How often a bench's stream looks at its run's events file (a file poll, not a timing).
STREAM_POLL_S = 0.25


class OperatorStation:
    """The benches of one station host and the people who may run them."""

    def __init__(
        self,
        line: Line,
        *,
        reports: Path,
        work: Path | None = None,
        requirements: Sequence[str] = (),
        certify_args: Sequence[str] = (),
    ) -> None:
        if not line.benches:
            raise ConfigError("no bench: give a line file with [[bench]], --station or --emulated")
        self.line = line
        self.reports = reports
        self._tmp = None if work is not None else tempfile.TemporaryDirectory(prefix="rig-op-")
        self.work = work if work is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.requirements = list(requirements)
        self.certify_args = list(certify_args)
        self.benches = {b.id: BenchRuntime(b, self.work, reports) for b in line.benches}

    def start(self) -> None:
        """Bring every bench up."""
        for b in self.benches.values():
            b.start()

    def stop(self) -> None:
        """Abort what runs (tables made safe), stop emulated benches."""
        for b in self.benches.values():
            b.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def person(self, scanned: str) -> Person:
        """Who logs in: an enrolled person by badge or name; on a line file with nobody
        enrolled (a demo bench), the name as typed, as an operator."""
        text = (scanned or "").strip()
        if not text:
            raise Refused("scan your badge or type your name", 400)
        if not self.line.people:
            return Person(name=text, badge="", role="operator")
        who = self.line.person(text)
        if who is None:
            raise Refused(f"{text!r} is not enrolled on {self.line.name}: ask QA to enrol you", 403)
        return who

    def bench(self, bench_id: str) -> BenchRuntime:
        """A bench by id (404 naming the known ones)."""
        try:
            return self.benches[bench_id]
        except KeyError:
            known = ", ".join(self.benches)
            text = f"no bench {bench_id!r} on this station (benches: {known})"
            raise Refused(text, 404) from None

    def run_by_id(self, run_id: str) -> Any:
        """A bench's current run by id (404 otherwise)."""
        for b in self.benches.values():
            if b.run is not None and b.run.id == run_id:
                return b.run
        raise Refused(f"no run {run_id!r} on this station", 404)


def create_app(station: OperatorStation, *, manage: bool = True) -> Starlette:
    """The app; with `manage`, its lifespan starts and stops the station's benches."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    async def _json(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise Refused("the request body is not JSON", 400) from None
        if not isinstance(data, dict):
            raise Refused("the request body is not a JSON object", 400)
        return data

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "station.html",
            {
                "line": station.line,
                "benches": [b.state() for b in station.benches.values()],
                "enrolled": bool(station.line.people),
                "requirements": station.requirements,
            },
        )

    async def login(request: Request) -> Response:
        data = await _json(request)
        who = station.person(str(data.get("scan", "")))
        return JSONResponse({"name": who.name, "role": who.role})

    async def benches(request: Request) -> Response:
        states = await run_in_threadpool(lambda: [b.state() for b in station.benches.values()])
        return JSONResponse(states)

    async def identify(request: Request) -> Response:
        bench = station.bench(request.path_params["bench"])
        data = await _json(request)
        serial = str(data.get("serial", "")).strip()
        return JSONResponse(await run_in_threadpool(bench.identify, serial))

    async def start(request: Request) -> Response:
        bench = station.bench(request.path_params["bench"])
        data = await _json(request)
        who = station.person(str(data.get("operator", "")))
        confirmed = [str(c) for c in data.get("confirmed", []) or []]
        run = await run_in_threadpool(
            lambda: bench.start_run(
                serial=str(data.get("serial", "")).strip(),
                operator=who.name,
                confirmed=confirmed,
                requirements=station.requirements,
                extra=station.certify_args,
            )
        )
        return JSONResponse({"run": run.id, "bench": bench.id}, status_code=201)

    async def abort(request: Request) -> Response:
        bench = station.bench(request.path_params["bench"])
        data = await _json(request)
        # making a table safe is never refused for want of a login: anyone at the bench may
        scanned = str(data.get("operator", "")).strip()
        by = station.line.person(scanned) if scanned else None
        name = by.name if by is not None else (scanned or "someone not logged in")
        run = bench.run
        if run is None or not run.running:
            raise Refused(f"nothing is running on bench {bench.id}", 409)
        run.abort(name)
        return JSONResponse({"run": run.id, "aborting": True})

    async def stream(request: Request) -> Response:
        from sse_starlette.sse import EventSourceResponse

        bench = station.bench(request.path_params["bench"])

        async def states() -> AsyncIterator[dict[str, str]]:
            last = ""
            while True:
                text = json.dumps(await run_in_threadpool(bench.state), default=str)
                if text != last:
                    last = text
                    yield {"event": "state", "data": text}
                await asyncio.sleep(STREAM_POLL_S)

        return EventSourceResponse(states(), ping=10)

    async def run_file(request: Request) -> Response:
        run = station.run_by_id(request.path_params["run"])
        rel = request.path_params["path"]
        deadline = time.monotonic() + (PLOT_WAIT_S if rel.endswith(".png") else 0.0)
        while True:
            path = run.file(rel)
            if path is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)  # the plot is drawn right after the CSV is announced
        if path is None:
            raise Refused(f"no file {rel!r} in run {run.id}", 404)
        return FileResponse(path)

    async def certificate(request: Request) -> Response:
        run = station.run_by_id(request.path_params["run"])
        return RedirectResponse(f"/run/{run.id}/file/certificate.html", status_code=303)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return JSONResponse({"error": exc.text}, status_code=exc.status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage:
            await run_in_threadpool(station.start)
        try:
            yield
        finally:
            if manage:
                await run_in_threadpool(station.stop)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/login", login, methods=["POST"]),
            Route("/api/benches", benches),
            Route("/api/bench/{bench}/identify", identify, methods=["POST"]),
            Route("/api/bench/{bench}/start", start, methods=["POST"]),
            Route("/api/bench/{bench}/abort", abort, methods=["POST"]),
            Route("/api/bench/{bench}/stream", stream),
            Route("/run/{run}/certificate", certificate),
            Route("/run/{run}/file/{path:path}", run_file),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={Refused: refused},
        lifespan=lifespan,
    )


def serve(station: OperatorStation, host: str, port: int) -> int:
    """Serve the station until Ctrl-C or SIGTERM (uvicorn); the benches stop with it."""
    import uvicorn

    app = create_app(station)
    # open pages keep their event streams open: do not wait for them to close on Ctrl-C
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    print(f"operator station {station.line.name}: http://{host}:{port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once it has shut down
        pass
    finally:
        station.stop()  # done by the lifespan already; again in case it never ran (idempotent)
    return 0
