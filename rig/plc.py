"""PLC driver: named, typed register access over Modbus TCP, write guard and heartbeat."""

from __future__ import annotations

import itertools
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteSingleRegisterRequest,
)

from rig.errors import (
    DeviceError,
    ModbusExceptionError,
    PlcNotResponding,
    RigError,
    WriteRefused,
    modbus_exception,
)
from rig.profiles import Profile, Register
from rig.wait import WaitTimeout, progress, wait_until

__all__ = [
    "MAX_READ",
    "MAX_WRITE",
    "Beat",
    "Heartbeat",
    "HeartbeatLate",
    "HeartbeatStamp",
    "Plc",
    "UnguardedWrite",
    "UnitTrippedCommLoss",
    "call_bound",
]

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

    def __init__(
        self, host: str, port: int, unit: int, timeout: float, *, feeds: bool = False
    ) -> None:
        self.host, self.port, self.unit, self.timeout = host, port, unit, timeout
        # The run's main connection: each completed request is progress (rig.wait.progress).
        self.feeds = feeds
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
                if self.feeds:
                    progress()  # an answer, even an exception reply, is progress
                return self._check(response, fc, payload, request)
        raise AssertionError("unreachable")  # pragma: no cover

    def pipeline(
        self,
        requests: Sequence[tuple[int, int, int | list[int]]],
        what: str,
        *,
        rest_s: float | None = None,
    ) -> list[list[int]]:
        """Send several FC03/04/06 requests in one TCP segment, then take their answers.

        The PLC acts on them one after the other with no host round trip in between (Modbus
        TCP lets a client have several transactions outstanding; the ICD's PLC answers each,
        in order), so an UPTIME_MS read right before and right after a HEARTBEAT write brackets
        the instant the write landed by the PLC's own handling time, not by the host's
        latency times the time scale. One attempt: a lost answer closes the connection (no
        late answer can be taken for a later request's) and raises PlcNotResponding; the
        whole exchange ends within `call_bound(timeout, 1)`; with `rest_s`, the later answers
        must follow the first within `rest_s` (a probe need not wait out the timeout).
        """
        frames, tids = [], []
        answers: dict[int, ModbusPDU] = {}
        first_at = 0.0
        with self._held(what):
            try:
                if not self.client.connect() or self.client.socket is None:
                    raise ConnectionException("connection refused or timed out")
                for fc, address, payload in requests:
                    pdu = _request_pdu(fc, address, payload, self.unit)
                    pdu.transaction_id = self.client.transaction.getNextTID()
                    tids.append(pdu.transaction_id)
                    frames.append(self.client.framer.buildFrame(pdu))
                self.requests += len(frames)
                sock = self.client.socket
                deadline = time.monotonic() + call_bound(self.timeout, 1)
                sock.settimeout(self.timeout)
                sock.sendall(b"".join(frames))
                buffer = b""
                while len(answers) < len(tids):
                    if answers and rest_s is not None:
                        deadline = min(deadline, first_at + rest_s)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        bound = call_bound(self.timeout, 1)
                        raise ModbusIOException(f"no answer within {bound:g} s")
                    sock.settimeout(min(self.timeout, left))
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionException("connection closed by the PLC")
                    buffer += chunk
                    while buffer:
                        used, pdu = self.client.framer.handleFrame(buffer, self.unit, 0)
                        if pdu is None:
                            break
                        buffer = buffer[used:]
                        if pdu.transaction_id in tids:
                            if not answers:
                                first_at = time.monotonic()
                            answers[pdu.transaction_id] = pdu
            except (ConnectionException, ModbusIOException, OSError) as exc:
                self.client.close()
                error = PlcNotResponding(
                    f"PLC at {self.host}:{self.port} (unit {self.unit}) did not answer {what}: "
                    f"{exc}" + (f" ({len(answers)} of {len(tids)} answered)" if answers else "")
                )
                error.partial = bool(answers)
                raise error from None
            finally:
                if self.client.socket is not None:
                    self.client.socket.settimeout(self.timeout)
            if self.feeds:
                progress()
            return [
                self._check(answers[tid], fc, payload, what)
                for tid, (fc, _, payload) in zip(tids, requests, strict=True)
            ]

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


