"""The search page at `/` in a real headless browser (Debian's chromium driven by selenium
through /usr/bin/chromedriver) against a real `hybrid serve`: type a query, read the results
(rank, score, language, text); passage text that looks like HTML shows as text; an error
from the service shows as one line."""

from __future__ import annotations

import json
import shutil

import pytest
from serving import serving

from hybrid.index import build_index

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>'


@pytest.fixture(scope="module")
def url(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("page")
    rows = [{"id": f"p{i}", "text": f"passage {i} about topic {i % 4}", "lang": ("de", "fr")[i % 2]}
            for i in range(40)] + [{"id": "evil", "text": HOSTILE, "lang": "en"}]
    (d / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with serving(build_index(str(tiny), d / "c.jsonl", d / "index", progress=False)) as u:
        yield u


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromedriver not installed (apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def search(browser, url: str, query: str, lang: str = "", k: str = "5") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    for name, value in (("q", query), ("lang", lang), ("k", k)):
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "status").text not in ("", "searching..."))


def test_page_shows_ranked_results_with_language_filter(browser, url):
    from selenium.webdriver.common.by import By

    search(browser, url, "passage about topic 2", lang="fr", k="5")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr.hit")
    assert len(rows) == 5, browser.find_element(By.ID, "status").text
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert [c[0] for c in cells] == ["1", "2", "3", "4", "5"]
    scores = [float(c[1]) for c in cells]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert {c[2] for c in cells} == {"fr"} and all(c[4].startswith("passage ") for c in cells)
    assert browser.find_element(By.ID, "status").text.startswith("5 results in ")


def test_page_escapes_passage_text_and_shows_errors(browser, url):
    from selenium.webdriver.common.by import By

    search(browser, url, "bold", lang="en", k="3")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr.hit")
    assert [r.find_elements(By.TAG_NAME, "td")[4].text for r in rows] == [HOSTILE]
    assert not browser.find_elements(By.CSS_SELECTOR, "#results img, #results b")
    assert browser.title == "hybrid search"
    search(browser, url, "topic", lang="zz")
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("class") == "error" and "unknown language code 'zz'" in status.text
    assert not browser.find_element(By.ID, "results").is_displayed()


def test_page_has_no_external_assets(url):
    import httpx

    html = httpx.get(url + "/").text
    assert "<script src" not in html and "<link" not in html and "://" not in html
