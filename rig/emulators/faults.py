"""Fault injection into an emulated bench and an observer of its table, both outside the rig.

The fault campaign (`benchmarks/fault_campaign.py`) drives these through a control socket on
127.0.0.1 that only the bench and the campaign know of (`rig emulate --control-out FILE`): the
rig under test talks to the bench exactly as before and cannot tell it is being faulted.

Protocol: one JSON object per line each way. Requests (`op`):

- `{"op": "now"}` -> `{"t": device seconds}`
- `{"op": "observe"}` -> the table as the emulator sees it (`observe()`), with `safe` and `why`
- `{"op": "inject", "fault": NAME, ...}` -> `{"ok": true, "t": ...}`; NAME is one of `FAULTS`:
  - `plc-silent`: the Modbus server accepts and reads requests but never answers;
  - `modbus-exception`: every read (03/04) answers exception 04 (server device failure);
  - `instrument-drop` / `-silent` / `-garbage` / `-delay` with `role` (a station role):
    the link is cut (current connections reset, new ones closed at once), reads but never
    answers, answers bytes that are no SCPI reply, or answers after `delay_s` wall seconds;
  - `power-loss`: mains off (the world's POWER relay, as the ACT POWER relay would cut it).
  Optional `duration_s` (device seconds): the fault clears itself after it (mains comes back).
- `{"op": "clear"}` -> every fault cleared.
- `{"op": "mark", "text": ...}` -> a line in the observer log (e.g. "SIGINT to the rig").
- `{"op": "truth", "since": t}` -> the ground truth of the stops since device time t
  (`truth()`): `events` (TableBase.truth: cause, t_edge, t_react, t_stopped) and `tracks`, the
  true noise-free signals as closed-form pieces from t on (`track_from_pieces` rebuilds them).
  For the timing-truth benchmark and tests; the rig never sees it.

The observer samples the table every few wall milliseconds and writes a JSON line per change
of what matters (state, fault, power, motion, safe) and one per device second, each with its
device time, flushed at once: the log survives the bench being killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .registers import WATCHDOG_MS, State
from .table import TableBase
from .track import Track

# `bench` below is a rig.emulators.bench.EmulatedBench; not imported: bench imports this module

FAULTS = (
    "plc-silent",
    "modbus-exception",
    "instrument-drop",
    "instrument-silent",
    "instrument-garbage",
    "instrument-delay",
    "power-loss",
)
LINK_MODES = ("drop", "silent", "garbage", "delay")

# What "safe" means per kind (issue 8): judged from the true physical quantities.
TRACTION_SAFE_N = 15.0
STILL_MM_S = 1.0  # a carriage slower than this is still (true speed, no reading noise)
LIFT_DOWN_MM = 0.5
UPRIGHT_DEG = 0.5
STILL_DEG_S = 0.1
_DIFF_S = 0.05  # device seconds over which a speed is taken from the true signal


@dataclass
class LinkFault:
    """The fault on one instrument's link; the SCPI server consults it on every line."""

    mode: str | None = None  # one of LINK_MODES, or None: healthy
    delay_s: float = 0.0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def drop(self) -> None:
        """Cut every open connection with a TCP RST (must run on the server's loop)."""
        for w in list(self.writers):
            transport = w.transport
            with contextlib.suppress(Exception):
                transport.abort()


@dataclass
class BenchFaults:
    """Every fault switch of one bench (all off: the bench behaves exactly as without them)."""

    plc_silent: bool = False
    modbus_exception: bool = False
    plc_requests: int = 0  # requests the PLC server received (the campaign sees the rig begin)
    links: dict[str, LinkFault] = field(default_factory=dict)

    def link(self, role: str) -> LinkFault:
        """The switch of one role's link (created healthy on first use)."""
        return self.links.setdefault(role, LinkFault())


def _running(table: TableBase) -> bool:
    powered = table._powered and table._booted
    return powered and table._state in (State.RUNNING, State.STOPPING)


