"""PLC driver: named, typed register access over Modbus TCP, write guard and heartbeat."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

from rig.errors import (
    DeviceError,
    ModbusExceptionError,
    PlcNotResponding,
    RigError,
    WriteRefused,
    modbus_exception,
)
from rig.profiles import Profile, Register
from rig.wait import WaitTimeout, wait_until

__all__ = ["MAX_READ", "MAX_WRITE", "Heartbeat", "Plc", "UnguardedWrite", "call_bound"]

MAX_READ = 125  # registers per FC03/FC04 request (Modbus application protocol)
MAX_WRITE = 123  # registers per FC16 request

FC_READ = {"holding": 3, "input": 4}
FC_WRITE_ONE = 6
FC_WRITE_MANY = 16

Number = int | float


class _NoDelayClient(ModbusTcpClient):
    """A ModbusTcpClient that sets TCP_NODELAY on every socket it opens.

    In pymodbus 3.16 the sync TCP client keeps a plain `socket.socket` in `self.socket`,
    created by `connect()`; `execute()` also reconnects through `connect()`, so this override
    sees every socket the client will ever use. Without NODELAY a write followed by a write
    waits ~40 ms on Nagle plus delayed ACK (CONVENTIONS, "Modbus discipline").
    """

    def connect(self) -> bool:
        fresh = self.socket is None
        ok = bool(super().connect())
        if ok and fresh and self.socket is not None:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ok


ATTEMPTS = 2  # tries of one request on a dead link: the first, then one on a fresh connection


def call_bound(timeout: float, attempts: int = ATTEMPTS) -> float:
    """Longest wall time one request can take before it raises, with pymodbus 3.16's timing.

    Per attempt: the connect (`socket.create_connection`, bounded by `timeout`) and the reply
    (pymodbus checks its `timeout` deadline only between receives, each also bounded by
    `timeout`, so a reply started just before the deadline can take up to 2 x `timeout`);
    pymodbus's own `retries` is 0, so `attempts` is the only retry count.
    """
    return attempts * 3 * timeout


class _Link:
    """One Modbus TCP connection, used by one thread: every response checked, typed errors.

    A request that gets no answer closes the socket (so a late answer can never be taken for
    the next request's) and is tried once more on a fresh connection; a request that changes
    state when acted on (`resend=False`, COMMAND) is only tried again if it was certainly not
    sent, because a START that was acted on and then answered 06 on the resend would read as
    "START refused" while the table runs. Every call returns or raises within
    `call_bound(timeout)` of getting the link, and waits at most as long again for another
    thread's call on the same link to end.
    """

    def __init__(self, host: str, port: int, unit: int, timeout: float) -> None:
        self.host, self.port, self.unit, self.timeout = host, port, unit, timeout
        self.client = _NoDelayClient(host, port=port, timeout=timeout, retries=0)
        self.lock = threading.Lock()
        self.requests = 0

    @contextmanager
    def _held(self, what: str) -> Iterator[None]:
        # Bounded, so a call stuck on another thread cannot hold this one for ever either.
        if not self.lock.acquire(timeout=call_bound(self.timeout) + 1.0):
            raise PlcNotResponding(
                f"PLC at {self.host}:{self.port}: link busy for over "
                f"{call_bound(self.timeout) + 1.0:g} s, {what} not sent"
            )
        try:
            yield
        finally:
            self.lock.release()

    def connect(self) -> None:
        with self._held("connect"):
            if not self.client.connect():
                raise PlcNotResponding(
                    f"PLC at {self.host}:{self.port} refuses or ignores the connection"
                )

    def close(self) -> None:
        with self._held("close"):
            self.client.close()

    def execute(
        self,
        fc: int,
        address: int,
        payload: int | list[int],
        request: str,
        *,
        resend: bool = True,
        attempts: int = ATTEMPTS,
    ) -> list[int]:
        """Send one request; return the registers read (reads) or [] (writes)."""
        with self._held(request):
            for attempt in range(1, attempts + 1):
                sent = False
                try:
                    if not self.client.connect():
                        raise ConnectionException("connection refused or timed out")
                    sent = True
                    self.requests += 1
                    response = self._send(fc, address, payload)
                except (ConnectionException, ModbusIOException, OSError) as exc:
                    self.client.close()
                    if attempt < attempts and (resend or not sent):
                        continue
                    raise PlcNotResponding(
                        f"PLC at {self.host}:{self.port} (unit {self.unit}) did not answer "
                        f"{request} (after {attempt} attempt(s)): {exc}"
                    ) from None
                return self._check(response, fc, payload, request)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, fc: int, address: int, payload: int | list[int]) -> Any:
        c, unit = self.client, self.unit
        if fc == 3:
            return c.read_holding_registers(address, count=int(payload), device_id=unit)  # type: ignore[arg-type]
        if fc == 4:
            return c.read_input_registers(address, count=int(payload), device_id=unit)  # type: ignore[arg-type]
        if fc == FC_WRITE_ONE:
            assert isinstance(payload, list) and len(payload) == 1
            return c.write_register(address, payload[0], device_id=unit)
        assert isinstance(payload, list)
        return c.write_registers(address, payload, device_id=unit)

    def _check(self, response: Any, fc: int, payload: int | list[int], request: str) -> list[int]:
        if response is None:
            raise PlcNotResponding(f"PLC at {self.host}:{self.port}: no response to {request}")
        if isinstance(response, ExceptionResponse) or response.isError():
            raise modbus_exception(int(getattr(response, "exception_code", 4)), request)
        if fc in (3, 4):
            registers = list(response.registers)
            if len(registers) != payload:
                raise DeviceError(
                    f"PLC answered {request} with {len(registers)} registers, not {payload}"
                )
            return registers
        return []


@dataclass(frozen=True, slots=True)
class _Block:
    """Registers one request covers: [start, end) in one space."""

    space: str
    start: int
    end: int
    registers: tuple[Register, ...]

    @property
    def count(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class UnguardedWrite:
    """A write the guard would have refused, sent on purpose inside `Plc.unguarded`."""

    register: str
    words: tuple[int, ...]  # as sent
    value: Number | str  # engineering value (or enum name) of the words
    problem: str  # what the guard would have said
    reason: str  # the escape's reason, e.g. "SAF-03 out-of-range probe"


class _ClockEstimate:
    """Device seconds per wall second from UPTIME_MS samples; refined as samples come in.

    The baseline is the first sample since the device last booted, so the estimate gets better
    the longer the driver runs; a reboot (UPTIME_MS going back, or `restart()` after a power-on)
    starts a new baseline but keeps the last rate, which a power cycle does not change. Each
    sample's wall time is the midpoint of its request, which halves the latency error.
    """

    def __init__(self, min_baseline: float) -> None:
        self.min_baseline = min_baseline
        self.rate: float | None = None
        self._base: tuple[float, int] | None = None
        self._last: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def add(self, wall: float, uptime_ms: int) -> None:
        with self._lock:
            if self._base is None or (self._last is not None and uptime_ms < self._last[1]):
                self._base = (wall, uptime_ms)
            self._last = (wall, uptime_ms)
            span = wall - self._base[0]
            if span >= self.min_baseline:
                self.rate = (uptime_ms - self._base[1]) / 1000.0 / span

    def restart(self) -> None:
        with self._lock:
            self._base = self._last = None


class Plc:
    """A table PLC by register name, as its profile describes it. No I/O in the constructor.

    One instance is used from one thread; the heartbeat has its own thread and connection.

    `timeout` (wall seconds) bounds the connect and the answer to one Modbus request. What it
    waits for is one round trip plus one PLC scan: milliseconds on a bench LAN or loopback, at
    any time scale (the emulator answers in wall time). The default 1 s leaves a wide margin
    for a loaded host while a dead link is still known within `call_bound_s` (6 s at the
    default: 2 attempts x (connect + 2 x timeout), see `call_bound`); every register read and
    write raises PlcNotResponding (or a typed Modbus exception) within that.
    """

    def __init__(
        self,
        profile: Profile,
        host: str,
        port: int = 502,
        *,
        unit: int = 1,
        timeout: float = 1.0,
    ) -> None:
        self.profile = profile
        self.host, self.port, self.unit, self.timeout = host, port, unit, timeout
        self._link = _Link(host, port, unit, timeout)
        self._addresses: dict[str, frozenset[int]] = {
            space: frozenset(
                a
                for r in profile.registers.values()
                if r.space == space
                for a in range(r.address, r.end)
            )
            for space in FC_READ
        }
        self._clock = _ClockEstimate(min_baseline=0.2)
        self.heartbeat = Heartbeat(self)
        #: Writes the guard would have refused, sent inside `unguarded` (for the run record).
        self.unguarded_writes: list[UnguardedWrite] = []
        self._escape: str | None = None

    # -- connection ----------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the main connection (PlcNotResponding if the PLC cannot be reached)."""
        self._link.connect()

    def close(self) -> None:
        """Stop the heartbeat and close the connection."""
        self.heartbeat.stop()
        self._link.close()

    def __enter__(self) -> Plc:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def call_bound_s(self) -> float:
        """The longest any single register read or write can take before it raises (wall s)."""
        return call_bound(self.timeout)

    @property
    def requests(self) -> int:
        """Requests sent on the main connection so far (a diagnostic)."""
        return self._link.requests

    def wait_responding(
        self, timeout: float, *, request_timeout: float = 0.25, interval: float | None = None
    ) -> str:
        """Poll until the PLC answers (after a power-on); return its STATE name.

        Each probe uses a fresh connection and a short timeout: a request sent while the PLC
        is off would otherwise wait out the whole normal timeout, and a socket from before the
        power cycle may be dead. The main connection is reopened afterwards for the same reason.
        `timeout` is what the caller waits for (the ICD's "answers again within 5 s" of device
        time, converted to wall time by the caller); it returns or raises within `timeout` plus
        one probe, `call_bound(request_timeout, 1)`.
        """
        state = self.profile.register("STATE")

        def probe() -> str:
            link = _Link(self.host, self.port, self.unit, min(request_timeout, self.timeout))
            try:
                words = link.execute(
                    FC_READ[state.space],
                    state.address,
                    state.count,
                    self._request_text(FC_READ[state.space], state),
                    attempts=1,
                )
            finally:
                link.close()
            return state.enum_name(int(state.from_raw(words)))

        try:
            # An exception response while booting is an answer, but not yet a usable one.
            name = wait_until(
                probe,
                timeout,
                interval=min(0.05, request_timeout) if interval is None else interval,
                what="the PLC to answer",
                ignore=(PlcNotResponding, ModbusExceptionError),
            )
        except WaitTimeout as exc:
            if isinstance(exc.last, ModbusExceptionError):
                raise exc.last from None
            raise PlcNotResponding(
                f"PLC at {self.host}:{self.port} did not answer within {timeout:g} s (wall); "
                f"last: {exc.last}"
            ) from None
        self._link.close()
        self._clock.restart()
        return name

    # -- reading -------------------------------------------------------------------------------
    def read(self, name: str) -> Number:
        """Engineering value of one register (float when scaled, else int)."""
        reg = self.profile.register(name)
        return reg.from_raw(self._read_register(reg))

    def read_raw(self, name: str) -> int:
        """Raw integer of one register (signed for s16, both words joined for u32)."""
        reg = self.profile.register(name)
        return reg.raw_from_words(self._read_register(reg))

    def read_many(self, names: Iterable[str]) -> dict[str, Number]:
        """Engineering values of several registers, in as few requests as the map allows.

        A request only ever spans addresses the profile lists: a real PLC answers a request
        touching any other address with exception 02.
        """
        regs = list({n: self.profile.register(n) for n in names}.values())
        values: dict[str, Number] = {}
        for block in self._plan_reads(regs):
            fc = FC_READ[block.space]
            words = self._link.execute(fc, block.start, block.count, self._block_text(fc, block))
            for reg in block.registers:
                offset = reg.address - block.start
                values[reg.name] = reg.from_raw(words[offset : offset + reg.count])
        return {r.name: values[r.name] for r in regs}

    def _read_register(self, reg: Register) -> list[int]:
        fc = FC_READ[reg.space]
        return self._link.execute(fc, reg.address, reg.count, self._request_text(fc, reg))

    def _plan_reads(self, regs: Sequence[Register]) -> list[_Block]:
        blocks: list[_Block] = []
        for space in FC_READ:
            known = self._addresses[space]
            current: list[Register] = []
            for reg in sorted((r for r in regs if r.space == space), key=lambda r: r.address):
                if current:
                    start, end = current[0].address, current[-1].end
                    gap_known = all(a in known for a in range(end, reg.address))
                    if reg.address >= end and gap_known and reg.end - start <= MAX_READ:
                        current.append(reg)
                        continue
                    blocks.append(_Block(space, start, end, tuple(current)))
                current = [reg]
            if current:
                blocks.append(_Block(space, current[0].address, current[-1].end, tuple(current)))
        return blocks

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def unguarded(self, reason: str) -> Iterator[list[UnguardedWrite]]:
        """The one escape from the write guard: inside, a write the guard would refuse is sent.

        Every write, on every path (`write`, `write_raw`, `write_many`), is checked against the
        profile's ranges and rules unless it is inside this block. Each write sent here that
        the guard would have refused is appended to `unguarded_writes` (register, words,
        value, what the guard said, `reason`), so the run record can show it; the block yields
        that list. Only the value guard is lifted: a read-only register, or a value its type
        cannot carry, is refused here too. Use it for deliberate out-of-range probes of the
        table's own range checks, e.g. ``with plc.unguarded("SAF-03 out-of-range probe"):``.
        """
        if not reason.strip():
            raise ValueError("an unguarded write needs a reason the record can show")
        previous, self._escape = self._escape, reason.strip()
        try:
            yield self.unguarded_writes
        finally:
            self._escape = previous

    def write(self, name: str, value: Number | str) -> None:
        """Write an engineering value (or an enum name).

        Refused (WriteRefused, before any request) for a register the profile does not mark
        writable, and, outside `unguarded`, for a value outside the profile's range or rules.
        """
        reg = self._writable(name)
        try:
            words = reg.to_raw(value)
        except ValueError as exc:
            raise WriteRefused(f"write {name} = {value!r} refused: {exc}") from None
        self._check({name: value}, words={name: words})
        self._send_block([(reg, words)], {name: value})

    def write_raw(self, name: str, raw: int | Sequence[int]) -> None:
        """Write a raw integer (signed for s16) or the register words themselves.

        Guarded as `write` is: an out-of-range raw value goes only inside `unguarded`.
        """
        reg = self._writable(name)
        try:
            words = reg.words(raw) if isinstance(raw, int) else list(raw)
            value = reg.from_raw(words)
        except ValueError as exc:
            raise WriteRefused(f"write {name} raw {raw!r} refused: {exc}") from None
        self._check({name: value}, words={name: words})
        self._send_block([(reg, words)], {name: value})

    def write_many(self, values: Mapping[str, Number | str]) -> None:
        """Write several registers: one FC16 per run of adjacent registers, in address order.

        Every register and value is checked before the first request is sent.
        """
        items: list[tuple[Register, list[int]]] = []
        for name, value in values.items():
            reg = self._writable(name)
            try:
                items.append((reg, reg.to_raw(value)))
            except ValueError as exc:
                raise WriteRefused(f"write {name} = {value!r} refused: {exc}") from None
        items.sort(key=lambda item: item[0].address)
        runs: list[list[tuple[Register, list[int]]]] = []
        for reg, words in items:
            last = runs[-1] if runs else None
            if (
                last is not None
                and last[-1][0].end == reg.address
                and reg.end - last[0][0].address <= MAX_WRITE
            ):
                last.append((reg, words))
            else:
                runs.append([(reg, words)])
        self._check(
            values,
            runs=[[r.name for r, _ in run] for run in runs],
            words={r.name: w for r, w in items},
        )
        for run in runs:
            self._send_block(run, {r.name: values[r.name] for r, _ in run})

    def command(self, name: str) -> None:
        """Write COMMAND by name (START, STOP, RESET, ESTOP)."""
        reg = self.profile.register("COMMAND")
        try:
            reg.enum_value(name)
        except ValueError as exc:
            raise WriteRefused(f"command {name!r} refused: {exc}") from None
        self.write("COMMAND", name)

    def _writable(self, name: str) -> Register:
        reg = self.profile.register(name)
        if not reg.writable:
            raise WriteRefused(
                f"write to {name} refused: {self.profile.model.name} marks it read-only "
                f"({reg.space} register {reg.address}, access {reg.access!r})"
            )
        return reg

    def _check(
        self,
        values: Mapping[str, Number | str],
        *,
        words: Mapping[str, Sequence[int]],
        runs: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Refuse values outside a register's range or breaking a rule, before any write.

        The rules are checked against the PLC's present values of the other registers they
        involve, applying `runs` (the requests about to be sent) in order, since the PLC
        judges each request against what it holds at that moment. Inside `unguarded` what
        would be refused is recorded instead (an out-of-range value is not also judged
        against the rules: one reason is enough, and the probe needs no extra read).
        """
        numeric: dict[str, Number] = {}
        out_of_range: dict[str, str] = {}
        for name, value in values.items():
            reg = self.profile.register(name)
            problem = reg.range_problem(value)
            if problem:
                if self._escape is None:
                    raise WriteRefused(
                        f"write {name} = {value!r} refused: {problem} "
                        f"(range {reg.range_text()}; only `with plc.unguarded(reason):` "
                        "sends it anyway)"
                    )
                out_of_range[name] = problem
            numeric[name] = reg.value_of(reg.raw_int(value))
        if out_of_range:
            for name, problem in out_of_range.items():
                self._escaped(name, words[name], values[name], problem)
            return
        involved: set[str] = set()
        for rule in self.profile.rules:
            if any(n in numeric for n in rule.involves):
                involved.update(rule.involves)
        if not involved:
            return
        state: dict[str, Number] = dict(self.read_many(sorted(involved)))
        for run in runs if runs is not None else [list(numeric)]:
            state.update({n: numeric[n] for n in run})
            problems = self.profile.rule_problems(state, changed=run)
            if problems:
                if self._escape is None:
                    shown = ", ".join(f"{n} = {values[n]!r}" for n in run)
                    raise WriteRefused(f"write {shown} refused: {'; '.join(problems)}")
                for n in run:
                    self._escaped(n, words[n], values[n], "; ".join(problems))

    def _escaped(self, name: str, words: Sequence[int], value: Number | str, problem: str) -> None:
        assert self._escape is not None
        self.unguarded_writes.append(
            UnguardedWrite(name, tuple(words), value, problem, self._escape)
        )

    def _send_block(
        self, run: Sequence[tuple[Register, list[int]]], shown: Mapping[str, Any]
    ) -> None:
        first = run[0][0]
        words = [w for _, ws in run for w in ws]
        fc = FC_WRITE_ONE if len(words) == 1 else FC_WRITE_MANY
        if len(run) == 1:
            value = shown[first.name]
            text = f"{first.format(value)} (raw {words if len(words) > 1 else words[0]})"
            request = self._request_text(fc, first, text)
        else:
            last = run[-1][0]
            request = (
                f"FC{fc:02d} {first.name}@{first.address}..{last.name}@{last.address} = "
                f"{dict(shown)} (raw {words})"
            )
        # A command is acted on when written: never resent after it may have arrived.
        resend = all(reg.group != "command" for reg, _ in run)
        watchdog = next((v for r, v in shown.items() if r == "WATCHDOG_MS"), None)
        if watchdog is not None:
            self.heartbeat._before_watchdog_write(float(watchdog))
        try:
            self._link.execute(fc, first.address, words, request, resend=resend)
        finally:
            if watchdog is not None:
                self.heartbeat._after_watchdog_write()

    # -- named views ---------------------------------------------------------------------------
    def state(self) -> str:
        """STATE by name (e.g. "RUNNING")."""
        reg = self.profile.register("STATE")
        return reg.enum_name(self.read_raw("STATE"))

    def fault(self) -> str:
        """FAULT by name (e.g. "NONE", "COMM_LOSS")."""
        reg = self.profile.register("FAULT")
        return reg.enum_name(self.read_raw("FAULT"))

    def status(self) -> dict[str, bool]:
        """STATUS bits by name."""
        reg = self.profile.register("STATUS")
        return reg.bit_dict(self.read_raw("STATUS"))

    def snapshot(self) -> dict[str, Any]:
        """Every status and measurement register, decoded, in one request per space run.

        Enum registers come back as names, bit registers as a dict of bits, others as values.
        """
        regs = [r for r in self.profile.registers.values() if r.group in ("status", "measurement")]
        values = self.read_many(r.name for r in regs)
        out: dict[str, Any] = {}
        for reg in regs:
            value = values[reg.name]
            if reg.enum:
                out[reg.name] = reg.enum_name(int(value))
            elif reg.bits:
                out[reg.name] = reg.bit_dict(int(value))
            else:
                out[reg.name] = value
        return out

    # -- device clock --------------------------------------------------------------------------
    def uptime_ms(self) -> int:
        """The PLC's UPTIME_MS (device time); each read also refines the clock-rate estimate."""
        before = time.monotonic()
        value = int(self.read("UPTIME_MS"))
        self._clock.add((before + time.monotonic()) / 2, value)
        return value

    def clock_rate(self, *, baseline: float = 0.2) -> float:
        """Device seconds per wall second (the time scale), estimated from UPTIME_MS.

        The first call reads UPTIME_MS twice `baseline` wall seconds apart; later UPTIME_MS
        reads lengthen the baseline and refine the cached value.
        """
        if self._clock.rate is None:
            self._clock.min_baseline = baseline
            deadline = time.monotonic() + 10 * baseline + 5 * self.timeout
            self.uptime_ms()
            while self._clock.rate is None:
                if time.monotonic() > deadline:
                    raise DeviceError("could not estimate the PLC clock rate from UPTIME_MS")
                # Paces the second read; the estimate uses measured times, not this sleep.
                time.sleep(baseline / 4)
                self.uptime_ms()
            if self._clock.rate <= 0:
                rate = self._clock.rate
                self._clock.rate = None
                raise DeviceError(f"PLC UPTIME_MS does not advance (rate {rate})")
        return self._clock.rate

    def last_heartbeat(self, value: int | None = None) -> int:
        """Read UPTIME_MS, then write HEARTBEAT once; return that UPTIME_MS.

        The watchdog test's fault time is FAULT_UPTIME_MS against exactly this reading, both
        from the device clock. Without `value` the heartbeat is moved one on from what it reads.
        """
        if value is None:
            value = (self.read_raw("HEARTBEAT") + 1) & 0xFFFF
        before = self.uptime_ms()
        self.write("HEARTBEAT", value)
        return before

    # -- messages ------------------------------------------------------------------------------
    @staticmethod
    def _request_text(fc: int, reg: Register, value: str | None = None) -> str:
        text = f"FC{fc:02d} {reg.name}@{reg.address}"
        return text if value is None else f"{text} = {value}"

    @staticmethod
    def _block_text(fc: int, block: _Block) -> str:
        if len(block.registers) == 1:
            return Plc._request_text(fc, block.registers[0])
        first, last = block.registers[0], block.registers[-1]
        return (
            f"FC{fc:02d} {first.name}@{first.address}..{last.name}@{last.address} "
            f"({block.count} registers from {block.start})"
        )


class Heartbeat:
    """Writes HEARTBEAT with a changing value from its own thread over its own connection.

    The period is `period_fraction` x WATCHDOG_MS of device time, converted to wall time with
    the PLC's measured clock rate, so it holds at any time scale. A failed write is recorded
    and retried at the next period; `check()` raises it in the caller's thread.
    """

    def __init__(
        self, plc: Plc, *, period_fraction: float = 0.25, track_uptime: bool = True
    ) -> None:
        self.plc = plc
        self.period_fraction = period_fraction
        self.track_uptime = track_uptime
        self.writes = 0
        self.errors: list[Exception] = []  # the latest 100
        self.error_count = 0
        self.period: float | None = None
        self.watchdog_ms: float | None = None
        self.last: tuple[int | None, int] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._value = 0
        self._checked = 0
        self._rate = 1.0
        self._old_watchdog_ms: float | None = None
        self._new_watchdog_ms = 0.0

    @property
    def running(self) -> bool:
        """True while the heartbeat thread is alive and not stopping."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self, *, period_fraction: float | None = None) -> None:
        """Read WATCHDOG_MS and the clock rate, then start writing (no-op if running)."""
        if self.running:
            return
        if period_fraction is not None:
            self.period_fraction = period_fraction
        if not 0 < self.period_fraction < 1:
            raise ValueError(f"period_fraction must be in (0, 1), got {self.period_fraction}")
        self._rate = self.plc.clock_rate()
        self._set_watchdog(float(self.plc.read("WATCHDOG_MS")))
        self._value = self.plc.read_raw("HEARTBEAT")
        plc = self.plc
        self._link = _Link(plc.host, plc.port, plc.unit, plc.timeout)
        self._link.connect()
        self._stop.clear()
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name="plc-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[int | None, int] | None:
        """Stop and join the thread; return the last (UPTIME_MS read before it, value) written.

        The UPTIME_MS is None when `track_uptime` is off. Bounded: a beat in progress is two
        requests, each ending within `call_bound`; a thread still alive after that is left
        (it is a daemon and stops at its next check) with its link, and the fact recorded as
        a heartbeat error, rather than this call waiting on it for ever.
        """
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake.set()
            limit = 2 * call_bound(self.plc.timeout) + 1.0
            thread.join(limit)
            self._thread = None
            if thread.is_alive():
                self._record(PlcNotResponding(f"heartbeat thread did not stop within {limit:g} s"))
                self._link = None
        if self._link is not None:
            self._link.close()
            self._link = None
        return self.last

    def _record(self, exc: Exception) -> None:
        with self._lock:
            self.errors.append(exc)
            del self.errors[:-100]
            self.error_count += 1

    def check(self) -> None:
        """Raise the latest heartbeat error not raised before, if any."""
        with self._lock:
            if self.error_count > self._checked:
                self._checked = self.error_count
                raise self.errors[-1]

    # -- period --------------------------------------------------------------------------------
    def _set_watchdog(self, watchdog_ms: float) -> None:
        with self._lock:
            self.watchdog_ms = watchdog_ms
            self.period = watchdog_ms / 1000.0 * self.period_fraction / self._rate
        self._wake.set()

    def _before_watchdog_write(self, new_ms: float) -> None:
        # Shorten the period before a lower WATCHDOG_MS takes effect, not after.
        self._old_watchdog_ms, self._new_watchdog_ms = self.watchdog_ms, new_ms
        if self.watchdog_ms is not None and new_ms < self.watchdog_ms:
            self._set_watchdog(new_ms)

    def _after_watchdog_write(self) -> None:
        # Re-read rather than trust the write: it may have been refused (03/06).
        if self._thread is None:
            return
        try:
            self._set_watchdog(float(self.plc.read("WATCHDOG_MS")))
        except RigError:
            old = self._old_watchdog_ms
            self._set_watchdog(
                self._new_watchdog_ms if old is None else min(old, self._new_watchdog_ms)
            )

    # -- thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        link = self._link
        assert link is not None
        plc = self.plc
        uptime = plc.profile.register("UPTIME_MS")
        beat = plc.profile.register("HEARTBEAT")
        fc_up = FC_READ[uptime.space]
        up_text = Plc._request_text(fc_up, uptime)
        next_at = time.monotonic()
        while not self._stop.is_set():
            beat_at = time.monotonic()
            self._value = (self._value + 1) & 0xFFFF
            value = self._value
            try:
                before: int | None = None
                if self.track_uptime:
                    # Not fed to the clock estimate: its reboot detection needs one ordered
                    # sequence of samples, which only the main thread's reads give.
                    words = link.execute(fc_up, uptime.address, uptime.count, up_text)
                    before = int(uptime.from_raw(words))
                link.execute(
                    FC_WRITE_ONE,
                    beat.address,
                    beat.words(value),
                    Plc._request_text(FC_WRITE_ONE, beat, str(value)),
                )
                with self._lock:
                    self.writes += 1
                    self.last = (before, value)
            except Exception as exc:
                self._record(exc)
            with self._lock:
                period = self.period or 0.25
            # Scheduled from the previous deadline so the period does not drift with latency;
            # when late (host stall), beat now rather than catch up with a burst.
            next_at = max(next_at + period, time.monotonic())
            while not self._stop.is_set():
                remaining = next_at - time.monotonic()
                if remaining <= 0:
                    break
                if self._wake.wait(remaining):
                    # WATCHDOG_MS changed: a shorter period must apply to this wait already.
                    self._wake.clear()
                    with self._lock:
                        period = self.period or period
                    next_at = min(next_at, beat_at + period)
