"""The dashboard and the agent's page in a real headless Chromium against a running service."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import (
    AppThread,
    EmulatorHandle,
    ServiceHandle,
    alert,
    free_port,
    http,
    wait_for,
)
from tripline.messages import FleetIncident

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).parent.parent.parent / ".artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations show here
    # The Debian driver, never a download (selenium-manager is not asked).
    driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def text_of(browser: WebDriver, css: str) -> str:
    return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, css))


def csp_violations(browser: WebDriver) -> list[str]:
    """The console's Content-Security-Policy complaints since the last call."""
    return [
        str(entry["message"])
        for entry in browser.execute(Command.GET_LOG, {"type": "browser"})["value"]
        if "Content Security Policy" in str(entry["message"])
    ]


def shot(browser: WebDriver, name: str) -> None:
    """Kept for a person to look at (not asserted on)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_the_dashboard_shows_the_service_live_and_pauses_dialing(
    browser: WebDriver,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
) -> None:
    service = make_service(
        TRIPLINE__HTTP__ADMIN_TOKEN="admin-token", TRIPLINE__HTTP__READ_TOKEN="read-token"
    ).start()
    emulator.add_customer("C-DASH")
    first = alert(customer="C-DASH", sensor="DASH-1")
    service.publish(first, sensor="DASH-1")
    wait_for(lambda: service.outcome(first["idempotencyKey"]) == "called")

    browser.get(f"{service.url}/")  # the read token is set: no page without it
    assert "unauthorized" in browser.page_source
    browser.get(f"{service.url}/?token=read-token")  # its script passes it on to /status
    wait = WebDriverWait(browser, 10)
    wait.until(lambda b: first["idempotencyKey"] in text_of(b, "#decisions tbody"))
    assert "called" in text_of(browser, "#counters tbody")
    assert "dialer running" in text_of(browser, "#actors tbody")
    assert text_of(browser, "#health") == "healthy"
    window = {"sensorId": "DASH-9", "durationSeconds": 600, "createdBy": "ana"}
    comment = "<b>pump</b> swap"  # shown as text, never as markup
    headers = {"Authorization": "Bearer admin-token"}
    assert (
        http("POST", f"{service.url}/v1/admin/maintenance", window | {"comment": comment}, headers)[
            0
        ]
        == 201
    )
    wait.until(lambda b: comment in text_of(b, "#maintenance tbody"))
    assert "DASH-9" in text_of(browser, "#maintenance tbody")

    browser.find_element(By.ID, "pause").click()
    prompt = wait.until(lambda b: b.switch_to.alert)
    prompt.send_keys("admin-token")
    prompt.accept()
    wait.until(lambda b: b.find_element(By.ID, "paused").is_displayed())
    _, status = http("GET", f"{service.url}/status", headers=service.read_headers)
    assert status["dialingPaused"]["by"] == "operator"  # same-origin: the cross-site guard let it

    held = alert(customer="C-DASH", sensor="DASH-2")
    service.publish(held, sensor="DASH-2")
    wait_for(lambda: (service.record(held["idempotencyKey"]) or {}).get("state") == "queued")
    assert service.service is not None
    service.service.ref("dialer").tell(FleetIncident(active=True, since=time.time(), sensors=4321))
    wait.until(lambda b: "4321 sensors" in text_of(b, "#incident"))
    shot(browser, "dashboard")

    browser.find_element(By.ID, "resume").click()  # the token is remembered for this tab
    wait.until(lambda b: not b.find_element(By.ID, "paused").is_displayed())
    wait_for(lambda: service.outcome(held["idempotencyKey"]) == "called")
    # Its own style and script ran under its Content-Security-Policy, and nothing else was asked.
    assert browser.find_element(By.ID, "health").value_of_css_property("color") in (
        "rgba(255, 255, 255, 1)",
        "rgb(255, 255, 255)",
    )
    assert csp_violations(browser) == []


def test_the_agent_page_shows_sensor_local_time_grouped_alerts_history_and_chart(
    browser: WebDriver,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
) -> None:
    service = make_service(
        TRIPLINE__DIALER__GROUP_WINDOW_SECONDS="60",
        TRIPLINE__DIALER__PENDING_SECONDS="{ critical = 0, high = 0, normal = 1, low = 1 }",
        TRIPLINE__SENSOR__COOLDOWN_SECONDS="0",
    ).start()
    emulator.add_customer("C-AGENT")  # in a zone where it is about 14:00 now
    readings = []
    for n, value in enumerate((84.0, 86.5, 88.0, 91.5)):
        doc = alert(customer="C-AGENT", sensor="FRZ-7", alert_type="door_open")
        doc["telemetryData"]["currentValue"] = value
        readings.append(doc)
        service.publish(doc, sensor="FRZ-7")
        wait_for(functools.partial(service.outcome, doc["idempotencyKey"]), timeout=15)
        if n == 0:
            other = alert(customer="C-AGENT", sensor="FRZ-8", alert_type="door_open")
            service.publish(other, sensor="FRZ-8")
    called = next(
        r
        for d in readings
        if (r := service.record(d["idempotencyKey"])) and r.get("outcome") == "called"
    )

    csp_violations(browser)  # drop what earlier pages said
    browser.get(f"{service.url}/v1/context/{called['referenceId']}?token=ctx-token")
    assert browser.find_element(By.ID, "sensor").text == "FRZ-7"
    assert browser.find_element(By.ID, "value").value_of_css_property("color") in (
        "rgba(207, 34, 46, 1)",  # the page's hashed inline style applies
        "rgb(207, 34, 46)",
    )
    assert csp_violations(browser) == []
    assert browser.find_element(By.ID, "local-time").text.split()[3].startswith("1")  # ~14:00
    assert browser.find_element(By.ID, "outcome").text == "called"
    assert "FRZ-8" in browser.find_element(By.ID, "grouped").text
    assert "called" in browser.find_element(By.ID, "history").text
    dots = browser.find_elements(By.CSS_SELECTOR, "#readings circle")
    assert len(dots) == len(readings)
    # Oldest left: the rising readings climb (SVG y grows downwards).
    heights = [float(d.get_attribute("cy") or 0) for d in dots]
    assert heights == sorted(heights, reverse=True)
    assert "threshold 85" in browser.find_element(By.ID, "readings").text
    shot(browser, "agent-view")

    browser.get(f"{service.url}/v1/context/{called['referenceId']}?token=wrong")
    assert "unauthorized" in browser.page_source


def test_the_agent_page_shows_in_the_configured_desktop_only(
    browser: WebDriver,
    make_service: Callable[..., ServiceHandle],
    emulator: EmulatorHandle,
) -> None:
    """[http] frame_ancestors: the desktop's iframe shows the page; another site's is blocked."""

    def desktop(frame_url: str, port: int | None = None) -> AppThread:
        async def page(_request: web.Request) -> web.Response:
            body = f'<!doctype html><iframe id="agent" src="{frame_url}"></iframe>'
            return web.Response(text=body, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        return AppThread(app, port)

    port = free_port()
    allowed = f"http://127.0.0.1:{port}"
    service = make_service(TRIPLINE__HTTP__FRAME_ANCESTORS=f'["{allowed}"]').start()
    emulator.add_customer("C-FRAME")
    status, accepted = http("POST", f"{service.url}/v1/alerts", alert(customer="C-FRAME"))
    assert status == 202
    url = f"{service.url}/v1/context/{accepted['referenceId']}?token=ctx-token"
    wait_for(lambda: http("GET", url)[0] == 200)
    desks = [desktop(url, port), desktop(url)]  # the allowed one, then another site
    try:
        shown = []
        for desk in desks:
            csp_violations(browser)
            browser.get(desk.url)
            browser.switch_to.frame(browser.find_element(By.ID, "agent"))
            shown.append(bool(browser.find_elements(By.ID, "sensor")))
            browser.switch_to.default_content()
        assert shown == [True, False]
        assert any("frame-ancestors" in m for m in csp_violations(browser))
    finally:
        for desk in desks:
            desk.stop()