def _request_pdu(fc: int, address: int, payload: int | list[int], unit: int) -> ModbusPDU:
    """pymodbus's request PDU for one FC03/04 read (payload: count) or FC06 write (one word)."""
    if fc == 3:
        return ReadHoldingRegistersRequest(address=address, count=int(payload), dev_id=unit)  # type: ignore[arg-type]
    if fc == 4:
        return ReadInputRegistersRequest(address=address, count=int(payload), dev_id=unit)  # type: ignore[arg-type]
    if fc == FC_WRITE_ONE and isinstance(payload, list) and len(payload) == 1:
        return WriteSingleRegisterRequest(address=address, registers=payload, dev_id=unit)
    raise ValueError(f"not a pipelined request: FC{fc:02d} {payload!r}")


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
class HeartbeatStamp:
    """The UPTIME_MS read right before and right after one HEARTBEAT write (device ms)."""

    before: int
    after: int

    @property
    def bracket_ms(self) -> int:
        """Device ms in which the write landed: what the host round trip can still add."""
        return self.after - self.before


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
        self._link = _Link(host, port, unit, timeout, feeds=True)
        # The last heartbeat goes as one segment (see `last_heartbeat`) until the PLC shows it
        # answers only one transaction at a time.
        self.pipelining = True
        #: UPTIME_MS carried by the first answer `wait_responding` got (None before one).
        self.answered_uptime_ms: int | None = None
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
        """End the heartbeat and close the connection."""
        self.heartbeat.close()
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
        one probe, `call_bound(request_timeout, 1)`. `answered_uptime_ms` is then the UPTIME_MS
        the first answer carried: when the PLC answered, on its own clock (after a power-on,
        device ms since power came on), with no host round trip in it.
        """
        state, up = self.profile.register("STATE"), self.profile.register("UPTIME_MS")
        # STATE and UPTIME_MS in one read (input registers STATE..UPTIME_MS, all common ones):
        # the first answer says when the PLC answered, on its own clock (`answered_uptime_ms`)
        start, end = state.address, up.address + up.count
        fc = FC_READ[state.space]
        text = f"FC{fc:02d} STATE@{start}..UPTIME_MS@{up.address} ({end - start} registers)"
        self.answered_uptime_ms = None

        def probe() -> str:
            link = _Link(self.host, self.port, self.unit, min(request_timeout, self.timeout))
            try:
                words = link.execute(fc, start, end - start, text, attempts=1)
            finally:
                link.close()
            self.answered_uptime_ms = int(up.from_raw(words[up.address - start :]))
            return state.enum_name(int(state.from_raw(words[: state.count])))

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
            self._probe_pipelining()
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

    def _probe_pipelining(self) -> None:
        """Read UPTIME_MS twice in one segment (it also seeds the clock estimate): a PLC that
        answers only the first takes one transaction at a time, and `last_heartbeat` then sends
        its requests one after the other. Done once, before the heartbeat starts."""
        up = self.profile.register("UPTIME_MS")
        read_up = (FC_READ[up.space], up.address, up.count)
        sent = time.monotonic()
        try:
            _, second = self._link.pipeline(
                [read_up, read_up], "FC04 UPTIME_MS twice (one segment)", rest_s=0.25
            )
        except PlcNotResponding as exc:
            if not exc.partial:
                raise
            self.pipelining = False
            self.uptime_ms()
            return
        self._clock.add((sent + time.monotonic()) / 2, int(up.from_raw(second)))

    def last_heartbeat(self, value: int | None = None) -> HeartbeatStamp:
        """Write HEARTBEAT once, between two UPTIME_MS reads sent with it in one segment.

        `before` is the UPTIME_MS read just before the write: the watchdog test's fault time is
        FAULT_UPTIME_MS against exactly this reading (requirements.md), an upper bound as the
        write lands after it. `after`, read right after the write, bounds the landing from
        above, so `after - before` is what the host round trip can still add, in device ms;
        pipelined, it is the PLC's own handling of two requests, not the host's latency times
        the time scale. Without `value` the heartbeat is moved one on from what it reads.
        """
        if value is None:
            value = (self.read_raw("HEARTBEAT") + 1) & 0xFFFF
        up, beat = self.profile.register("UPTIME_MS"), self._writable("HEARTBEAT")
        words = beat.words(value)
        self._check({"HEARTBEAT": value}, words={"HEARTBEAT": words})
        read_up = (FC_READ[up.space], up.address, up.count)
        if self.pipelining:
            sent = time.monotonic()
            try:
                first, _, second = self._link.pipeline(
                    [read_up, (FC_WRITE_ONE, beat.address, words), read_up],
                    f"FC04 UPTIME_MS, FC06 HEARTBEAT = {value}, FC04 UPTIME_MS (one segment)",
                )
            except PlcNotResponding as exc:
                if not exc.partial:
                    raise
                # Answered only the first request of the segment: a stack that takes one
                # transaction at a time. From now on one request after the other (a wider
                # bracket, which the stamp shows); a new value, so the write is a change.
                self.pipelining = False
                value = (value + 1) & 0xFFFF
                words = beat.words(value)
            else:
                before, after = int(up.from_raw(first)), int(up.from_raw(second))
                self._clock.add((sent + time.monotonic()) / 2, after)
                return HeartbeatStamp(before, after)
        before = self.uptime_ms()
        self._send_block([(beat, words)], {"HEARTBEAT": value})
        return HeartbeatStamp(before, self.uptime_ms())

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


# -- heartbeat: a dead man's switch ---------------------------------------------------------------

#: Wall seconds of margin over the longest bounded PLC call in the default stall budget.
STALL_MARGIN_S = 2.0
#: Beats kept for the accounting (a ring): at scale 20 and WATCHDOG_MS 1000 about 50 s of beats.
RING = 4096
BACKENDS = ("process", "thread")


class HeartbeatLate(RigError):
    """The table faulted COMM_LOSS and the rig cannot show its heartbeat was on time: the rig's
    fault (its heartbeat late, withheld by the dead man's switch, or failing), never the unit's.

    `gap_ms` is the device time from the last heartbeat known to have landed to the fault (an
    upper bound), None when no beat is known; `max_gap_ms` the largest gap between beats.
    """

    def __init__(
        self, why: str, *, gap_ms: float | None, watchdog_ms: float | None, max_gap_ms: float | None
    ) -> None:
        self.gap_ms, self.watchdog_ms, self.max_gap_ms = gap_ms, watchdog_ms, max_gap_ms
        super().__init__(why)


class UnitTrippedCommLoss(DeviceError):
    """The table faulted COMM_LOSS although the rig's heartbeat was provably on time: the unit's
    watchdog tripped falsely. A judged outcome: the plugin records it as the FAIL measurement
    `unintended_comm_loss` (value `gap_ms`, the device ms since the last heartbeat, at most)."""

    measurement = "unintended_comm_loss"

    def __init__(self, why: str, *, gap_ms: float, watchdog_ms: float, max_gap_ms: float | None):
        self.gap_ms, self.watchdog_ms, self.max_gap_ms = gap_ms, watchdog_ms, max_gap_ms
        super().__init__(why)


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat write: when it ended (wall, monotonic s), UPTIME_MS read just before it
    (None when not tracked), and the value written."""

    wall: float
    uptime_ms: int | None
    value: int


class _Shared:
    """State the heartbeat's writer (a child process or a thread) shares with the rig: fields
    over one shared mapping (a temporary file both processes map), so feeding the switch costs
    one store and never blocks either side; each field is a ctypes object (`.value`, slices).
    """

    def __init__(self, fd: int | None = None) -> None:
        import ctypes
        import mmap
        import tempfile

        layout = [
            ("fed", ctypes.c_double, 1),  # time.monotonic() of the last progress
            ("budget", ctypes.c_double, 1),  # stall budget, wall s
            ("period", ctypes.c_double, 1),  # wall s between beats
            ("count", ctypes.c_int64, 1),  # beats written; slot i % RING holds beat i
            ("withheld", ctypes.c_int64, 1),  # beats not written: no progress for the budget
            ("errors", ctypes.c_int64, 1),
            ("error_code", ctypes.c_int64, 1),  # Modbus exception code, 0 for no answer
            ("stop", ctypes.c_int64, 1),
            ("stopped", ctypes.c_int64, 1),  # set by the writer once it writes no more
            ("paused", ctypes.c_int64, 1),  # asked by the rig: write nothing until cleared
            ("in_beat", ctypes.c_int64, 1),  # set by the writer while a beat may be written
            ("value", ctypes.c_int64, 1),  # HEARTBEAT as the rig left it, for a resume
            ("ring", ctypes.c_double, 3 * RING),  # (wall, UPTIME_MS before or -1, value)
            ("error_text", ctypes.c_char, 512),
            ("priority", ctypes.c_char, 32),
        ]
        size = sum(ctypes.sizeof(t) * n for _, t, n in layout)
        if fd is None:
            self.file: Any = tempfile.TemporaryFile()  # deleted when closed; no name to leak
            self.file.truncate(size)
            fd = self.file.fileno()
        else:
            self.file = None
        self.fd = fd
        self._map = mmap.mmap(fd, size)
        offset = 0
        for name, ctype, count in layout:  # all 8-byte types first: every field aligned
            kind = ctype if count == 1 and ctype is not ctypes.c_char else ctype * count
            setattr(self, name, kind.from_buffer(self._map, offset))
            offset += ctypes.sizeof(ctype) * count


def _raise_priority() -> str:
    """SCHED_FIFO for the calling thread, else a lower nice value; what was got (best effort:
    an unprivileged host keeps the normal priority, and the scale check measures that)."""
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))  # this thread, on Linux
        return "SCHED_FIFO 10"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        return "nice -10"
    except (OSError, AttributeError):
        return "normal"