def observe(table: TableBase, t: float) -> dict[str, Any]:
    """The table at device time `t` as the world knows it, with `safe` and the reasons why not.

    Call with `world.lock` held and the world advanced to `t`.
    """
    world = table.world
    if not table._powered:
        state = "UNPOWERED"
    elif not table._booted:
        state = "BOOTING"
    else:
        state = State(table._state).name
    snap: dict[str, Any] = {
        "t": round(t, 4),
        "model": table.MODEL,
        "state": state,
        "fault": int(table._fault),
        "powered": bool(table._powered),
        "watchdog_ms": table.setting(WATCHDOG_MS),
        "relays": dict(world.relays),
    }
    t0 = max(t - _DIFF_S, 0.0)
    span = max(t - t0, 1e-9)
    why: list[str] = []
    if _running(table):
        why.append(f"state {state}")

    def value_and_speed(signal: str) -> tuple[float, float]:
        a, b = world.signals[signal](np.array([t0, t], dtype=float))
        return float(b), float((b - a) / span)

    if table.MODEL == "TT-890":
        force, _ = value_and_speed("force")
        snap["force_n"] = round(force, 3)
        if force > TRACTION_SAFE_N:
            why.append(f"force {force:.1f} N > {TRACTION_SAFE_N:g} N")
    elif table.MODEL == "RT-600":
        pos, speed = value_and_speed("position")
        lift, _ = value_and_speed("lift")
        snap.update(position_mm=round(pos, 3), speed_mm_s=round(speed, 3), lift_mm=round(lift, 3))
        if abs(speed) > STILL_MM_S:
            why.append(f"carriage moving {speed:.1f} mm/s")
        if lift > LIFT_DOWN_MM:
            why.append(f"lift up {lift:.1f} mm")
    elif table.MODEL == "IT-90":
        angle, rate = value_and_speed("angle")
        brake = bool(table._brake_engaged(t))
        snap.update(angle_deg=round(angle, 3), rate_deg_s=round(rate, 3), brake=brake)
        if abs(rate) > STILL_DEG_S:
            why.append(f"rotating {rate:.2f} deg/s")
        elif abs(angle) > UPRIGHT_DEG and not brake:
            why.append(f"at {angle:.1f} deg, not upright and not brake-held")
    snap["moving"] = any(w.startswith(("carriage", "rotating")) for w in why) or _running(table)
    snap["safe"] = not why
    snap["why"] = why
    return snap


def truth(table: TableBase, since: float) -> dict[str, Any]:
    """The stops since device time `since` as the emulator knows them, JSON-ready: `events`
    (table.truth() entries with t_edge >= since) and `tracks` (each true signal's pieces
    [t0, t1, x0, v0, a] from `since` on; t1 None for the last, which runs for ever)."""
    with table.world.lock:
        table.world.advance()
        events = [e for e in table.truth() if float(e["t_edge"]) >= since]
        tracks = {
            name: [
                [p[0], None if math.isinf(p[1]) else p[1], p[2], p[3], p[4]]
                for p in track.pieces_from(since)
            ]
            for name, track in table.truth_tracks().items()
        }
    return {"events": events, "tracks": tracks}


def track_from_pieces(pieces: list[list[float | None]]) -> Track:
    """A Track that runs as `pieces` (from `truth()`) say: x(t) exact, for truth computations."""
    t0, _, x0, *_ = pieces[0]
    track = Track(float(t0), float(x0))  # type: ignore[arg-type]
    for t, _, x, v, acc in pieces:
        track.append(float(t), float(x), float(v), float(acc))  # type: ignore[arg-type]
    return track


