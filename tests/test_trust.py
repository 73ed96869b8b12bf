"""Trust anchored outside the record: enrolled keys (UNTRUSTED otherwise), the run's chain head
and signatures anchored in the line's database (a rewritten-and-re-signed record and a deleted
reviewer signature are TAMPERED against it), and people's roles (21 CFR Part 11 11.10(d), (g))."""

from __future__ import annotations

import json
import shutil

import pytest
from test_verify import STATION_ID, build_run

from rig.cli import main
from rig.evidence.format import FIELDS, GENESIS, canonical, field_digests, line_hash
from rig.evidence.signature import fingerprint
from rig.evidence.signing import public_key_hex, reviewer_key, sign_run, station_key
from rig.evidence.trust import TrustError, load_trust
from rig.evidence.verify import TAMPERED, UNTRUSTED, VALID, verify_run
from rig.outputs.results import ResultsDB, ResultsError, anchoring_for


@pytest.fixture
def keys(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("RIG_KEY_DIR", str(d))
    monkeypatch.delenv("RIG_TRUST", raising=False)
    monkeypatch.delenv("RIG_DB_URL", raising=False)
    return d


def fp(key) -> str:
    return fingerprint(public_key_hex(key))


def write_trust(path, *, station=None, people=()):
    text = '[line]\nid = "LINE2"\n'
    if station is not None:
        text += f'\n[[station]]\nid = "{STATION_ID}"\nkey = "{station}"\n'
    for name, role, key in people:
        text += f'\n[[person]]\nname = "{name}"\nrole = "{role}"\n'
        if key:
            text += f'key = "{key}"\n'
    path.write_text(text)
    return path


@pytest.fixture
def line(tmp_path, keys):
    """A signed run, the station's and three people's keys, the trust file enrolling them."""
    run = tmp_path / "run"
    rec = build_run(run)
    st = station_key()
    sign_run(rec, st, name=STATION_ID, meaning="recorded", role="station")
    people = {
        "Olga Operator": ("operator", reviewer_key("Olga Operator")),
        "Ted Engineer": ("test engineer", reviewer_key("Ted Engineer")),
        "Quinn QA": ("QA", reviewer_key("Quinn QA")),
    }
    trust = write_trust(
        tmp_path / "trust.toml",
        station=fp(st),
        people=[(n, role, fp(k)) for n, (role, k) in people.items()],
    )
    return run, trust, people


# --- the trust file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[station]]\nid = "B1"\nkey = "abc"\n', r"station\[0\].key = 'abc': expected a key"),
        ('[[station]]\nkey = "SHA256:' + "0" * 64 + '"\n', r"station\[0\].id: expected"),
        ('[[person]]\nname = "A"\nrole = "boss"\n', r"person\[0\].role = 'boss' \(A\): expected"),
        ('[[person]]\nname = "A"\nrole = "QA"\nhat = 1\n', r"person\[0\]: unknown key 'hat'"),
        ("[stations]\n", r"unknown key 'stations'"),
        ('[[station]]\nid = "B1"\nkey = "' + "a" * 64 + '"\nrevoked = "soon"\n', "expected a date"),
        ("x = [", "not valid TOML"),
    ],
)
def test_a_bad_trust_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "trust.toml"
    path.write_text(text)
    with pytest.raises(TrustError, match=message) as e:
        load_trust(path)
    assert str(path) in str(e.value)
    with pytest.raises(TrustError, match="does not exist"):
        load_trust(tmp_path / "none.toml")


# --- UNTRUSTED ------------------------------------------------------------------------------


