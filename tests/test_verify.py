"""Run records as evidence: signatures, and `verify_run` naming every alteration it finds."""

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.evidence.format import (
    FIELDS,
    RecordError,
    canonical,
    field_digests,
    line_hash,
    now_iso,
)
from rig.evidence.measurement import evaluate
from rig.evidence.reader import is_torn_line, read_record, verify_chain
from rig.evidence.signature import fingerprint
from rig.evidence.signing import (
    KeyPermissionError,
    SigningError,
    cmd_sign,
    public_key_hex,
    reviewer_key,
    sign_run,
    station_key,
)
from rig.evidence.verify import (
    INCOMPLETE,
    TAMPERED,
    UNSIGNED,
    UNTRUSTED,
    VALID,
    cmd_verify,
    verify_run,
)
from rig.evidence.writer import RunRecord

ROOT = Path(__file__).resolve().parent.parent
STATION_ID = "TEST-STATION"
# each example verifies a copied run (a few ms); an exhaustive sweep of every byte of a signed
# record with 16 replacement values each (212 000 edits) found no miss when this was written
FAST = settings(deadline=None, max_examples=200)
MANY = settings(deadline=None, max_examples=600)


class Spec:
    """A measurement spec as a profile gives it."""

    def __init__(self, name, unit, low, high):
        self.name, self.unit, self.equals = name, unit, None
        self._limits = (low, high)

    def limits(self, env):
        return self._limits


def build_run(directory, *, serial="S1", n=4, end=True):
    """A run written by RunRecord as the plugin writes one: header, measurements with traces,
    a requirement, an event, the end line."""
    rec = RunRecord(Path(directory))
    rec.start(
        {
            "model": "TT-890",
            "serial": serial,
            "operator": "",
            "rig_version": "test",
            "station": {"id": STATION_ID, "emulated": True, "source": "test"},
            "started": now_iso(),
        }
    )
    spec = Spec("settled_force", "N", 96.0, 104.0)
    values = [100.0 + i for i in range(n)]
    if n >= 2:
        values[1] = float("nan")  # non-finite values are written as strings: digests still hold
    for i, value in enumerate(values):
        rel, sha = rec.add_trace(f"TT-PERF-01-{i}", f"t,force\n0.0,0.0\n0.1,{value}\n")
        rec.add(
            evaluate(
                spec,
                "TT-PERF-01",
                "cl. 9",
                value,
                {},
                bindings={"set": 100.0 + i},
                trace=rel,
                trace_sha256=sha,
            )
        )
    rec.conclude_requirement("TT-PERF-01", "FAIL", test="suites/x.py::test[TT-PERF-01]")
    rec.event("final safe state confirmed", state="IDLE", motor_enabled=False)
    if end:
        rec.end("FAIL", complete=True, not_run=[], unsafe=None, rig_version="test")
    return rec


