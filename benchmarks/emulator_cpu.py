"""Print the emulated bench's CPU cost per device second at several time scales.

Usage: python benchmarks/emulator_cpu.py [SCALE ...] [--device-s 60] [--poll-s 0.1]

For each time scale K the bench runs in a child process (`rig emulate TT-890 --scale K`), and the
host drives one fixed workload in device time through the rig's own drivers: INTERMITTENT 300 N
at 100 N/s (HOLD_S 5, REST_S 5) with the heartbeat running, STATE/UPTIME_MS/FORCE polled every
`--poll-s` device seconds (paced by the PLC's UPTIME_MS), then a `--device-s` LC trace at 1 kHz
(BUS trigger right after START) fetched, then STOP. The child's CPU time (utime + stime from
/proc/<pid>/stat) is read before and after. The emulator plans motion in closed form between
events (rig/emulators/track.py, table.py), so its CPU per device second should not grow with K.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig.instruments.lc2000 import LC2000
from rig.plc import Plc
from rig.profiles import load_profile
from rig.station import load_station

MODEL = "TT-890"
LC_RATE_HZ = 1000.0
SETTINGS = {
    "RAMP_RATE": 100.0,
    "FORCE_SET": 300.0,
    "HOLD_S": 5,
    "REST_S": 5,
    "MODE": "INTERMITTENT",
}


class CountingLC2000(LC2000):
    """LC-2000 driver that counts its exchanges (each is one line sent, `<cmd>;:SYST:ERR?`)."""

    exchanges = 0

    def _exchange(self, command, *, query):
        self.exchanges += 1
        return super()._exchange(command, query=query)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_bench(scale, directory):
    """Start `rig emulate` in a child process; return (process, station) once it serves."""
    out = Path(directory) / f"bench-{scale:g}.toml"
    cmd = [
        sys.executable,
        "-m",
        "rig.cli",
        "emulate",
        MODEL,
        "--scale",
        str(scale),
        "--station-out",
        str(out),
        "--quiet",
    ]
    child = subprocess.Popen(cmd)
    deadline = time.monotonic() + 60.0
    while not out.exists():
        if child.poll() is not None:
            raise RuntimeError(f"emulator exited with {child.returncode} before serving")
        if time.monotonic() > deadline:
            child.terminate()
            raise RuntimeError("emulator wrote no station file within 60 s")
        time.sleep(0.05)  # paces the look for the file; nothing is timed by it
    return child, load_station(out)


def stop_bench(child):
    """SIGTERM the child (cmd_emulate shuts its servers down on it) and reap it."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def workload(plc, lc, device_s, poll_s):
    """The fixed device-time workload; returns (device s, polls, samples, heartbeat requests)."""
    rate = plc.clock_rate()
    plc.heartbeat.start()
    try:
        lc.configure(rate=LC_RATE_HZ, duration_s=device_s, source="BUS", data_format="REAL")
        lc.arm()
        u_start = plc.uptime_ms()
        plc.command("START")
        lc.trigger()
        polls = 0
        next_ms = u_start
        end_ms = u_start + device_s * 1000.0
        while True:
            now = plc.read_many(["STATE", "UPTIME_MS", "FORCE"])
            polls += 1
            plc.heartbeat.check()
            uptime = now["UPTIME_MS"]
            if uptime >= end_ms:
                break
            # the next slot on the device clock; a host that fell behind skips the missed ones
            next_ms += poll_s * 1000.0
            if next_ms <= uptime:
                next_ms = uptime + poll_s * 1000.0
            # the sleep only paces the polling; the slots themselves are PLC device time
            time.sleep(max(0.0, (min(next_ms, end_ms) - uptime) / 1000.0 / rate))
        lc.wait_done(timeout_s=device_s / rate * 3 + 10.0)
        trace = lc.fetch_trace()
        plc.command("STOP")
        u_end = plc.uptime_ms()
    finally:
        hb_requests = getattr(plc.heartbeat, "_link", None)
        hb_requests = hb_requests.requests if hb_requests is not None else 0
        plc.heartbeat.stop()
    return (u_end - u_start) / 1000.0, polls, len(trace.t), hb_requests


def run_scale(scale, device_s, poll_s, directory):
    """One row of the table for time scale `scale`."""
    child, station = start_bench(scale, directory)
    try:
        profile = load_profile(MODEL)
        plc = Plc(profile, station.plc_host, station.plc_port, timeout=2.0)
        lc = CountingLC2000(station.instrument("force_meter").resource, timeout_s=10.0)
        with plc, lc:
            plc.wait_responding(30.0)
            lc.check_identity()
            plc.write_many(SETTINGS)
            plc.clock_rate()  # estimated (0.2 s wall of UPTIME_MS reads) before the measured span
            lc_before, plc_before = lc.exchanges, plc.requests
            cpu0, wall0 = cpu_seconds(child.pid), time.monotonic()
            dev_s, polls, samples, hb_requests = workload(plc, lc, device_s, poll_s)
            wall = time.monotonic() - wall0
            cpu = cpu_seconds(child.pid) - cpu0
            requests = (plc.requests - plc_before) + hb_requests + (lc.exchanges - lc_before)
    finally:
        stop_bench(child)
    return {
        "scale": scale,
        "device_s": dev_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_dev_s": cpu / dev_s * 1000.0,
        "requests": requests,
        "polls": polls,
        "samples": samples,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scales", nargs="*", type=float, default=[5.0, 20.0, 80.0])
    ap.add_argument("--device-s", type=float, default=60.0, help="device seconds of workload")
    ap.add_argument("--poll-s", type=float, default=0.1, help="device seconds between polls")
    args = ap.parse_args()
    print(
        f"{MODEL} emulated bench, {args.device_s:g} device s: INTERMITTENT 300 N at 100 N/s, "
        f"heartbeat, polls every {args.poll_s:g} device s, {LC_RATE_HZ:g} Hz LC trace"
    )
    print(
        f"{'scale':>6} {'device s':>9} {'wall s':>8} {'emu CPU s':>10} {'CPU ms/dev s':>13} "
        f"{'requests':>9} {'polls':>6} {'samples':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="emu-cpu-") as directory:
        for scale in args.scales:
            r = run_scale(scale, args.device_s, args.poll_s, directory)
            print(
                f"{r['scale']:>6g} {r['device_s']:>9.2f} {r['wall_s']:>8.2f} {r['cpu_s']:>10.2f} "
                f"{r['cpu_ms_per_dev_s']:>13.1f} {r['requests']:>9d} {r['polls']:>6d} "
                f"{r['samples']:>8d}",
                flush=True,
            )
    print(
        "requests: Modbus requests (main + heartbeat connection) and SCPI exchanges the host "
        "made during the workload"
    )


if __name__ == "__main__":
    main()