def test_a_record_signed_by_a_key_not_enrolled_is_untrusted(line, tmp_path, capsys):
    run, trust, _ = line
    assert verify_run(run, trust=load_trust(trust)).status == VALID
    assert main(["verify", str(run), "--trust-file", str(trust)]) == 0
    # the same record re-signed by another station key: it verifies, but the line never
    # enrolled that key
    forged = tmp_path / "forged"
    rec = build_run(forged)
    sign_run(
        rec,
        station_key(tmp_path / "forger.pem"),
        name=STATION_ID,
        meaning="recorded",
        role="station",
    )
    capsys.readouterr()
    assert verify_run(forged).status == VALID  # the record alone cannot tell
    assert main(["verify", str(forged), "--trust-file", str(trust)]) == 5
    out = capsys.readouterr().out
    assert out.startswith("UNTRUSTED")
    assert "is not an enrolled station key" in out and str(trust) in out
    # a station key enrolled for another station is not this station's
    other = write_trust(tmp_path / "other.toml", station=fp(station_key()))
    other.write_text(other.read_text().replace(STATION_ID, "LINE2-BENCH9"))
    report = verify_run(run, trust=load_trust(other))
    assert report.status == UNTRUSTED
    assert "enrolled for station 'LINE2-BENCH9', not 'TEST-STATION'" in report.as_text()