class Observer:
    """A thread that logs the table's state over device time to a JSON-lines file."""

    def __init__(self, bench: Any, path: Path | str, period_s: float = 0.02) -> None:
        self.bench = bench
        self.path = Path(path)
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._write_lock = threading.Lock()  # the loop's Control and this thread both write

    def start(self) -> None:
        """Open the log and start sampling."""
        self._file = open(self.path, "a", buffering=1)
        self._thread = threading.Thread(target=self._run, name="bench-observer", daemon=True)
        self._thread.start()

    def snapshot(self) -> dict[str, Any]:
        """The table now."""
        table = self.bench.table
        assert table is not None
        with table.world.lock:
            t = table.world.advance()
            return observe(table, t)

    def _run(self) -> None:
        last_key: tuple[Any, ...] | None = None
        last_t = -1e9
        while not self._stop.wait(self.period_s):
            snap = self.snapshot()
            key = (snap["state"], snap["fault"], snap["powered"], snap["moving"], snap["safe"])
            if key != last_key or snap["t"] - last_t >= 1.0:
                self.write(snap)
                last_key, last_t = key, snap["t"]

    def write(self, entry: dict[str, Any]) -> None:
        """Append one line (flushed: the log survives a killed bench)."""
        with self._write_lock:
            if self._file is not None:
                self._file.write(json.dumps(entry, sort_keys=True) + "\n")
                self._file.flush()

    def stop(self) -> None:
        """Stop sampling; write a last line; close the log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._file is not None:
            with contextlib.suppress(Exception):
                self.write({**self.snapshot(), "last": True})
            with self._write_lock:
                self._file.close()
                self._file = None


class Control:
    """The control channel of one bench: inject and clear faults, observe the table."""

    def __init__(self, bench: Any, observer: Observer | None = None) -> None:
        self.bench = bench
        self.observer = observer
        self._clear_handles: list[asyncio.TimerHandle] = []

    def _log(self, entry: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer.write(entry)

    def now(self) -> float:
        """Device time now."""
        assert self.bench.world is not None
        return self.bench.world.advance()

    def observe(self) -> dict[str, Any]:
        """The table now (a fresh sample)."""
        table = self.bench.table
        assert table is not None
        with table.world.lock:
            snap = observe(table, table.world.advance())
        snap["plc_requests"] = self.bench.faults.plc_requests
        return snap

    def inject(self, req: dict[str, Any]) -> dict[str, Any]:
        """Apply one fault now (runs on the bench's loop)."""
        name = req.get("fault")
        faults = self.bench.faults
        if name not in FAULTS:
            return {"ok": False, "error": f"unknown fault {name!r}; known: {', '.join(FAULTS)}"}
        if name == "plc-silent":
            faults.plc_silent = True
        elif name == "modbus-exception":
            faults.modbus_exception = True
        elif name == "power-loss":
            assert self.bench.world is not None
            self.bench.world.set_relay("power", False)
        else:
            role = req.get("role")
            if role not in self.bench.instruments:
                roles = ", ".join(self.bench.instruments)
                return {"ok": False, "error": f"role {role!r} is not on this bench ({roles})"}
            link = faults.link(role)
            link.mode = name.removeprefix("instrument-")
            link.delay_s = float(req.get("delay_s", 0.0))
            if link.mode == "drop":
                link.drop()
        t = self.now()
        self._log({"t": round(t, 4), "inject": name, **{k: v for k, v in req.items() if k != "op"}})
        duration = req.get("duration_s")
        if duration is not None:
            wall = float(duration) / self.bench.scale
            loop = asyncio.get_running_loop()
            self._clear_handles.append(loop.call_later(wall, self._clear_one, name, req))
        return {"ok": True, "t": t}

    def _clear_one(self, name: str, req: dict[str, Any]) -> None:
        faults = self.bench.faults
        if name == "plc-silent":
            faults.plc_silent = False
        elif name == "modbus-exception":
            faults.modbus_exception = False
        elif name == "power-loss":
            assert self.bench.world is not None
            self.bench.world.set_relay("power", True)
        else:
            faults.link(req["role"]).mode = None
        self._log({"t": round(self.now(), 4), "cleared": name})

    def clear(self) -> dict[str, Any]:
        """Clear every fault (mains back on if the campaign cut it)."""
        for h in self._clear_handles:
            h.cancel()
        self._clear_handles.clear()
        faults = self.bench.faults
        faults.plc_silent = faults.modbus_exception = False
        for link in faults.links.values():
            link.mode = None
        assert self.bench.world is not None
        if not self.bench.world.relays["power"]:
            self.bench.world.set_relay("power", True)
        self._log({"t": round(self.now(), 4), "cleared": "all"})
        return {"ok": True}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one request."""
        op = req.get("op")
        if op == "now":
            return {"t": self.now()}
        if op == "observe":
            return self.observe()
        if op == "inject":
            return self.inject(req)
        if op == "clear":
            return self.clear()
        if op == "truth":
            table = self.bench.table
            assert table is not None
            return truth(table, float(req.get("since", 0.0)))
        if op == "mark":  # the campaign notes what it did outside the bench (a signal to the rig)
            t = self.now()
            self._log({"t": round(t, 4), "mark": str(req.get("text", ""))})
            return {"ok": True, "t": t}
        return {"ok": False, "error": f"unknown op {op!r}"}


async def serve_control(control: Control, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Serve the control channel on the running loop (loopback only); returns the server."""
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the control channel binds to loopback only, not {host!r}")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = control.handle(json.loads(line))
                except Exception as e:  # a bad request must not take the bench down
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, host, port)


class ControlClient:
    """The campaign's side of the control channel (blocking, one request at a time)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> None:
        import socket

        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._file = self._sock.makefile("rwb")

    def request(self, **req: Any) -> dict[str, Any]:
        """Send one request; return its reply (OSError/ValueError if the bench is gone)."""
        self._file.write((json.dumps(req) + "\n").encode())
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("the bench closed the control channel")
        return json.loads(line)

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()
