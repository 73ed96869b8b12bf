"""The certificate of conformance: PDF and HTML from a synthetic TT-890 run record."""

import base64
import hashlib
import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pypdf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rig import __version__
from rig.certificate import BANNER, build_certificate, write_certificate
from rig.check import worst
from rig.evidence.measurement import evaluate
from rig.evidence.signature import fingerprint
from rig.evidence.signing import public_key_hex, sign_run
from rig.evidence.writer import RunRecord
from rig.plots import plot_trace
from rig.profiles import load_profile
from rig.trace import Trace

PROFILE = load_profile("TT-890")
STARTED = "2026-11-21T06:33:11.698+00:00"
NODE = {
    "settled_force": "suites/performance/test_traction.py::test_settled_force",
    "safety_stop": "suites/safety/test_stops.py::test_safety_stop",
}
STATION_KEY = Ed25519PrivateKey.generate()
REVIEWER_KEY = Ed25519PrivateKey.generate()
REVIEWER = "Dana Okafor"
OVERRIDE = "LC out for repair, line trial approved by J. Smith"
EXPIRED = "force_meter LC-2000 LC0142 calibration due 2026-11-01"


def _header(**extra):
    header = {
        "model": "TT-890",
        "serial": "890123",
        "operator": "A. Tester",
        "rig_version": __version__,
        "source_revision": "ea00879c0ffe",
        "requirements_sha256": PROFILE.requirements_sha256,
        "profile_sha256": PROFILE.sha256,
        "started": STARTED,
        "station": {"id": "BENCH-07", "emulated": False, "source": "/etc/rig/bench-07.toml"},
        "instruments": {
            "force_meter": {
                "idn": "BENCHWORKS,LC-2000,LC0142,1.4",
                "calibration_date": "2026-08-23",
                "calibration_due": "2027-08-23",
            },
            "actuators": {
                "idn": "BENCHWORKS,ACT-3,ACT0007,2.0",
                "calibration_date": "2026-08-23",
                "calibration_due": "2027-08-23",
            },
        },
        "table": {"serial": 890123, "firmware": 210, "icd_version": 100, "kind": 1},
    }
    header.update(extra)
    return header


def _traces():
    """Two shapes: a force step, and an e-stop force decay with its instants marked."""
    rate, pre = 100.0, 50
    t = (np.arange(600) - pre) / rate
    step = np.minimum(np.clip(t, 0, None) * 100.0, 300.0)
    decay = np.where(t < 0.02, 300.0, 300.0 * np.exp(-(t - 0.02) / 0.08))

    def trace(force):
        return Trace.from_samples({"FORC": force}, rate=rate, pretrigger=pre, units={"FORC": "N"})

    return {
        "step": (trace(step), {"within limit": 2.9}),
        "stop": (trace(decay), {"reaction": 0.02, "release": 0.41}),
    }


@pytest.fixture(scope="module")
def pngs():
    """(csv, png) per (requirement, label): drawn once per shape (matplotlib is the slow part)."""
    drawn = {
        shape: (
            trace.to_csv(),
            plot_trace(
                trace, channel="FORC", title=f"TT-890 {shape}", marks=marks, lines={"limit": 15.0}
            ),
        )
        for shape, (trace, marks) in _traces().items()
    }
    out = {}
    for req in PROFILE.requirements:
        if req.test == "safety_stop":
            out[(req.id, "run1")] = out[(req.id, "run2")] = drawn["stop"]
        else:
            out[(req.id, "step")] = drawn["step"]
    return out


def _passing(spec, env):
    if spec.equals is not None:
        return spec.equals
    low, high = spec.limits(env)
    if low is not None and high is not None:
        return low + 0.6 * (high - low)
    if high is not None:
        return high * 0.4 if high > 0 else high - 1.0
    return low + 1.0 + abs(low) * 0.1


def make_run(root, pngs, *, header=None, end="PASS", skip=(), sign=True):
    """A run directory like `rig certify` writes, for every TT-890 requirement not in `skip`."""
    rec = RunRecord(Path(root))
    rec.start(header or _header())
    for req in PROFILE.requirements:
        if req.id in skip:
            continue
        refs = []
        for (rid, label), (csv, png) in pngs.items():
            if rid == req.id:
                refs.append(rec.add_trace(f"{rid}-{label}", csv))
                (rec.directory / "traces" / f"{rid}-{label}.png").write_bytes(png)
        for spec in req.measurements:
            env = {v: 300.0 for v in spec.variables}
            if req.id == "TT-PERF-01":
                # two readings: the certificate shows the worse one
                values = [300.4, 302.5]
            else:
                # one reading per trace: the stops run twice, each with its own trace
                values = [_passing(spec, env)] * len(refs)
            for i, value in enumerate(values):
                trace, sha = refs[i % len(refs)]
                rec.add(
                    evaluate(
                        spec,
                        req.id,
                        req.clause,
                        value,
                        env,
                        bindings=env,
                        repeat=i if len(refs) > 1 else None,
                        trace=trace,
                        trace_sha256=sha,
                    )
                )
        verdict = "PASS" if all(m.verdict == "PASS" for m in rec.measurements) else "FAIL"
        node = NODE.get(req.test, f"suites/x/test_{req.test}.py::test_{req.test}")
        rec.conclude_requirement(req.id, verdict, test=f"{node}[{req.id}]")
        rec.event("safe state confirmed", state="IDLE")
    if end:
        missing = [r.id for r in PROFILE.requirements if r.id in skip]
        rec.end(end, complete=True, not_run=missing, unsafe=None, rig_version=__version__)
    if sign:
        # the station signs at the end of its run, a reviewer later from the run directory
        sign_run(rec, STATION_KEY, name="Station BENCH-07", meaning="recorded", role="station")
        rec.reviewer = sign_run(
            rec.directory, REVIEWER_KEY, name=REVIEWER, meaning="approved", role="reviewer"
        )
    return rec