def test_rig_verify_help_lists_untrusted(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "5 UNTRUSTED" in capsys.readouterr().out


# --- anchors ---------------------------------------------------------------------------------


def _rechain(raws: list[bytes], edit) -> list[bytes]:
    """The forger's rewrite: every line parsed, edited, its digests and chain recomputed."""
    out, prev = [], GENESIS
    for raw in raws:
        obj = json.loads(raw)
        edit(obj)
        obj["prev"] = prev
        obj.pop(FIELDS, None)
        obj[FIELDS] = field_digests(obj)
        data = canonical(obj)
        out.append(data)
        prev = line_hash(data)
    return out


def test_a_rewritten_and_resigned_record_is_tampered_against_the_database(line, tmp_path, capsys):
    run, trust, _ = line
    db_path = str(tmp_path / "line.sqlite")
    with ResultsDB(db_path) as db:
        db.ingest(run)  # what the results sink does when the run ends: anchors it
    assert main(["verify", str(run), "--db", db_path, "--trust-file", str(trust)]) == 0
    # rewrite a value, rebuild the chain and the digests, re-sign with the station's own key
    # (stolen, or the station's owner cheating): the header stays byte for byte
    raws = (run / "record.jsonl").read_bytes().splitlines()
    end = next(i for i, r in enumerate(raws) if json.loads(r)["kind"] == "end")

    def edit(obj):
        if obj["kind"] == "measurement" and obj["value"] == 103.0:
            obj["value"] = 101.0

    forged = tmp_path / "forged"
    shutil.copytree(run, forged)
    (forged / "record.jsonl").write_bytes(
        b"".join(r + b"\n" for r in _rechain(raws[: end + 1], edit))
    )
    sign_run(forged, station_key(), name=STATION_ID, meaning="recorded", role="station")
    assert verify_run(forged, trust=load_trust(trust)).status == VALID  # file and trust alone: fine
    capsys.readouterr()
    assert main(["verify", str(forged), "--db", db_path, "--trust-file", str(trust)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED")
    assert f"the end line (seq {end}) differs from the one anchored in {db_path}" in out
    # and the database refuses to take the rewritten record in place of the anchored one
    with ResultsDB(db_path) as db, pytest.raises(ResultsError, match="contradicts the anchors"):
        db.ingest(forged)


def test_a_whole_new_record_for_an_anchored_unit_is_tampered(line, tmp_path, capsys):
    run, _, _ = line
    db_path = str(tmp_path / "line.sqlite")
    with ResultsDB(db_path) as db:
        db.ingest(run)
    header = json.loads((run / "record.jsonl").read_bytes().splitlines()[0])
    raws = (run / "record.jsonl").read_bytes().splitlines()
    end = next(i for i, r in enumerate(raws) if json.loads(r)["kind"] == "end")

    def edit(obj):
        if obj["kind"] == "header":
            obj["operator"] = "someone"  # the header too: its hash is not the anchored one
        assert obj.get("started", header["started"]) == header["started"]

    forged = tmp_path / "forged"
    shutil.copytree(run, forged)
    (forged / "record.jsonl").write_bytes(
        b"".join(r + b"\n" for r in _rechain(raws[: end + 1], edit))
    )
    sign_run(forged, station_key(), name=STATION_ID, meaning="recorded", role="station")
    anchoring = anchoring_for(db_path, forged)
    report = verify_run(forged, anchoring=anchoring)
    assert report.status == TAMPERED
    assert "under another header: this record's header was rewritten" in report.as_text()
    # a run the database never saw is not vouched for by the line
    fresh = tmp_path / "fresh"
    rec = build_run(fresh, serial="S9")
    sign_run(rec, station_key(), name=STATION_ID, meaning="recorded", role="station")
    report = verify_run(fresh, anchoring=anchoring_for(db_path, fresh))
    assert report.status == UNTRUSTED and "not anchored in" in report.as_text()


def test_a_deleted_reviewer_signature_is_found_against_the_database(line, tmp_path, capsys):
    run, trust, _ = line
    db_path = str(tmp_path / "line.sqlite")
    with ResultsDB(db_path) as db:
        db.ingest(run)
    # QA approves; `rig sign --db` anchors the signature
    args = ["sign", str(run), "--name", "Quinn QA", "--meaning", "approved"]
    assert main([*args, "--trust-file", str(trust), "--db", db_path]) == 0
    assert "anchored in" in capsys.readouterr().out
    assert main(["verify", str(run), "--db", db_path, "--trust-file", str(trust)]) == 0
    # the approval is cut off the end of the record: the file alone still verifies VALID
    raws = (run / "record.jsonl").read_bytes().splitlines(keepends=True)
    (run / "record.jsonl").write_bytes(b"".join(raws[:-1]))
    assert verify_run(run, trust=load_trust(trust)).status == VALID
    capsys.readouterr()
    assert main(["verify", str(run), "--db", db_path]) == 1
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED")
    assert f"the signature by 'Quinn QA' (approved) at seq {len(raws) - 1}" in out
    assert "is missing: deleted" in out


def test_verify_db_needs_an_existing_database(line, tmp_path, capsys):
    run, _, _ = line
    assert main(["verify", str(run), "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no results database" in capsys.readouterr().err


# --- roles --------------------------------------------------------------------------------------


def test_only_qa_signs_approved(line, capsys):
    run, trust, _ = line
    args = ["sign", str(run), "--trust-file", str(trust), "--meaning"]
    assert main([*args, "approved", "--name", "Ted Engineer"]) == 1
    err = capsys.readouterr().err
    assert "'Ted Engineer' may not sign 'approved': needs role QA, holds role test engineer" in err
    assert main([*args, "reviewed", "--name", "Olga Operator"]) == 1
    err = capsys.readouterr().err
    assert "needs role test engineer or QA, holds role operator" in err
    assert main([*args, "reviewed", "--name", "Nobody Known"]) == 1
    assert "'Nobody Known' is not enrolled" in capsys.readouterr().err
    assert main([*args, "reviewed", "--name", "Ted Engineer"]) == 0
    assert main([*args, "approved", "--name", "Quinn QA"]) == 0


def test_verify_checks_each_signers_role_for_the_meaning(line, tmp_path):
    run, trust, people = line
    # signed without the trust file (another machine): an operator "approved" it
    sign_run(
        run, people["Olga Operator"][1], name="Olga Operator", meaning="approved", role="reviewer"
    )
    report = verify_run(run, trust=load_trust(trust))
    assert report.status == UNTRUSTED
    assert "'Olga Operator' may not sign 'approved': needs role QA, holds role operator" in (
        report.as_text()
    )
    # a signature under another person's name with one's own key
    run2 = tmp_path / "run2"
    rec = build_run(run2)
    sign_run(rec, station_key(), name=STATION_ID, meaning="recorded", role="station")
    sign_run(run2, people["Ted Engineer"][1], name="Quinn QA", meaning="approved", role="reviewer")
    report = verify_run(run2, trust=load_trust(trust))
    assert report.status == UNTRUSTED
    assert "its key is enrolled for 'Ted Engineer', not 'Quinn QA'" in report.as_text()


def test_only_enrolled_people_start_and_only_a_test_engineer_overrides(line, tmp_path, capsys):
    _, trust, _ = line
    base = ["certify", "TT-890", "--serial", "890001", "--reports", str(tmp_path / "rep")]
    base += ["--trust-file", str(trust)]
    assert main([*base, "--operator", "Mallory"]) == 2
    out = capsys.readouterr().out
    assert "'Mallory' is not enrolled" in out and "needs role operator or test engineer" in out
    assert main([*base, "--operator", "Quinn QA"]) == 2
    assert "holds role QA" in capsys.readouterr().out
    assert (
        main([*base, "--operator", "Olga Operator", "--calibration-override", "cal lab late"]) == 2
    )
    out = capsys.readouterr().out
    assert "'Olga Operator' may not run with --calibration-override" in out
    assert "needs role test engineer, holds role operator" in out
    assert not (tmp_path / "rep").exists()  # refused before anything ran


def test_a_calibration_override_is_signed_by_a_test_engineer(line, tmp_path, capsys):
    from rig.evidence.measurement import Measurement
    from rig.evidence.writer import RunRecord

    _, trust, _ = line
    rec = RunRecord(tmp_path / "override")
    rec.start(
        {
            "model": "TT-890",
            "serial": "S2",
            "operator": "Ted Engineer",
            "station": {"id": STATION_ID},
            "calibration_override": {"reason": "cal lab late", "expired": ["LC-2000"]},
        }
    )
    rec.add(Measurement("TT-PERF-01", "c", "x", 1.0, "N", 0.0, 2.0, None, "PASS"))
    rec.conclude_requirement("TT-PERF-01", "PASS")
    rec.end("PASS", complete=True, not_run=[])
    sign_run(rec, station_key(), name=STATION_ID, meaning="recorded", role="station")
    report = verify_run(rec.directory, trust=load_trust(trust))
    assert report.status == UNTRUSTED
    assert "calibration override (reason 'cal lab late') is not signed" in report.as_text()
    args = ["sign", str(rec.directory), "--trust-file", str(trust)]
    args += ["--meaning", "calibration override", "--name"]
    assert main([*args, "Quinn QA"]) == 1
    assert "needs role test engineer, holds role QA" in capsys.readouterr().err
    assert main([*args, "Ted Engineer"]) == 0
    assert verify_run(rec.directory, trust=load_trust(trust)).status == VALID
    # a run without an override has nothing of the kind to sign
    run, _, _ = line
    assert (
        main(["sign", str(run), "--meaning", "calibration override", "--name", "Ted Engineer"]) == 1
    )
    assert "ran without a calibration override" in capsys.readouterr().err


def test_a_backfill_names_a_rewritten_record_and_takes_the_others(line, tmp_path, capsys):
    run, _, _ = line
    reports = tmp_path / "reports"
    reports.mkdir()
    shutil.copytree(run, reports / "a-run")
    db_path = str(tmp_path / "line.sqlite")
    with ResultsDB(db_path) as db:
        db.ingest(reports / "a-run")
    raws = (reports / "a-run" / "record.jsonl").read_bytes().splitlines()
    end = next(i for i, r in enumerate(raws) if json.loads(r)["kind"] == "end")

    def edit(obj):
        if obj["kind"] == "measurement" and obj["value"] == 103.0:
            obj["value"] = 101.0

    forged = _rechain(raws[: end + 1], edit)
    (reports / "a-run" / "record.jsonl").write_bytes(b"".join(r + b"\n" for r in forged))
    sign_run(reports / "a-run", station_key(), name=STATION_ID, meaning="recorded", role="station")
    other = tmp_path / "other"
    rec = build_run(other, serial="S7")
    sign_run(rec, station_key(), name=STATION_ID, meaning="recorded", role="station")
    shutil.copytree(other, reports / "b-run")
    assert main(["stats", "TT-890", "--db", db_path, "--reports", str(reports), "--ingest"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("not ingested: ") and "contradicts the anchors" in err
    with ResultsDB(db_path) as db:
        assert sorted(r.serial for r in db.runs()) == ["S1", "S7"]