@pytest.fixture
def keys(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("RIG_KEY_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def module_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys") / "k"
    return d


@pytest.fixture(scope="module")
def signed(tmp_path_factory, module_keys):
    """One run, ended and signed by the station (never modified: tests alter copies)."""
    run = tmp_path_factory.mktemp("signed") / "run"
    rec = build_run(run)
    sign_run(
        rec,
        station_key(module_keys / "station.pem"),
        name=STATION_ID,
        meaning="recorded",
        role="station",
    )
    return run


def copy_run(src, dst_parent):
    dst = Path(dst_parent) / "run"
    shutil.copytree(src, dst)
    return dst


def lines_of(run):
    return (run / "record.jsonl").read_bytes().split(b"\n")[:-1]


def write_lines(run, raws):
    (run / "record.jsonl").write_bytes(b"".join(r + b"\n" for r in raws))


def rewrite(raw, **changes):
    """The line with fields changed, its digests left as written."""
    obj = json.loads(raw)
    obj.update(changes)
    return canonical(obj)


# --------------------------------------------------------------------------- valid, unsigned


def test_an_unaltered_signed_run_is_valid(signed):
    report = verify_run(signed)
    assert report.status == VALID, report.as_text()
    assert report.exit_code == 0
    assert report.problems == []
    assert report.ended and report.verdict == "FAIL"
    assert (report.model, report.serial) == ("TT-890", "S1")
    (sig,) = report.signatures
    assert (sig.name, sig.meaning, sig.role, sig.valid) == (STATION_ID, "recorded", "station", True)
    assert "VALID" in report.as_text() and STATION_ID in report.as_text()
    # the old chain check still accepts the new lines
    assert verify_chain(signed / "record.jsonl") == []
    assert read_record(signed / "record.jsonl")[-1]["kind"] == "signature"


def test_every_line_carries_digests_of_its_fields(signed):
    for raw in lines_of(signed):
        obj = json.loads(raw)
        assert obj[FIELDS] == field_digests(obj)
        assert set(obj[FIELDS]) == set(obj) - {FIELDS}


def test_an_ended_run_without_station_signature_is_unsigned(tmp_path):
    build_run(tmp_path / "run")
    report = verify_run(tmp_path / "run" / "record.jsonl")  # the file names its run too
    assert report.status == UNSIGNED and report.exit_code == 4
    assert report.problems == []


def test_a_record_without_field_digests_still_verifies_by_line(tmp_path):
    """Records written before the digests: chain intact, ended, unsigned, and said to be so."""
    run = tmp_path / "run"
    (run / "traces").mkdir(parents=True)
    prev, raws = "0" * 64, []
    for seq, (kind, body) in enumerate(
        [("header", {"model": "TT-890", "serial": "OLD"}), ("end", {"verdict": "PASS"})]
    ):
        raw = canonical({"seq": seq, "kind": kind, "time": now_iso(), **body, "prev": prev})
        raws.append(raw)
        prev = line_hash(raw)
    write_lines(run, raws)
    report = verify_run(run)
    assert report.status == UNSIGNED, report.as_text()
    assert any("no per-field digests" in n for n in report.notes)
    write_lines(run, [raws[0], rewrite(raws[1], verdict="FAIL")])
    assert verify_run(run).status == UNSIGNED  # the last line of an unsigned record: not seen
    write_lines(run, [rewrite(raws[0], serial="OTHER"), raws[1]])
    report = verify_run(run)
    assert report.status == TAMPERED and "line 1 (seq 0, header) altered" in report.as_text()


# --------------------------------------------------------------------------- any byte changed


def _assert_tampered(run):
    report = verify_run(run)
    assert report.status == TAMPERED, report.as_text()
    assert report.exit_code == 1
    return report


@MANY
@given(data=st.data())
def test_any_byte_changed_in_the_record_is_detected(signed, data):
    raw = (signed / "record.jsonl").read_bytes()
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_run(signed, tmp)
        (run / "record.jsonl").write_bytes(raw[:pos] + bytes([byte]) + raw[pos + 1 :])
        _assert_tampered(run)


@pytest.mark.parametrize("byte", [b" ", b"\r", b"\x00", b"x", b"}", b"{", b"\t"])
def test_the_final_newline_changed_is_an_alteration_not_a_crash(signed, tmp_path, byte):
    run = copy_run(signed, tmp_path)
    raw = (run / "record.jsonl").read_bytes()
    (run / "record.jsonl").write_bytes(raw[:-1] + byte)
    _assert_tampered(run)


@FAST
@given(data=st.data())
def test_any_byte_changed_in_a_trace_file_is_detected(signed, data):
    traces = sorted((signed / "traces").glob("*.csv"))
    trace = data.draw(st.sampled_from(traces), label="trace")
    raw = trace.read_bytes()
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_run(signed, tmp)
        (run / "traces" / trace.name).write_bytes(raw[:pos] + bytes([byte]) + raw[pos + 1 :])
        report = _assert_tampered(run)
        seq = next(
            json.loads(x)["seq"]
            for x in lines_of(run)
            if trace.name.encode() in x and b'"kind":"measurement"' in x
        )
        (problem,) = report.problems
        assert f"trace file traces/{trace.name}" in problem
        assert f"seq {seq}, measurement TT-PERF-01 settled_force" in problem
        assert not report.signatures[0].valid  # what it signs no longer holds


@FAST
@given(data=st.data())
def test_any_byte_changed_in_a_signature_line_is_detected(signed, data):
    raws = lines_of(signed)
    sig = raws[-1]
    start = sum(len(r) + 1 for r in raws[:-1])
    pos = data.draw(st.integers(0, len(sig) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != sig[pos]), label="byte")
    raw = (signed / "record.jsonl").read_bytes()
    at = start + pos
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_run(signed, tmp)
        (run / "record.jsonl").write_bytes(raw[:at] + bytes([byte]) + raw[at + 1 :])
        _assert_tampered(run)


def test_every_byte_of_the_signature_value_changed_names_the_signer(signed, tmp_path):
    raws = lines_of(signed)
    sig = raws[-1]
    value = json.loads(sig)["signature"]
    first = sig.index(value.encode())
    for pos in range(first, first + len(value), 7):
        changed = sig[:pos] + (b"0" if sig[pos : pos + 1] != b"0" else b"1") + sig[pos + 1 :]
        run = tmp_path / str(pos)
        shutil.copytree(signed, run)
        write_lines(run, [*raws[:-1], changed])
        report = _assert_tampered(run)
        text = "\n".join(report.problems)
        assert f"signature by '{STATION_ID}'" in text and "'signature' altered" in text
        assert "does not verify" in text
        assert not report.signatures[0].valid


def test_an_uppercased_signature_is_an_alteration(signed, tmp_path):
    """bytes.fromhex reads upper case too: the same signature bytes in other text."""
    run = copy_run(signed, tmp_path)
    raws = lines_of(run)
    obj = json.loads(raws[-1])
    write_lines(run, [*raws[:-1], rewrite(raws[-1], signature=obj["signature"].upper())])
    report = _assert_tampered(run)
    assert not report.signatures[0].valid


# --------------------------------------------------------------------------- lines


def test_deleting_any_line_is_detected(signed, tmp_path):
    raws = lines_of(signed)
    for i in range(len(raws)):
        run = tmp_path / f"del{i}"
        shutil.copytree(signed, run)
        write_lines(run, raws[:i] + raws[i + 1 :])
        report = verify_run(run)
        if i == len(raws) - 1:
            # the station signature cut off the end: intact, ended, but no longer signed
            assert report.status == UNSIGNED, report.as_text()
            continue
        assert report.status == TAMPERED, (i, report.as_text())
        text = "\n".join(report.problems)
        if 0 < i < len(raws) - 2:
            assert f"seq {i} missing before line {i + 1}: line(s) deleted" in text, text


def test_inserting_a_line_is_detected(signed, tmp_path):
    raws = lines_of(signed)
    for i in range(1, len(raws)):
        for what, extra in [("copy", raws[i - 1]), ("copy2", raws[0])]:
            run = tmp_path / f"ins{i}{what}"
            shutil.copytree(signed, run)
            write_lines(run, [*raws[:i], extra, *raws[i:]])
            report = verify_run(run)
            assert report.status == TAMPERED, (i, report.as_text())
            assert "duplicated or inserted" in "\n".join(report.problems)
    # a forged line that fits the chain where it goes in, fields and all
    run = tmp_path / "forged"
    shutil.copytree(signed, run)
    base = json.loads(raws[2])
    forged = {k: v for k, v in base.items() if k != FIELDS}
    forged.update(seq=3, prev=line_hash(raws[2]), value=101.0, verdict="PASS")
    forged[FIELDS] = field_digests(forged)
    write_lines(run, [*raws[:3], canonical(forged), *raws[3:]])
    report = _assert_tampered(run)
    assert "seq 3 appears on lines 4, 5" in "\n".join(report.problems)


def test_reordering_lines_is_detected(signed, tmp_path):
    raws = lines_of(signed)
    for i in range(len(raws) - 1):
        run = tmp_path / f"swap{i}"
        shutil.copytree(signed, run)
        swapped = [*raws[:i], raws[i + 1], raws[i], *raws[i + 2 :]]
        write_lines(run, swapped)
        report = verify_run(run)
        assert report.status == TAMPERED, (i, report.as_text())
        assert "reordered" in "\n".join(report.problems) or i == 0, report.as_text()


# --------------------------------------------------------------------------- fields


def _first_measurement(raws):
    return next(k for k, x in enumerate(raws) if b'"kind":"measurement"' in x)


def test_an_edited_value_is_named_by_seq_and_field(signed, tmp_path):
    run = copy_run(signed, tmp_path)
    raws = lines_of(run)
    k = _first_measurement(raws)
    write_lines(run, [*raws[:k], rewrite(raws[k], value=101.5), *raws[k + 1 :]])
    report = _assert_tampered(run)
    assert report.problems[0] == (
        f"line {k + 1} (seq {k}, measurement TT-PERF-01 settled_force): field 'value' altered "
        "(its value does not match the digest written with it)"
    ), report.as_text()
    assert len(report.problems) == 1  # the chain break it causes is not reported twice
    assert not report.signatures[0].valid


def test_an_edited_value_with_its_digest_is_named_by_line(signed, tmp_path):
    run = copy_run(signed, tmp_path)
    raws = lines_of(run)
    k = _first_measurement(raws)
    obj = json.loads(raws[k])
    obj["value"] = 109.0
    obj[FIELDS] = field_digests(obj)
    write_lines(run, [*raws[:k], canonical(obj), *raws[k + 1 :]])
    report = _assert_tampered(run)
    assert report.problems == [
        f"line {k + 1} (seq {k}, measurement TT-PERF-01 settled_force) altered (field unknown: "
        f"value and digest both changed): its hash does not match the prev of line {k + 2}"
    ], report.as_text()


def test_an_edited_prev_with_its_digest_is_named_by_line(signed, tmp_path):
    run = copy_run(signed, tmp_path)
    raws = lines_of(run)
    k = _first_measurement(raws)
    obj = json.loads(raws[k])
    obj["prev"] = "1" * 64
    obj[FIELDS] = field_digests(obj)
    write_lines(run, [*raws[:k], canonical(obj), *raws[k + 1 :]])
    report = _assert_tampered(run)
    assert len(report.problems) == 1 and report.problems[0].startswith(
        f"line {k + 1} (seq {k}, measurement TT-PERF-01 settled_force) altered (field unknown"
    ), report.as_text()


def test_the_end_line_rewritten_whole_is_caught_by_the_station_signature(signed, tmp_path):
    run = copy_run(signed, tmp_path)
    raws = lines_of(run)
    obj = json.loads(raws[-2])
    obj["verdict"] = "PASS"
    obj[FIELDS] = field_digests(obj)
    write_lines(run, [*raws[:-2], canonical(obj), raws[-1]])
    report = _assert_tampered(run)
    assert "seq {}, end) altered (field unknown".format(obj["seq"]) in report.as_text()


# --------------------------------------------------------------------------- moved signatures


def test_a_signature_moved_from_another_record_is_detected(signed, tmp_path, module_keys):
    other = tmp_path / "other"
    build_run(other, serial="S2")
    sign_run(
        other,
        station_key(module_keys / "station.pem"),
        name=STATION_ID,
        meaning="recorded",
        role="station",
    )
    ours = lines_of(signed)
    theirs = lines_of(other)
    # as is, in place of our own
    run = tmp_path / "moved"
    shutil.copytree(signed, run)
    write_lines(run, [*ours[:-1], theirs[-1]])
    report = _assert_tampered(run)
    assert "made for another record (model TT-890, serial S2" in report.as_text()
    assert f"signature by '{STATION_ID}'" in report.as_text()
    # fitted to our chain: seq, prev and digests redone; the signature itself still refuses
    obj = json.loads(theirs[-1])
    obj.update(seq=len(ours) - 1, prev=line_hash(ours[-2]), chain_head=line_hash(ours[-2]))
    obj[FIELDS] = field_digests(obj)
    run = tmp_path / "fitted"
    shutil.copytree(signed, run)
    write_lines(run, [*ours[:-1], canonical(obj)])
    report = _assert_tampered(run)
    assert not report.signatures[0].valid
    assert f"signature by '{STATION_ID}'" in "\n".join(report.problems)


def test_a_signature_with_its_name_edited_and_redigested_fails(signed, tmp_path):
    run = copy_run(signed, tmp_path)
    raws = lines_of(run)
    obj = json.loads(raws[-1])
    obj["name"] = "SOMEONE ELSE"
    obj[FIELDS] = field_digests(obj)
    write_lines(run, [*raws[:-1], canonical(obj)])
    report = _assert_tampered(run)
    assert "signature by 'SOMEONE ELSE'" in report.problems[0]
    assert "does not verify" in report.problems[0]


def test_trusted_keys_refuse_a_record_resigned_with_another_key(signed, tmp_path, module_keys):
    ours = fingerprint(public_key_hex(station_key(module_keys / "station.pem")))
    assert verify_run(signed, trusted_keys=[ours]).status == VALID
    run = tmp_path / "resigned"
    build_run(run)
    sign_run(
        run,
        station_key(tmp_path / "forger.pem"),
        name=STATION_ID,
        meaning="recorded",
        role="station",
    )
    assert verify_run(run).status == VALID  # any key verifies ...
    report = verify_run(run, trusted_keys=[ours])  # ... unless the station's keys are known
    # not enrolled is UNTRUSTED (exit 5): the record alone cannot show it was rewritten; the
    # line's database can (tests/test_trust.py)
    assert report.status == UNTRUSTED and "not one of the trusted keys" in report.as_text()
    assert report.exit_code == 5


# --------------------------------------------------------------------------- incomplete


def test_a_record_cut_after_a_complete_line_is_incomplete(tmp_path):
    run = tmp_path / "run"
    build_run(run)
    raws = lines_of(run)
    for k in range(len(raws)):
        write_lines(run, raws[:k])
        report = verify_run(run)
        assert report.status == INCOMPLETE, (k, report.as_text())
        assert report.problems == [] and report.exit_code == 3
        assert not report.ended


@FAST
@given(data=st.data())
def test_a_record_cut_anywhere_is_incomplete_never_tampered(signed, data):
    raw = (signed / "record.jsonl").read_bytes()
    cut = data.draw(st.integers(1, len(raw) - 1), label="cut")
    ends = [i for i in range(len(raw)) if raw[i : i + 1] == b"\n"]
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_run(signed, tmp)
        (run / "record.jsonl").write_bytes(raw[:cut])
        report = verify_run(run)
        assert report.problems == [], report.as_text()
        if cut == ends[-2] + 1:  # just after the end line: ended, signature gone
            assert report.status == UNSIGNED
        else:
            assert report.status == INCOMPLETE, report.as_text()


def test_a_partial_last_line_is_incomplete_with_a_note(tmp_path):
    run = tmp_path / "run"
    build_run(run, end=False)
    raw = (run / "record.jsonl").read_bytes()
    measurement = json.loads(lines_of(run)[2])
    (run / "record.jsonl").write_bytes(raw + canonical(measurement)[:57])
    report = verify_run(run)
    assert report.status == INCOMPLETE and report.problems == []
    assert any("is partial (57 bytes, no newline)" in n for n in report.notes), report.notes
    assert "partial" in report.as_text()
    # a line that got all but its newline
    (run / "record.jsonl").write_bytes(raw[:-1])
    report = verify_run(run)
    assert report.status == INCOMPLETE and report.problems == []
    assert any("lacks its newline" in n for n in report.notes)
    # neither can be appended to (a new line would be glued to the fragment)
    with pytest.raises(RecordError, match="partial"):
        RunRecord.open(run)


@pytest.mark.parametrize(
    "text, torn",
    [
        ('{"a', True),
        ('{"a":1', True),
        ('{"a":1.', True),
        ('{"a":1.5e-', True),
        ('{"a":-', True),
        ('{"a":tr', True),
        ('{"a":"x\\u00', True),
        ('{"a":[1,{"b":null},', True),
        ('{"a":1.e', False),
        ('{"a":1}', False),
        ('{"a":1}x', False),
        ('{"a":1} ', False),
        ('{"a" :1', False),
        ('{"a":trux', False),
        ('["a"', False),
        ('{"a":"\x01', False),
        ('{"a":01', False),
    ],
)
def test_torn_line_is_a_prefix_of_canonical_json(text, torn):
    assert is_torn_line(text.encode()) is torn


def test_a_run_killed_mid_way_keeps_every_completed_measurement(tmp_path):
    """The child writes measurements as fast as it can, says how many it has written, and is
    SIGKILLed while still writing: everything it reported is there, and the run is incomplete."""
    run = tmp_path / "run"
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from rig.evidence.measurement import Measurement
        from rig.evidence.writer import RunRecord
        rec = RunRecord({str(run)!r})
        rec.start({{"model": "TT-890", "serial": "KILL"}})
        i = 0
        while True:
            rel, sha = rec.add_trace(f"t{{i}}", f"t,f\\n0,{{i}}\\n" * 50)
            rec.add(Measurement("TT-PERF-01", "cl", "f", float(i), "N", 0.0, None, None,
                                "PASS", trace=rel, trace_sha256=sha))
            i += 1
            if i in (5, 10, 20):
                print(i, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):
            written = int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    report = verify_run(run)
    assert report.status == INCOMPLETE, report.as_text()
    assert report.problems == []
    values = [json.loads(x)["value"] for x in lines_of(run) if b'"kind":"measurement"' in x]
    assert values[:written] == [float(i) for i in range(written)]
    assert len(values) >= written


# --------------------------------------------------------------------------- keys


def test_the_station_key_is_created_owner_only_and_reused(keys):
    key = station_key()
    path = keys / "station_ed25519.pem"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert public_key_hex(station_key()) == public_key_hex(key)


def test_a_key_readable_by_others_is_refused(keys):
    station_key()
    path = keys / "station_ed25519.pem"
    os.chmod(path, 0o644)
    with pytest.raises(KeyPermissionError) as e:
        station_key()
    assert str(path) in str(e.value) and "0o644" in str(e.value)
    os.chmod(path, 0o400)  # owner-only, read-only: fine
    station_key()


def test_reviewer_keys_by_name_or_path(keys, tmp_path):
    a = reviewer_key("J. Doe")
    assert (keys / "reviewer-j-doe_ed25519.pem").is_file()
    assert public_key_hex(reviewer_key("J. Doe")) == public_key_hex(a)
    assert public_key_hex(reviewer_key("R. Roe")) != public_key_hex(a)
    given_path = tmp_path / "elsewhere" / "mine.pem"
    b = reviewer_key("J. Doe", given_path)
    assert stat.S_IMODE(given_path.stat().st_mode) == 0o600
    assert public_key_hex(b) != public_key_hex(a)
    c = reviewer_key("P. Word", tmp_path / "enc.pem", passphrase=b"secret words")
    assert b"ENCRYPTED" in (tmp_path / "enc.pem").read_bytes()
    assert public_key_hex(
        reviewer_key("P. Word", tmp_path / "enc.pem", passphrase=b"secret words")
    ) == public_key_hex(c)


# --------------------------------------------------------------------------- signing


def test_a_reviewer_signature_after_the_station_verifies_and_names_the_reviewer(
    signed, tmp_path, keys
):
    run = copy_run(signed, tmp_path)
    line = sign_run(run, reviewer_key("J. Doe"), name="J. Doe", meaning="approved", role="reviewer")
    assert line["kind"] == "signature" and line["name"] == "J. Doe"
    report = verify_run(run)
    assert report.status == VALID, report.as_text()
    _, reviewer = report.signatures
    assert (reviewer.name, reviewer.meaning, reviewer.role, reviewer.valid) == (
        "J. Doe",
        "approved",
        "reviewer",
        True,
    )
    assert "'J. Doe'" in report.as_text() and "approved" in report.as_text()
    # the reviewer's signature binds the station's: altering that line breaks both
    raws = lines_of(run)
    write_lines(run, [*raws[:-2], rewrite(raws[-2], name="X"), raws[-1]])
    report = _assert_tampered(run)
    assert not any(s.valid for s in report.signatures)


def test_signing_refuses_bad_meanings_and_unfinished_or_altered_records(signed, tmp_path, keys):
    run = copy_run(signed, tmp_path)
    key = reviewer_key("J. Doe")
    with pytest.raises(SigningError, match="meaning"):
        sign_run(run, key, name="J. Doe", meaning="recorded", role="reviewer")
    with pytest.raises(SigningError, match="meaning"):
        sign_run(run, key, name="J. Doe", meaning="approved", role="station")
    with pytest.raises(SigningError, match="role"):
        sign_run(run, key, name="J. Doe", meaning="approved", role="boss")
    with pytest.raises(SigningError, match="name"):
        sign_run(run, key, name="  ", meaning="approved", role="reviewer")
    unfinished = tmp_path / "unfinished"
    build_run(unfinished, end=False)
    with pytest.raises(SigningError, match="incomplete"):
        sign_run(unfinished, key, name="J. Doe", meaning="reviewed", role="reviewer")
    raws = lines_of(run)
    write_lines(run, [*raws[:3], rewrite(raws[3], value=1.0), *raws[4:]])
    with pytest.raises(SigningError, match=r"altered.*'value'"):
        sign_run(run, key, name="J. Doe", meaning="approved", role="reviewer")
    assert lines_of(run)[-1] == raws[-1]  # nothing was appended


def test_a_record_changed_on_disk_is_not_appended_to(tmp_path):
    rec = build_run(tmp_path / "run", end=False)
    other = RunRecord.open(tmp_path / "run")
    other.event("from another writer")
    with pytest.raises(RecordError, match="changed on disk"):
        rec.end("PASS")
    assert verify_run(tmp_path / "run").problems == []
    with pytest.raises(RecordError, match=r"RunRecord\.open"):
        RunRecord(tmp_path / "run").start({"model": "again"})
    with pytest.raises(ValueError, match="fields"):
        other.event("x", fields={"a": 1})


def test_reopened_record_continues_the_chain(tmp_path):
    build_run(tmp_path / "run", end=False)
    rec = RunRecord.open(tmp_path / "run")
    assert rec.header["serial"] == "S1" and not rec.ended
    assert len(rec.measurements) == 4 and rec.requirement_verdicts == {"TT-PERF-01": "FAIL"}
    rec.end("FAIL")
    assert verify_run(tmp_path / "run").status == UNSIGNED


# --------------------------------------------------------------------------- commands


def test_cmd_verify_exit_codes(signed, tmp_path, capsys):
    def code(run):
        return cmd_verify(argparse.Namespace(run=str(run)))

    assert code(signed) == 0
    assert "VALID" in capsys.readouterr().out
    assert code(tmp_path / "nothing") == 2
    assert "error" in capsys.readouterr().err
    unsigned = tmp_path / "unsigned"
    build_run(unsigned)
    assert code(unsigned) == 4
    incomplete = tmp_path / "incomplete"
    build_run(incomplete, end=False)
    assert code(incomplete) == 3
    raws = lines_of(unsigned)
    write_lines(unsigned, [*raws[:2], rewrite(raws[2], unit="kN"), *raws[3:]])
    assert code(unsigned) == 1
    assert "field 'unit' altered" in capsys.readouterr().out


def test_cmd_sign(signed, tmp_path, keys, capsys):
    run = copy_run(signed, tmp_path)

    def sign(**kw):
        return cmd_sign(argparse.Namespace(**{"run": str(run), "key": None, **kw}))

    assert sign(name="J. Doe", meaning="approved") == 0
    out = capsys.readouterr().out
    assert "signed" in out and "J. Doe" in out and "VALID" in out
    assert verify_run(run).signatures[-1].name == "J. Doe"
    assert sign(name="J. Doe", meaning="recorded") == 2  # a person does not sign as a station
    assert sign(name="J. Doe", meaning="approved", run=str(tmp_path / "none")) == 2
    os.chmod(keys / "reviewer-j-doe_ed25519.pem", 0o640)
    assert sign(name="J. Doe", meaning="approved") == 2
    assert "0o640" in capsys.readouterr().err
    incomplete = tmp_path / "incomplete"
    build_run(incomplete, end=False)
    assert sign(name="R. Roe", meaning="reviewed", run=str(incomplete)) == 1
