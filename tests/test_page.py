"""The demo page in a real browser (Debian's Chromium through Playwright), against the real service.

Each state is saved as a screenshot under test-output/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service import EmbeddedMariaDB

from .conftest import NEW_ORDER, ROOT, Db, Service, url_of

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium stalls on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "test-output" / "screenshots"
ORDER: dict[str, Any] = dict(NEW_ORDER)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running on this thread while it
    # is open, and other modules' tests call asyncio.run().
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# Chromium logs every 4xx/5xx answer to fetch() as a console error; those are the API
# answering (a 422 the page shows at a field, a 503 it reports), not errors of the page.
HTTP_STATUS_LOG = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")
NETWORK_FAILURE_LOG = re.compile(r"Failed to load resource: net::ERR_CONNECTION_REFUSED")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on console errors, page errors and dialogs.

    `page.statuses` collects the HTTP error statuses Chromium logged, for tests to check.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    statuses: list[int] = []

    def on_console(message: Any) -> None:
        if message.type != "error":
            return
        status = HTTP_STATUS_LOG.search(message.text)
        if status:
            statuses.append(int(status.group(1)))
        elif NETWORK_FAILURE_LOG.search(message.text):
            statuses.append(0)  # no answer at all: the service is down
        else:
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    page.statuses = statuses  # type: ignore[attr-defined]
    yield page
    context.close()
    assert problems == []


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_page(page: Page, service: Service) -> None:
    page.goto(service.base + "/")
    expect(page.locator("#sandbox")).to_contain_text("guest ran on")


def fill_new(page: Page, order: dict[str, Any]) -> None:
    labels = {
        "order_id": "Order id",
        "product_id": "Product id",
        "quantity": "Quantity",
        "amount": "Amount",
        "shipping": "Shipping",
        "tax": "Tax",
        "shipping_address": "Shipping address",
    }
    form = page.locator("#new-order")
    for field, value in order.items():
        form.get_by_label(labels[field], exact=field != "order_id").fill(str(value))


def test_load_shows_the_empty_state_and_the_engine(page: Page, service: Service, client: httpx.Client, engine: str) -> None:
    open_page(page, service)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#orders")).to_be_hidden()
    expect(page.locator("#pager")).to_be_hidden()
    expect(page.locator("#loading")).to_be_hidden()
    expect(page.locator("#sandbox")).to_contain_text(f"guest ran on {engine}")
    expect(page.locator("#sandbox")).to_contain_text(re.compile(r"[\d.]+ ms in the sandbox"))
    shot(page, f"{engine}-1-empty")


def test_until_the_first_answer_it_says_loading_and_cannot_page(
    page: Page, service: Service, client: httpx.Client, engine: str
) -> None:
    """The list's first request is held in the browser until the checks are done (then it goes
    to the real service): meanwhile the page says it is loading, shows no table header, and
    paging is disabled."""
    for order_id in range(1, 53):
        assert client.post("/api/orders", json={**ORDER, "order_id": order_id}).status_code == 201
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route("**/api/orders?*", hold)
    page.goto(service.base + "/", wait_until="domcontentloaded")
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the page did not ask for the list"
        page.wait_for_timeout(50)
    expect(page.locator("#loading")).to_be_visible()
    expect(page.locator("#orders")).to_be_hidden()
    expect(page.locator("#pager")).to_be_hidden()
    assert page.locator("#next").is_disabled() and page.locator("#prev").is_disabled()
    held[0].continue_()
    page.unroute("**/api/orders?*")
    expect(page.locator("#loading")).to_be_hidden(timeout=10_000)
    expect(page.locator("#orders tbody tr")).to_have_count(50)
    expect(page.locator("#next")).to_be_enabled()
    expect(page.locator("#prev")).to_be_disabled()
    page.locator("#next").click()
    expect(page.locator("#next")).to_be_disabled()  # while the next page loads
    expect(page.locator("#orders tbody tr")).to_have_count(2, timeout=10_000)
    expect(page.locator("#prev")).to_be_enabled()


def test_add_an_order(page: Page, service: Service, client: httpx.Client, service_db: Db, engine: str) -> None:
    open_page(page, service)
    fill_new(page, ORDER)
    page.get_by_role("button", name="Add order").click()
    row = page.locator("#orders tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Mataderos 2312")
    expect(row).to_contain_text("19.99")
    expect(page.locator("#empty")).to_be_hidden()
    assert len(service_db.rows()) == 1
    shot(page, f"{engine}-2-added")


def test_validation_errors_appear_at_their_fields(
    page: Page, service: Service, client: httpx.Client, service_db: Db, engine: str
) -> None:
    open_page(page, service)
    fill_new(page, {**ORDER, "quantity": -1, "amount": "1.234", "shipping_address": "   "})
    page.get_by_role("button", name="Add order").click()
    expect(page.locator("#new-quantity-error")).to_have_text("Quantity must be at least 1")
    expect(page.locator("#new-amount-error")).to_have_text("Amount must have at most two decimal places")
    expect(page.locator("#new-shipping_address-error")).to_have_text("Shipping address must not be empty")
    expect(page.locator("#new-quantity")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#new-product_id-error")).to_have_text("")
    assert service_db.rows() == []
    assert page.statuses == [422]  # type: ignore[attr-defined]
    shot(page, f"{engine}-3-validation")


def test_edit_an_order_inline(page: Page, service: Service, client: httpx.Client, service_db: Db, engine: str) -> None:
    client.post("/api/orders", json=ORDER)
    open_page(page, service)
    page.get_by_role("button", name="Edit order 1").click()
    quantity = page.get_by_label("Quantity of order 1")
    expect(page.get_by_label("Product id of order 1")).to_be_focused()
    quantity.fill("7")
    page.get_by_label("Amount of order 1").fill("0.001")
    page.get_by_role("button", name="Save order 1").click()
    expect(page.locator("#edit-1-amount-error")).to_have_text("Amount must have at most two decimal places")
    shot(page, f"{engine}-4-editing")
    page.get_by_label("Amount of order 1").fill("20.5")
    page.get_by_label("Amount of order 1").press("Enter")
    row = page.locator("#orders tbody tr")
    expect(row).to_contain_text("20.50")
    assert service_db.rows("SELECT quantity, amount FROM orders")[0][0] == 7
    shot(page, f"{engine}-5-edited")


def test_delete_asks_first(page: Page, service: Service, client: httpx.Client, service_db: Db, engine: str) -> None:
    client.post("/api/orders", json=ORDER)
    client.post("/api/orders", json={**ORDER, "shipping_address": "20 Havelock"})
    open_page(page, service)
    page.get_by_role("button", name="Delete order 1").click()
    expect(page.locator("tr.confirming")).to_contain_text("Delete order 1?")
    shot(page, f"{engine}-6-confirm-delete")
    page.get_by_role("button", name="Keep it").click()
    expect(page.locator("#orders tbody tr")).to_have_count(2)
    page.get_by_role("button", name="Delete order 1").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    expect(page.locator("#orders tbody tr")).to_contain_text("20 Havelock")
    assert [r[0] for r in service_db.rows()] == [2]


def test_pages_past_fifty_orders(page: Page, service: Service, client: httpx.Client, engine: str) -> None:
    client.post("/create_orders", json=[{**ORDER, "order_id": i, "shipping_address": f"{i} Road"} for i in range(1, 121)])
    open_page(page, service)
    rows = page.locator("#orders tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text("Orders 1–50 of 120")
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#page-info")).to_have_text("Orders 51–100 of 120")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#page-info")).to_have_text("Orders 101–120 of 120")
    expect(rows).to_have_count(20)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    shot(page, f"{engine}-7-last-page")


def test_usable_with_the_keyboard_alone(page: Page, service: Service, client: httpx.Client, service_db: Db) -> None:
    open_page(page, service)
    page.locator("body").focus()
    page.keyboard.press("Tab")  # the first field of the form
    for value in ["", "12", "2", "19.99", "15", "2", "Keyboard Lane 1"]:
        if value:
            page.keyboard.type(value)
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the Add order button has focus
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    assert service_db.rows("SELECT shipping_address FROM orders") == [("Keyboard Lane 1",)]
    for element in page.locator("input").all():
        element_id = element.get_attribute("id")
        assert page.locator(f"label[for='{element_id}']").count() == 1, element_id


@pytest.fixture
def stoppable(own_mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> Iterator[tuple[EmbeddedMariaDB, Service]]:
    server = own_mariadb
    env = {"DATABASE_URL": url_of(Db(server.url)), "WASM_ENGINE": engine, "DB_CONNECT_TIMEOUT": "1", "DB_ACQUIRE_TIMEOUT": "3"}
    svc = Service(env, tmp_path / "service.log")
    yield server, svc
    svc.stop()


def test_the_page_says_when_the_database_is_down_and_recovers(
    page: Page, stoppable: tuple[EmbeddedMariaDB, Service], engine: str
) -> None:
    server, svc = stoppable
    svc.client.post("/api/orders", json=ORDER)
    open_page(page, svc)
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    server.stop()
    fill_new(page, {**ORDER, "shipping_address": "During the outage"})
    page.get_by_role("button", name="Add order").click()
    banner = page.locator("#offline")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The database is unavailable")
    shot(page, f"{engine}-8-database-down")
    server.start()
    expect(banner).to_be_hidden(timeout=20_000)
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    assert set(page.statuses) == {503}  # type: ignore[attr-defined]
    shot(page, f"{engine}-9-recovered")


def test_the_page_says_when_the_service_is_down_and_recovers(page: Page, service_db: Db, engine: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": url_of(service_db), "WASM_ENGINE": engine}
    svc = Service(env, tmp_path / "first.log")
    port = svc.port
    svc.client.post("/create_order", json={**ORDER, "order_id": 1})  # the table may hold others' rows
    open_page(page, svc)
    svc.stop()
    page.get_by_role("button", name="Add order").click()
    banner = page.locator("#offline")
    expect(banner).to_contain_text("The service cannot be reached")
    shot(page, f"{engine}-10-service-down")
    again = Service(env, tmp_path / "second.log", port=port)
    try:
        expect(banner).to_be_hidden(timeout=20_000)
        expect(page.locator("#orders tbody tr").first).to_be_visible()
        assert 0 in page.statuses  # type: ignore[attr-defined]
        shot(page, f"{engine}-11-service-back")
    finally:
        again.stop()