def _norm(text):
    # extraction breaks lines inside table cells; zero-width spaces let long ids wrap
    return re.sub(r"\s+", " ", text.replace("\u200b", "")).strip()


def _pdf_pages(path):
    reader = pypdf.PdfReader(str(path))
    return [_norm(page.extract_text()) for page in reader.pages]


def _section(text, start, stop):
    return text[text.index(start) : text.index(stop)]


@pytest.fixture(scope="module")
def passing(tmp_path_factory, pngs):
    run = tmp_path_factory.mktemp("pass") / "TT-890-890123"
    rec = make_run(run, pngs)
    html_path, pdf_path = write_certificate(run)
    return run, rec, html_path, pdf_path


def test_pdf_holds_every_requirement_with_its_worst_value_and_verdict(passing):
    _, rec, _, pdf = passing
    pages = _pdf_pages(pdf)
    assert len(pages) > 1
    text = " ".join(pages)
    assert "Certificate of conformance" in pages[0]
    assert "Overall verdict: PASS" in pages[0]
    assert "Model TT-890, serial 890123" in pages[0]
    table = _section(text, "3. Requirements", "4. Traceability")
    ids = [r.id for r in PROFILE.requirements]
    for i, rid in enumerate(ids):
        start = table.index(f"{rid} ")
        stop = table.index(f"{ids[i + 1]} ") if i + 1 < len(ids) else len(table)
        row = table[start:stop]
        assert "PASS" in row, rid
        for m in worst([m for m in rec.measurements if m.requirement == rid]).values():
            assert f"{m.name} = {m.value_text()}" in row, (rid, m.name)
            assert m.limit_text() in row, (rid, m.name)
    assert "settled_force = 302.5 N" in table  # the worse of the two readings
    assert "settled_force = 300.4 N" not in table


def test_pdf_identity_station_and_instruments(passing):
    text = " ".join(_pdf_pages(passing[3]))
    ident = _section(text, "1. Unit identity", "3. Requirements")
    for expected in (
        "890123",
        "210 (v2.10)",
        "A. Tester",
        STARTED,
        "ea00879c0ffe",
        PROFILE.sha256,
        PROFILE.requirements_sha256,
        "BENCH-07",
        "BENCHWORKS,LC-2000,LC0142,1.4",
        "2027-08-23",
        "Emulated bench no",
    ):
        assert expected in ident, expected


def test_pdf_traceability_matrix(passing):
    text = " ".join(_pdf_pages(passing[3]))
    matrix = _section(text, "4. Traceability", "5. Plots")
    for req in PROFILE.requirements:
        assert req.id in matrix
        assert _norm(req.clause) in matrix, req.clause
    assert "suites/safety/test_stops.py::test_safety_stop[TT-SAF-01]" in matrix
    assert "reaction_time (2)" in matrix


def test_pdf_plots_signature_and_footer(passing):
    run, rec, _, pdf = passing
    pages = _pdf_pages(pdf)
    text = " ".join(pages)
    plots = _section(text, "5. Plots", "6. Signatures")
    for png in sorted((run / "traces").glob("*.png")):
        assert png.name in plots
    assert plots.index("TT-SAF-01 e-stop reaction and release") < plots.index("TT-SAF-01-run1.png")
    signatures = text[text.index("6. Signatures") :]
    for value in (
        REVIEWER,
        "approved",
        "reviewer",
        rec.reviewer["signed_at"],
        fingerprint(public_key_hex(REVIEWER_KEY)),
        "Station BENCH-07",
        "recorded",
        fingerprint(public_key_hex(STATION_KEY)),
    ):
        assert value in signatures, value
    assert signatures.count("verifies against its public key") == 2
    assert "Record check (rig verify) VALID" in text
    assert "Not signed" not in text
    digest = hashlib.sha256((run / "record.jsonl").read_bytes()).hexdigest()
    for n, page in enumerate(pages, 1):
        assert f"page {n} of {len(pages)}" in page
        assert digest in page
        assert "TT-890 serial 890123" in page
    assert BANNER not in text