def _normal_priority() -> None:
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _beat_loop(
    target: tuple[str, int, int, float],
    registers: tuple[int, int, int, int, bool, bool],
    value: int,
    shared: _Shared,
    wait: Any,
) -> None:
    """The writer: read UPTIME_MS, write HEARTBEAT, every `period`, while the run progresses.

    `wait(seconds)` sleeps and returns True when the writer must end (stop asked, parent gone).
    """
    shared.priority.value = _raise_priority().encode()
    host, port, unit, timeout = target
    up_fc, up_addr, up_count, beat_addr, track, pipelined = registers
    link = _Link(host, port, unit, timeout)
    up_text = f"FC{up_fc:02d} UPTIME_MS@{up_addr}"
    next_at = time.monotonic()
    try:
        while not shared.stop.value:
            if shared.paused.value:
                shared.stopped.value = 1  # acknowledged: nothing more is written until resumed
                if wait(3600.0):
                    break
                continue
            if shared.stopped.value:  # resumed: from the rig's value, on a fresh connection
                shared.stopped.value = 0
                value = int(shared.value.value)
                link.close()
                next_at = time.monotonic()
            # Announced before `paused` is looked at, so that the rig, which sets `paused`
            # before it looks at this, either sees the beat under way or is seen by it.
            shared.in_beat.value = 1
            if shared.paused.value or shared.stop.value:
                shared.in_beat.value = 0
                continue
            if time.monotonic() - shared.fed.value > shared.budget.value:
                # Dead man's switch: the run made no progress for the budget, so the table's
                # own watchdog must stop it; resumes when the run progresses again.
                shared.withheld.value += 1
            else:
                value = (value + 1) & 0xFFFF
                try:
                    before = -1.0
                    beat_text = f"FC06 HEARTBEAT@{beat_addr} = {value}"
                    if track and pipelined:
                        # one segment, as Plc.last_heartbeat: the read lands right before the
                        # write, so a fault timed from this beat carries no host round trip
                        try:
                            words, _ = link.pipeline(
                                [(up_fc, up_addr, up_count), (FC_WRITE_ONE, beat_addr, [value])],
                                f"{up_text}, {beat_text} (one segment)",
                            )
                        except PlcNotResponding as exc:
                            pipelined = not exc.partial  # one transaction at a time from now
                            raise
                    else:
                        if track:
                            words = link.execute(up_fc, up_addr, up_count, up_text)
                        link.execute(FC_WRITE_ONE, beat_addr, [value], beat_text)
                    if track:
                        before = float((words[0] << 16) | words[1] if up_count == 2 else words[0])
                    slot = 3 * (shared.count.value % RING)
                    shared.ring[slot : slot + 3] = [time.monotonic(), before, float(value)]
                    shared.count.value += 1  # after the slot: a reader never sees it half done
                except Exception as exc:
                    code = exc.code if isinstance(exc, ModbusExceptionError) else 0
                    shared.error_code.value = code
                    shared.error_text.value = str(exc).encode()[:500]
                    shared.errors.value += 1
            shared.in_beat.value = 0
            # Scheduled from the previous deadline so the period does not drift with latency;
            # when late (host stall), beat now rather than catch up with a burst.
            next_at = max(next_at + shared.period.value, time.monotonic())
            if wait(next_at - time.monotonic()):
                break
    finally:
        shared.stopped.value = 1
        _normal_priority()  # closing and exiting must not take the rig's CPU at a high priority
        link.close()


