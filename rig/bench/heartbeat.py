"""Which time scale this host's heartbeat can hold: measured at startup, checked before a run."""

from __future__ import annotations

import functools
import socket
import threading
import time

from ..errors import ConfigError
from ..profiles import load_profile

__all__ = ["HOLD_FACTOR", "beat_cost_ms", "check_scale_holds", "max_holdable_scale"]

#: The heartbeat's period as a fraction of WATCHDOG_MS (rig.plc.Heartbeat's default).
PERIOD_FRACTION = 0.25
#: The worst beat must fit this many times into what the period leaves of WATCHDOG_MS: a brief
#: probe does not see the worst stall of a long run (benchmarks/heartbeat_jitter.py).
HOLD_FACTOR = 3.0
#: What a bare loopback echo does not see of a Modbus exchange: the client library and the
#: PLC's own reply (the emulated PLC's FC06 through pymodbus: median 0.34 ms, p90 0.63 ms on
#: this project's host; a real PLC's scan is of that order or longer), per exchange.
PLC_REPLY_MS = 0.5
#: Round trips per probe, and probes (the best is kept: one preempted probe refuses nothing).
ROUND_TRIPS = 20
PROBES = 5


def _probe_ms() -> float:
    """Second worst of ROUND_TRIPS Modbus-sized request/reply round trips over loopback TCP
    (NODELAY) to a server thread: a beat's exchange without the PLC's own time."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)

    server = threading.Thread(target=serve, name="beat-probe", daemon=True)
    server.start()
    times: list[float] = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = bytes(12)  # an FC06 write's ADU
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                c.sendall(request)
                got = 0
                while got < len(request):
                    got += len(c.recv(64))
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        listener.close()
        server.join(2.0)
    return _second_worst(times)


def _second_worst(times: list[float]) -> float:
    # One preemption in a probe is the host's load of that instant, not what a beat costs.
    return sorted(times)[-2]


def _late_wake_ms() -> float:
    """Second worst lateness of ROUND_TRIPS 1 ms sleeps: how late this host wakes a beat."""
    late = []
    for _ in range(ROUND_TRIPS):
        start = time.perf_counter()
        time.sleep(0.001)  # the wake-up's lateness is what is measured, not a device duration
        late.append((time.perf_counter() - start) * 1000.0 - 1.0)
    return _second_worst(late)


@functools.lru_cache(maxsize=1)
def beat_cost_ms() -> float:
    """Wall ms one heartbeat (an UPTIME_MS read and a HEARTBEAT write, after a wake-up) can
    take on this host: twice the (second) worst probed round trip and PLC_REPLY_MS, plus the
    (second) worst late wake-up, the best of PROBES probes; measured once per process (about
    0.15 s)."""
    return min(2.0 * (_probe_ms() + PLC_REPLY_MS) + _late_wake_ms() for _ in range(PROBES))


def max_holdable_scale(watchdog_ms: float, cost_ms: float | None = None) -> float:
    """The highest time scale at which a beat costing `cost_ms` (default: measured here) keeps
    HOLD_FACTOR x its cost inside what the period leaves of `watchdog_ms` of device time."""
    cost = beat_cost_ms() if cost_ms is None else cost_ms
    return (1.0 - PERIOD_FRACTION) * watchdog_ms / (HOLD_FACTOR * max(cost, 1e-3))


def strictest_watchdog_ms(model: str) -> float:
    """The smallest WATCHDOG_MS a run of `model` holds the heartbeat under: the profile's
    default and every requirement's setting."""
    try:
        profile = load_profile(model)
    except ConfigError:
        return 1000.0  # the ICD's default; the unknown model is reported where it is used
    values = [float(profile.register("WATCHDOG_MS").default)]
    values += [
        float(r.settings["WATCHDOG_MS"])
        for r in profile.requirements
        if "WATCHDOG_MS" in r.settings
    ]
    return min(values)


def check_scale_holds(scale: float, model: str, cost_ms: float | None = None) -> None:
    """ConfigError (one line, naming the highest scale that holds here) when the heartbeat of an
    emulated bench at `scale` cannot be held on this host."""
    watchdog = strictest_watchdog_ms(model)
    limit = max_holdable_scale(watchdog, cost_ms)
    if scale > limit:
        cost = beat_cost_ms() if cost_ms is None else cost_ms
        # one line, also in a 110-column console
        raise ConfigError(
            f"--scale {scale:g}: heartbeat cannot be held here (beat {cost:.2f} ms, watchdog "
            f"{watchdog / scale:.2f} ms wall); max scale here: {int(limit)}"
        )