def test_html_is_self_contained_with_every_requirement_and_plot(passing):
    run, _, html_path, _ = passing
    raw = html_path.read_text()
    page = html.unescape(raw)
    for req in PROFILE.requirements:
        assert req.id in page
        assert req.clause in page
    images = re.findall(r'src="([^"]+)"', raw)
    assert len(images) == len(list((run / "traces").glob("*.png")))
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "<link" not in raw and "<script" not in raw
    assert "Overall verdict: PASS" in page
    assert REVIEWER in page and "approved" in page
    assert "settled_force = 302.5 N" in page
    assert BANNER not in page


def test_incomplete_run_is_never_pass(tmp_path, pngs):
    make_run(tmp_path, pngs, end=None, sign=False)
    with open(tmp_path / "record.jsonl", "ab") as f:
        f.write(b'{"kind":"requirement","requ')  # torn by a crash mid-write
    assert build_certificate(tmp_path).verdict == "INCOMPLETE"
    html_path, pdf = write_certificate(tmp_path)
    pages = _pdf_pages(pdf)
    assert "Overall verdict: INCOMPLETE" in pages[0]
    assert "did not reach its end line" in pages[0]
    assert all("Overall verdict: PASS" not in p and "- PASS" not in p for p in pages)
    assert all("- INCOMPLETE page" in p for p in pages)  # footer on every page
    assert "Not signed" in pages[-1]
    page = html.unescape(html_path.read_text())
    assert "Overall verdict: INCOMPLETE" in page
    assert "Overall verdict: PASS" not in page


def test_calibration_override_banner_on_every_page(tmp_path, pngs):
    # as the plugin writes it when started with --calibration-override
    header = _header(
        calibration_override={"reason": OVERRIDE, "expired": [EXPIRED]},
        not_valid_for_release="NOT VALID FOR PRODUCT RELEASE: run under a calibration override",
    )
    header["instruments"]["force_meter"]["calibration_due"] = "2026-11-01"
    make_run(tmp_path, pngs, header=header)
    cert = build_certificate(tmp_path)
    assert cert.release_blockers == [f"calibration override: {OVERRIDE} (expired {EXPIRED})"]
    html_path, pdf = write_certificate(tmp_path)
    pages = _pdf_pages(pdf)
    assert len(pages) > 1
    for page in pages:
        assert BANNER in page
        assert f"calibration override: {OVERRIDE}" in page
    page = html.unescape(html_path.read_text())
    assert BANNER in page and OVERRIDE in page


def test_emulated_bench_and_altered_record_block_release(tmp_path, pngs):
    emulated = _header(
        station={"id": "EMULATED-TT-890", "emulated": True, "source": "emulated bench"},
        emulator={"scale": 20.0, "defects": ["estop_slow"]},
    )
    make_run(tmp_path, pngs, header=emulated)
    cert = build_certificate(tmp_path)
    assert cert.verdict == "PASS"
    assert not cert.valid_for_release
    assert "estop_slow" in cert.banner_text
    # change one value after the run: the chain no longer holds
    path = tmp_path / "record.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"value":302.5', b'"value":301.5', 1))
    cert = build_certificate(tmp_path)
    assert cert.verdict == "INVALID"
    assert "altered after they were written" in cert.banner_text
    assert "TT-PERF-01 settled_force" in cert.banner_text  # rig verify names the line


def test_requirement_not_run_fails_the_unit(tmp_path, pngs):
    make_run(tmp_path, pngs, skip=("TT-SAF-08",), end="FAIL")
    _, pdf = write_certificate(tmp_path)
    text = " ".join(_pdf_pages(pdf))
    assert "Overall verdict: FAIL" in text
    table = _section(text, "3. Requirements", "4. Traceability")
    assert "NOT RUN" in table[table.index("TT-SAF-08 ") :]
    assert "Not run: TT-SAF-08" in text


def test_pdf_pages_stay_within_their_margins(passing, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    from PIL import Image

    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", str(passing[3]), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) > 1
    for png in pages:
        img = np.asarray(Image.open(png).convert("L"))
        px_per_mm = img.shape[1] / 210.0
        # the text block is 16 mm from each edge: 14 mm strips must stay blank
        strip = int(14 * px_per_mm)
        assert img[:, :strip].min() > 250, png.name
        assert img[:, -strip:].min() > 250, png.name


def test_signature_lines_missing_fields_are_shown_and_flagged(tmp_path, pngs):
    rec = make_run(tmp_path, pngs, sign=False)
    # a line not written by rig.evidence.signing: shown as recorded, never as a valid signature
    rec._append("signature", {"name": "J. Smith", "meaning": "approved", "public_key": "ab" * 32})
    cert = build_certificate(tmp_path)
    (sig,) = cert.signatures
    assert (sig.name, sig.meaning, sig.role) == ("J. Smith", "approved", "-")
    assert sig.fingerprint.startswith(fingerprint("ab" * 32))
    assert sig.verified is False and "DOES NOT VERIFY" in sig.check
    assert cert.verdict == "INVALID"  # `rig verify` calls such a record TAMPERED
    _, pdf = write_certificate(tmp_path)
    text = " ".join(_pdf_pages(pdf))
    assert "J. Smith" in text and "DOES NOT VERIFY" in text