def _process_main() -> None:
    """The heartbeat process (`python -c`, see Heartbeat.start): beats until told to stop on
    its stdin, or at once when the rig process dies (its end of the pipe closes: EOF)."""
    import json
    import os
    import select
    import signal

    # Ctrl-C reaches the whole process group: the rig handles it (STOP, make-safe) and this
    # process ends when the rig tells it or exits, not in the middle of that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = json.loads(sys.argv[1])
    parent = os.getppid()
    shared = _Shared(int(args["fd"]))
    stdin = sys.stdin.buffer.raw  # unbuffered: select() and read() agree

    def wait(seconds: float) -> bool:
        if os.getppid() != parent:
            return True
        ready, _, _ = select.select([stdin], [], [], max(0.0, seconds))
        if ready:
            line = stdin.read(64)
            return not line or b"stop" in line  # EOF: the rig process is gone
            # (pause, resume and wake only end the wait: the shared flags say what to do)
        return False

    _beat_loop(tuple(args["target"]), tuple(args["registers"]), int(args["value"]), shared, wait)


class Heartbeat:
    """HEARTBEAT written from its own process (or thread) over its own Modbus connection, as a
    dead man's switch: it beats only while the run makes progress.

    The period is `period_fraction` x WATCHDOG_MS of device time, converted to wall time with
    the PLC's measured clock rate, so it holds at any time scale. Progress is `rig.wait.progress()`
    (every wait poll, every completed PLC request on the main connection, every instrument
    exchange); when none comes for `stall_budget_s` wall seconds the heartbeat stops writing and
    the table's own watchdog stops the table. The default budget is the longest any PLC call can
    take (`Plc.call_bound_s`) plus `STALL_MARGIN_S`, so a slow but bounded call never trips it.

    `backend` "process" (the default) or "thread"; either raises its own priority (SCHED_FIFO)
    when the host allows it. Chosen by benchmarks/heartbeat_jitter.py (scale 20, period 12.5 ms,
    this project's 2-core host with two busy-loop processes, the emulated bench at SCHED_FIFO
    so that only the writer's stalls show): max gap between writes 20 ms for the process,
    567 ms for the thread, which waits for the GIL behind the rig's own work. The process also
    stops at once when the rig process dies (its stdin closes).

    Every beat is kept (`beats()`: wall time, UPTIME_MS read just before, value) so that an
    unintended COMM_LOSS can be classified (`comm_loss_cause`). A failed write is counted and
    retried at the next period; `check()` raises it in the caller's thread.
    """

    def __init__(
        self,
        plc: Plc,
        *,
        period_fraction: float = 0.25,
        track_uptime: bool = True,
        backend: str = "process",
        stall_budget_s: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"heartbeat backend must be one of {BACKENDS}, got {backend!r}")
        self.plc = plc
        self.period_fraction = period_fraction
        self.track_uptime = track_uptime
        self.backend = backend
        self._budget = stall_budget_s
        self.period: float | None = None
        self.watchdog_ms: float | None = None
        self.errors: list[Exception] = []  # the latest 100 raised by `check`
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._stop_event = threading.Event()
        self._shared: _Shared | None = None
        self._lock = threading.Lock()
        self._cancel_feed: Any = None
        self._checked = 0
        self._rate = 1.0
        self._link: _Link | None = None  # the thread backend's connection
        self._old_watchdog_ms: float | None = None
        self._new_watchdog_ms = 0.0
        self._last_beats: list[Beat] = []  # kept across a stop for the accounting

    # -- the switch ----------------------------------------------------------------------------
    @property
    def stall_budget_s(self) -> float:
        """Wall seconds without progress after which the heartbeat stops writing."""
        if self._budget is not None:
            return self._budget
        return self.plc.call_bound_s + STALL_MARGIN_S

    def feed(self) -> None:
        """The run made progress (usually through `rig.wait.progress()`)."""
        shared = self._shared
        if shared is not None:
            shared.fed.value = time.monotonic()

    @property
    def withheld(self) -> int:
        """Beats not written because the run made no progress for the stall budget."""
        return 0 if self._shared is None else int(self._shared.withheld.value)

    @property
    def priority(self) -> str:
        """The scheduling the writer got (SCHED_FIFO 10, nice -10 or normal)."""
        return "" if self._shared is None else self._shared.priority.value.decode()

    # -- running -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the writer is alive and not stopping."""
        if self._shared is None or self._shared.stop.value or self._shared.paused.value:
            return False
        if self._process is not None:
            return self._process.poll() is None
        return self._thread is not None and self._thread.is_alive()

    @property
    def writes(self) -> int:
        """Heartbeat writes so far (this run of the writer)."""
        return 0 if self._shared is None else int(self._shared.count.value)

    @property
    def error_count(self) -> int:
        """Failed heartbeat writes so far (this run of the writer)."""
        return 0 if self._shared is None else int(self._shared.errors.value)

    @property
    def last(self) -> tuple[int | None, int] | None:
        """(UPTIME_MS read before it, value) of the last beat written."""
        beats = self.beats(1)
        return None if not beats else (beats[-1].uptime_ms, beats[-1].value)

    def start(self, *, period_fraction: float | None = None, ready_s: float = 15.0) -> None:
        """Read WATCHDOG_MS and the clock rate, start the writer, and return once its first beat
        is written (no-op if running). PlcNotResponding if it does not beat within `ready_s`."""
        if self.running:
            return
        if period_fraction is not None:
            self.period_fraction = period_fraction
        if not 0 < self.period_fraction < 1:
            raise ValueError(f"period_fraction must be in (0, 1), got {self.period_fraction}")
        self._rate = self.plc.clock_rate()
        watchdog_ms = float(self.plc.read("WATCHDOG_MS"))
        value = self.plc.read_raw("HEARTBEAT")
        plc = self.plc
        uptime, beat = plc.profile.register("UPTIME_MS"), plc.profile.register("HEARTBEAT")
        target = (plc.host, plc.port, plc.unit, plc.timeout)
        registers = (
            FC_READ[uptime.space],
            uptime.address,
            uptime.count,
            beat.address,
            self.track_uptime,
            plc.pipelining,  # probed by clock_rate(): read and write in one segment
        )
        paused = self._shared
        if paused is not None and self._process is not None and self._process.poll() is None:
            # The process paused by `stop` resumes: no new interpreter to wait for.
            shared = paused
            first = int(shared.count.value)
            shared.budget.value = self.stall_budget_s
            shared.fed.value = time.monotonic()
            shared.value.value = value
            self._set_watchdog(watchdog_ms)
            shared.paused.value = 0
            self._tell(b"resume\n")
        else:
            self.close()
            shared = self._shared = _Shared()
            first = 0
            shared.budget.value = self.stall_budget_s
            shared.fed.value = time.monotonic()
            self._set_watchdog(watchdog_ms)
            self._stop_event.clear()
            self._spawn(target, registers, value, shared)
        from rig.wait import on_progress

        if self._cancel_feed is None:
            self._cancel_feed = on_progress(self.feed)
        deadline = time.monotonic() + ready_s
        while shared.count.value <= first:
            if not self.running or time.monotonic() > deadline:
                text = shared.error_text.value.decode() or "no beat written"
                if self._process is not None and self._process.poll() is not None:
                    text += f" (heartbeat process exited with code {self._process.returncode})"
                self.stop()
                raise PlcNotResponding(f"heartbeat did not start within {ready_s:g} s: {text}")
            self.feed()  # waiting for the writer to start is progress (a spawn can take 1 s)
            # Paces the look at the shared counter; nothing is timed by it.
            time.sleep(0.002)

    def _spawn(
        self,
        target: tuple[str, int, int, float],
        registers: tuple[int, int, int, int, bool, bool],
        value: int,
        shared: _Shared,
    ) -> None:
        if self.backend == "process":
            import json
            import subprocess

            # A plain interpreter, not multiprocessing: spawn would re-run the caller's
            # __main__, and fork would copy a threaded process's held locks.
            args = {"fd": shared.fd, "target": target, "registers": registers, "value": value}
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from rig.plc import _process_main; _process_main()",
                    json.dumps(args),
                ],
                stdin=subprocess.PIPE,
                # Not the rig's output: whoever reads it to its end must not wait for this
                # process; its errors reach the rig through the shared mapping.
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(shared.fd,),
            )
        else:
            self._thread = threading.Thread(
                target=_beat_loop,
                args=(target, registers, value, shared, self._stop_event.wait),
                name="plc-heartbeat",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> tuple[int | None, int] | None:
        """Stop writing; return the last (UPTIME_MS read before it, value) written.

        The process backend's writer is paused, not ended (a later `start` resumes it at
        once; `close` ends it): stopping must be quick, as a watchdog test's own last beat
        must follow the writer's within WATCHDOG_MS of device time. Bounded: a beat in
        progress is two requests, each ending within `call_bound`; a writer still writing
        after that is killed (process) or left to stop at its next check (thread), and the
        fact counted as a heartbeat error. Never raises.
        """
        shared = self._shared
        if self._cancel_feed is not None:
            self._cancel_feed()
            self._cancel_feed = None
        if shared is None:
            return None
        limit = 2 * call_bound(self.plc.timeout) + 1.0
        if self._process is not None:
            # No handshake: from here the writer starts no beat; only one under way is waited
            # for (a watchdog test's own last beat must follow within WATCHDOG_MS).
            shared.paused.value = 1
            deadline = time.monotonic() + limit
            while shared.in_beat.value and self._process.poll() is None:
                if time.monotonic() > deadline:
                    self._note_error("heartbeat process did not stop writing in time; killed")
                    self._end_process(kill=True)
                    break
                time.sleep(0.0005)  # paces the look at the flag; nothing is timed by it
            self._tell(b"pause\n")  # to idle now rather than at its next period
        if self._thread is not None:
            shared.stop.value = 1
            self._stop_event.set()
            self._thread.join(limit)
            if self._thread.is_alive():
                self._note_error(f"heartbeat thread did not stop within {limit:g} s")
            self._thread = None
        self._last_beats = self.beats()
        return self.last

    def close(self) -> None:
        """Stop writing and end the writer for good (its process too). Never raises."""
        self.stop()
        if self._process is not None:
            self._end_process(kill=False)

    def _end_process(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if self._shared is not None:
            self._shared.stop.value = 1
        if kill:
            process.kill()
        elif process.stdin is not None:
            try:
                process.stdin.write(b"stop\n")
                process.stdin.flush()
            except (OSError, ValueError):
                pass
        if process.stdin is not None:
            process.stdin.close()  # EOF ends it in any case
        # It only exits now (tens of ms): reaped in the background, not waited for.
        threading.Thread(target=process.wait, name="heartbeat-reap", daemon=True).start()

    def _note_error(self, text: str) -> None:
        shared = self._shared
        if shared is not None:
            shared.error_code.value = 0
            shared.error_text.value = text.encode()[:500]
            shared.errors.value += 1

    def check(self) -> None:
        """Raise the latest heartbeat error not raised before, if any (typed: the Modbus
        exception the PLC answered, or PlcNotResponding)."""
        shared = self._shared
        if shared is None:
            return
        with self._lock:
            count = int(shared.errors.value)
            if count <= self._checked:
                return
            self._checked = count
            code, text = int(shared.error_code.value), shared.error_text.value.decode()
            exc: Exception = (
                modbus_exception(code, f"HEARTBEAT write ({text})")
                if code
                else PlcNotResponding(f"heartbeat: {text}")
            )
            self.errors.append(exc)
            del self.errors[:-100]
        raise exc

    # -- accounting ------------------------------------------------------------------------------
    def beats(self, last: int | None = None) -> list[Beat]:
        """The beats written by the present (or, once stopped, the last) writer, oldest first;
        only the latest `RING` are kept."""
        shared = self._shared
        if shared is None:
            return list(self._last_beats[-last:] if last else self._last_beats)
        count = int(shared.count.value)
        n = min(count, RING, last or RING)
        out = []
        for i in range(count - n, count):
            slot = 3 * (i % RING)
            wall, up, value = shared.ring[slot : slot + 3]
            out.append(Beat(wall, None if up < 0 else int(up), int(value)))
        return out

    def gaps_ms(self) -> list[float]:
        """Device ms between successive beats (from the UPTIME_MS read before each)."""
        ups = [b.uptime_ms for b in self.beats() if b.uptime_ms is not None]
        return [float(b - a) for a, b in itertools.pairwise(ups) if b >= a]

    def comm_loss_cause(self, fault_uptime_ms: int) -> HeartbeatLate | UnitTrippedCommLoss:
        """Whose fault an unintended COMM_LOSS raised at device time `fault_uptime_ms` is.

        A beat's write lands after the UPTIME_MS read before it and before the next beat's read
        (one connection, in order), so the last beat certainly landed before the fault is the
        last one followed by a read at or before the fault; the gap at the fault is at most the
        fault time minus that beat's read. Shorter than WATCHDOG_MS (with 1 ms for the floors of
        both clocks) proves the heartbeat on time: the unit tripped falsely. Anything else (a
        longer gap, no beat known, beats withheld by the switch or failing) is the rig's.
        """
        watchdog = self.watchdog_ms
        beats = [b for b in self.beats() if b.uptime_ms is not None]
        ups = [b.uptime_ms for b in beats]
        landed = [beats[i] for i in range(len(beats) - 1) if (ups[i + 1] or 0) <= fault_uptime_ms]
        # gaps that began before the fault, including the one the fault fell in
        gaps = [
            float(b - a)
            for a, b in itertools.pairwise(ups)
            if a is not None and b is not None and a <= b and a <= fault_uptime_ms
        ]
        max_gap = max(gaps) if gaps else None
        if not landed or watchdog is None:
            return HeartbeatLate(
                f"COMM_LOSS at UPTIME_MS {fault_uptime_ms} with no heartbeat known to have "
                f"landed before it (the rig's heartbeat: {self.writes} writes, "
                f"{self.withheld} withheld, {self.error_count} failed)",
                gap_ms=None,
                watchdog_ms=watchdog,
                max_gap_ms=max_gap,
            )
        gap = float(fault_uptime_ms - (landed[-1].uptime_ms or 0))
        detail = (
            f"gap at the fault at most {gap:g} ms of device time, WATCHDOG_MS {watchdog:g}, "
            f"largest gap between beats {max_gap if max_gap is None else f'{max_gap:g}'} ms, "
            f"{self.withheld} beats withheld (no progress), {self.error_count} failed writes"
        )
        if gap < watchdog - 1.0:
            return UnitTrippedCommLoss(
                f"the table faulted COMM_LOSS although the heartbeat was on time: {detail}",
                gap_ms=gap,
                watchdog_ms=watchdog,
                max_gap_ms=max_gap,
            )
        return HeartbeatLate(
            f"the rig's heartbeat was late (COMM_LOSS, not the unit's fault): {detail}",
            gap_ms=gap,
            watchdog_ms=watchdog,
            max_gap_ms=max_gap,
        )

    # -- period --------------------------------------------------------------------------------
    def _set_watchdog(self, watchdog_ms: float) -> None:
        with self._lock:
            self.watchdog_ms = watchdog_ms
            self.period = watchdog_ms / 1000.0 * self.period_fraction / self._rate
            if self._shared is not None:
                self._shared.period.value = self.period
        # A shorter period must apply to the wait under way already.
        self._wake()

    def _wake(self) -> None:
        self._tell(b"wake\n")

    def _tell(self, line: bytes) -> None:
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.write(line)
                process.stdin.flush()
            except (OSError, ValueError):
                pass

    def _before_watchdog_write(self, new_ms: float) -> None:
        # Shorten the period before a lower WATCHDOG_MS takes effect, not after.
        self._old_watchdog_ms, self._new_watchdog_ms = self.watchdog_ms, new_ms
        if self.watchdog_ms is not None and new_ms < self.watchdog_ms:
            self._set_watchdog(new_ms)

    def _after_watchdog_write(self) -> None:
        # Re-read rather than trust the write: it may have been refused (03/06).
        if not self.running:
            return
        try:
            self._set_watchdog(float(self.plc.read("WATCHDOG_MS")))
        except RigError:
            old = self._old_watchdog_ms
            self._set_watchdog(
                self._new_watchdog_ms if old is None else min(old, self._new_watchdog_ms)
            )
