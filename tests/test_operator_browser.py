"""The operator station in a real browser (Debian's chromium and chromium-driver, selenium).

Open the page, log in by badge, scan a serial, see the model the PLC's KIND names, confirm the
operator step, certify on the emulated bench (two short requirements, scale 20), see the
verdict and open the certificate; start another run, see a second start refused, abort it
mid-way and see that the table was made safe (the record's final safe-state event).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
REQUIREMENTS = ("TT-SAF-02", "TT-SAF-03")  # short ones: about 15 s of wall time at scale 20
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):  # .ci/run installs them: missing there is a failure, not a skip
        raise RuntimeError("chromium and chromedriver are missing (apt-get install them)")
    pytest.skip("chromium / chromedriver not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def station(tmp_path):
    """`rig station serve` on one emulated TT-890 bench, runs limited to two requirements."""
    port = _free_port()
    line = tmp_path / "line.toml"
    line.write_text(
        '[station]\nname = "TEST-LINE"\nhost = "127.0.0.1"\n'
        f"port = {port}\n"
        '[[person]]\nname = "J. Doe"\nbadge = "B-1001"\nrole = "operator"\n'
        '[[bench]]\nid = "B1"\nemulated = "TT-890"\nscale = 20\n'
    )
    cmd = [sys.executable, "-m", "rig.cli", "station", "serve", "--line", str(line)]
    cmd += ["--reports", str(tmp_path / "reports")]
    for r in REQUIREMENTS:
        cmd += ["--requirement", r]
    log = open(tmp_path / "station.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, (tmp_path / "station.log").read_text()
            try:
                benches = httpx.get(f"{url}/api/benches", timeout=2).json()
                if benches[0]["address"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the station did not come up within 90 s"
            time.sleep(0.2)  # paces the look for the server; nothing is timed by it
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _identify_and_start(browser, wait):
    serial = browser.find_element(By.ID, "serial-B1")
    serial.clear()
    serial.send_keys("890123", Keys.ENTER)  # a barcode scanner types and presses Enter
    wait.until(ec.text_to_be_present_in_element((By.ID, "model-B1"), "PLC KIND 1"))
    assert "TT-890" in browser.find_element(By.ID, "model-B1").text
    start = browser.find_element(By.ID, "start-B1")
    assert not start.is_enabled()  # the operator step is not confirmed yet
    browser.find_element(By.ID, "step-B1-harness").click()
    wait.until(ec.element_to_be_clickable((By.ID, "start-B1"))).click()


def test_certify_then_abort_in_the_browser(station, browser, tmp_path):
    wait = WebDriverWait(browser, 20)
    browser.get(station)
    browser.find_element(By.ID, "login-input").send_keys("B-1001", Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.ID, "operator-name"), "J. Doe"))

    # 1. certify on the emulated bench: the verdict, the rows, a trace plot, the certificate
    _identify_and_start(browser, wait)
    long_wait = WebDriverWait(browser, 120)
    verdict = long_wait.until(ec.visibility_of_element_located((By.ID, "verdict-B1")))
    assert verdict.get_attribute("data-verdict") == "NOT CERTIFIED - partial"
    assert "NOT CERTIFIED" in verdict.text
    for req in REQUIREMENTS:
        row = browser.find_element(By.ID, f"req-B1-{req}")
        assert "PASS" in row.text
    assert browser.find_elements(By.CSS_SELECTOR, "#traces-B1 img")
    link = long_wait.until(ec.visibility_of_element_located((By.ID, "certificate-B1")))
    link.click()
    wait.until(lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(browser.window_handles[1])
    wait.until(ec.presence_of_element_located((By.TAG_NAME, "body")))
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "TT-890" in text and "890123" in text
    browser.close()
    browser.switch_to.window(browser.window_handles[0])

    # 2. another run: a second start is refused while it runs; abort it mid-way
    _identify_and_start(browser, wait)
    long_wait.until(
        lambda d: (
            "measuring" in d.find_element(By.ID, "reqs-B1").text
            or "measured" in d.find_element(By.ID, "reqs-B1").text
        )
    )
    second = httpx.post(
        f"{station}/api/bench/B1/start",
        json={"serial": "890124", "operator": "J. Doe", "confirmed": ["harness"]},
        timeout=10,
    )
    assert second.status_code == 409
    assert "one run per bench at a time" in second.json()["error"]
    wait.until(ec.element_to_be_clickable((By.ID, "abort-B1"))).click()
    long_wait.until(
        lambda d: d.find_element(By.ID, "verdict-B1").get_attribute("data-verdict") == "INTERRUPTED"
    )
    safe = long_wait.until(ec.text_to_be_present_in_element((By.ID, "safe-B1"), "Table made safe"))
    assert safe
    safe_text = browser.find_element(By.ID, "safe-B1").text
    assert "final safe state confirmed" in safe_text and "from the record" in safe_text
    assert "aborted by J. Doe" in browser.find_element(By.ID, "runinfo-B1").text
    # the record says who confirmed the operator step, and that it was interrupted
    records = sorted(Path(tmp_path / "reports").glob("TT-890-890123-*/record.jsonl"))
    assert len(records) == 2
    from rig.evidence.reader import read_run

    first, aborted = read_run(records[0]), read_run(records[1])
    assert first.header["operator"] == "J. Doe"
    assert first.header["operator_steps"][0]["confirmed_by"] == "J. Doe"
    assert aborted.verdict == "INTERRUPTED"
