"""The web view in a real headless browser against a real ``calibreg serve``.

Each page must load without a console error (a script error, a refused CSP, a missing asset);
the lookup form must give the version ``calibreg lookup`` gives; hovering the focal-plane map
must show the amplifier's values as the registry holds them; the timeline must show the
certified and decertified ranges; and a tag name holding ``<script>`` must show as text.
Screenshots of every page go to ``$CALIBREG_WEB_SHOTS`` (default ``/work/web-shots``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from web_sample import FILTER, INSTRUMENT, TAG, XSS_TAG, WebSample

from calibreg.client import Registry
from calibreg.formats.timescale import format_instant


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def console_errors(browser: Any) -> list[str]:
    """Severe entries of the browser log since the last call (it empties on read)."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def load(browser: Any, base: str, path: str) -> None:
    """Open a page and wait until its scripts have drawn the plots."""
    from selenium.webdriver.support.ui import WebDriverWait

    console_errors(browser)  # drop what earlier pages logged
    browser.get(base + path)
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "[...document.querySelectorAll('figure[data-plot]')]"
            ".every(f => f.querySelector('svg, p'))"
        )
    )


def _gone(element: Any) -> Any:
    """A wait condition: ``element`` no longer belongs to the page (stale, or detached)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support import expected_conditions as ec

    stale = ec.staleness_of(element)

    def check(driver: Any) -> bool:
        try:
            return stale(driver)
        except StaleElementReferenceException:
            return True
        except WebDriverException as err:
            if "does not belong to the document" in str(err):
                return True
            raise

    return check


def click_and_wait(browser: Any, element: Any) -> None:
    """Click something that navigates, and wait until the next page has loaded and drawn.

    Without the wait, a loaded machine lets the test read the old page (or no page yet).
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    # Chromedriver sometimes reports the old page's element, caught mid-navigation, as "Node
    # with given id does not belong to the document" (a WebDriverException, not the
    # StaleElementReferenceException staleness_of expects): that too means the page is gone.
    WebDriverWait(browser, 30).until(_gone(old))
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "[...document.querySelectorAll('figure[data-plot]')]"
            ".every(f => f.querySelector('svg, p'))"
        )
    )


def shoot(browser: Any, shots: Path, url: str, name: str) -> None:
    browser.save_screenshot(str(shots / f"{backend_of(url)}-{name}.png"))


def test_every_page_loads_without_console_errors(
    browser: Any, web_server: str, web_db, web_sample: WebSample, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    pages = {
        "home": "/ui/",
        "version": f"/ui/versions/{web_sample.amp_version}",
        "version-detector": f"/ui/versions/{web_sample.detector_version}",
        "compare": f"/ui/compare/{web_sample.amp_version}/{web_sample.amp_subset_version}",
        "tag": f"/ui/tags/{urllib.parse.quote(TAG)}",
        "history": f"/ui/history?instrument={INSTRUMENT}&filter={FILTER}&detector=R22_S11&amp=C10",
        "not-found": "/ui/versions/999999",
    }
    for name, path in pages.items():
        load(browser, web_server, path)
        errors = console_errors(browser)
        if name == "not-found":  # the 404 itself is logged by the browser, nothing else
            assert all("404" in e for e in errors), errors
        else:
            assert errors == [], (name, errors)
        assert browser.find_element(By.TAG_NAME, "h1").text
        shoot(browser, shots, web_db[0], name)
    # the plots were drawn: one box per row on the version page
    load(browser, web_server, pages["version"])
    n_boxes = len(browser.find_elements(By.CSS_SELECTOR, "#fp-map rect.amp"))
    assert n_boxes == 189 * 16
    n_points = len(browser.find_elements(By.CSS_SELECTOR, "#exp-plot circle.pt"))
    assert n_points == len(web_sample.exposure_ids)


def cli_lookup(url: str, *args: str) -> dict[str, Any]:
    """What ``calibreg lookup --format json`` answers (the CLI, as a subprocess)."""
    cmd = [sys.executable, "-m", "calibreg_cli.main", "lookup", "--db", url, "--format", "json"]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("how", ["exposure-early", "exposure-late", "time"])
def test_lookup_form_gives_what_the_cli_gives(
    browser: Any, web_server: str, web_db, web_sample: WebSample, shots: Path, how: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = web_db[0]
    load(browser, web_server, "/ui/")
    Select(browser.find_element(By.ID, "f-instrument")).select_by_visible_text(INSTRUMENT)
    Select(browser.find_element(By.ID, "f-tag")).select_by_visible_text(TAG)
    if how == "time":
        # 30 s into the flat sequence (TAI), written as UTC: before the tag's split
        when = format_instant(web_sample.exposure_begins[0] + 30 * 10**9)
        browser.find_element(By.ID, "f-filter").send_keys(FILTER)
        browser.find_element(By.ID, "f-time").send_keys(when)
        truth = cli_lookup(url, "-i", INSTRUMENT, "-t", TAG, "-f", FILTER, "--time", when)
        expected = web_sample.amp_version
    else:
        exposure = web_sample.exposure_ids[1 if how == "exposure-early" else 10]
        browser.find_element(By.ID, "f-exposure").send_keys(str(exposure))
        truth = cli_lookup(url, "-i", INSTRUMENT, "-t", TAG, "--exposure", str(exposure))
        expected = (
            web_sample.amp_version if how == "exposure-early" else web_sample.amp_subset_version
        )
    click_and_wait(browser, browser.find_element(By.ID, "f-submit"))
    link = browser.find_element(By.ID, "answer-version")
    assert console_errors(browser) == []
    assert truth["version_id"] == expected
    assert int(link.text) == truth["version_id"]
    assert link.get_attribute("href").endswith(f"/ui/versions/{truth['version_id']}")
    cert = browser.find_element(By.ID, "answer-certification").text
    assert int(cert) == truth["certification"]["certification_id"]
    # the reasoning: one row per certification considered, the chosen one matched
    matched = browser.find_elements(By.CSS_SELECTOR, "table.explain tr.matched")
    assert len(matched) == 1 and cert in matched[0].text
    if how == "exposure-late":
        shoot(browser, shots, url, "home-lookup")
    click_and_wait(browser, link)
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Version {expected}")


def tooltip_after_hover(browser: Any, selector: str) -> str:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    target = browser.find_element(By.CSS_SELECTOR, selector)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    ActionChains(browser).move_to_element(target).perform()
    tip = browser.find_element(By.ID, "tooltip")
    assert tip.is_displayed()
    return tip.text


def test_hovering_the_focal_plane_shows_the_registry_values(
    browser: Any, web_server: str, web_db, web_registry: Registry, web_sample: WebSample, shots
) -> None:
    load(browser, web_server, f"/ui/versions/{web_sample.amp_version}")
    rows = web_registry.scales(web_sample.amp_version).set_index(["detector_name", "amp"])
    for det, amp in (("R22_S00", "C11"), ("R01_S12", "C00"), ("R43_S21", "C17")):
        truth = rows.loc[(det, amp)]
        text = tooltip_after_hover(browser, f'#fp-map rect[data-key="{det}/{amp}"]')
        lines = text.splitlines()
        assert lines[0] == f"detector {det} (id {int(truth['detector'])})"
        assert lines[1] == f"amplifier {amp}"
        g, err = re.fullmatch(r"G = (\S+) ± (\S+)", lines[2]).groups()
        assert float(g) == pytest.approx(truth["scale"], rel=1e-5)  # 6 significant digits
        assert float(err) == pytest.approx(truth["error"], rel=1e-2)  # 3 significant digits
        assert lines[3] == "flags: none"
    if backend_of(web_db[0]) == "sqlite":
        shoot(browser, shots, web_db[0], "version-hover")
    # the dead amplifier: flagged, outlined, its flags named
    det_id, amp = web_sample.dead
    name = web_registry.detectors(INSTRUMENT).set_index("id").loc[det_id, "name"]
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.CSS_SELECTOR, f'#fp-map rect[data-key="{name}/{amp}"]')
    assert "flagged" in box.get_attribute("class").split()
    assert rows.loc[(name, amp), "flag_names"] in tooltip_after_hover(
        browser, f'#fp-map rect[data-key="{name}/{amp}"]'
    )
    flagged = browser.find_elements(By.CSS_SELECTOR, "#fp-map rect.flagged")
    assert len(flagged) == int(rows["flagged"].sum())
    # the exposure-scale plot: hovering a point names its exposure and E
    exps = web_registry.scales(web_sample.amp_version, "exposure")
    text = tooltip_after_hover(browser, '#exp-plot circle.pt[data-i="0"]')
    assert text.splitlines()[0] == f"exposure {int(exps['exposure'][0])}"
    e = float(re.search(r"E = (\S+)", text).group(1))
    assert e == pytest.approx(exps["scale"][0], rel=1e-6)


def test_timeline_shows_the_certified_ranges(
    browser: Any, web_server: str, web_db, web_registry: Registry, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    load(browser, web_server, f"/ui/tags/{urllib.parse.quote(TAG)}")
    certs = {
        c["certification_id"]: c for c in web_registry.certifications(TAG, include_closed=True)
    }
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline g.bar")
    shown = {int(b.get_attribute("data-certification")): b for b in bars}
    assert set(shown) == set(certs)
    for cid, bar in shown.items():
        kind = "decertified" if certs[cid]["decertified_at"] else "active"
        assert kind in bar.get_attribute("class").split()
        assert int(bar.get_attribute("data-version")) == certs[cid]["version_id"]
    # decertified history is drawn faded
    faded = [b for c, b in shown.items() if certs[c]["decertified_at"]]
    assert faded and all(
        float(b.find_element(By.TAG_NAME, "rect").value_of_css_property("opacity")) < 1
        for b in faded
    )
    # the active ranges abut where the tag passes from one version to the next, in time order
    active = sorted(
        (c for c in certs.values() if not c["decertified_at"]), key=lambda c: c["valid_begin"]
    )
    boxes = [shown[c["certification_id"]].find_element(By.TAG_NAME, "rect") for c in active]
    left = [float(r.get_attribute("x")) for r in boxes]
    right = [x + float(r.get_attribute("width")) for x, r in zip(left, boxes, strict=True)]
    assert left == sorted(left)
    assert right[0] == pytest.approx(left[1], abs=0.05)
    shoot(browser, shots, web_db[0], "tag")
    # the as-of control: before anything was certified, nothing is shown
    field = browser.find_element(By.ID, "as-of")
    field.send_keys("2001-01-01T00:00:00Z")
    click_and_wait(browser, browser.find_element(By.ID, "as-of-submit"))
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline g.bar") == []
    assert console_errors(browser) == []


def test_injected_script_in_a_tag_name_is_shown_as_text(
    browser: Any, web_server: str, web_db, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    load(browser, web_server, "/ui/")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, XSS_TAG))
    assert browser.find_element(By.ID, "tag-name").text == XSS_TAG
    assert browser.find_elements(By.CSS_SELECTOR, "h1 b, h1 script") == []
    assert browser.execute_script("return window.__xss") is None
    assert console_errors(browser) == []
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline g.bar")
    assert len(bars) == 1
    shoot(browser, shots, web_db[0], "tag-injection")


def test_history_picker(
    browser: Any, web_server: str, web_db, web_registry: Registry, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    load(browser, web_server, "/ui/history")
    Select(browser.find_element(By.ID, "h-filter")).select_by_visible_text(FILTER)
    Select(browser.find_element(By.ID, "h-detector")).select_by_visible_text("R10_S02")
    Select(browser.find_element(By.ID, "h-amp")).select_by_visible_text("C04")
    click_and_wait(browser, browser.find_element(By.ID, "h-submit"))
    truth = web_registry.history(
        instrument=INSTRUMENT, physical_filter=FILTER, detector="R10_S02", amp="C04"
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    assert [int(r.find_elements(By.TAG_NAME, "td")[0].text) for r in rows] == list(truth["version"])
    shown = [float(r.find_elements(By.TAG_NAME, "td")[5].text) for r in rows]
    assert shown == pytest.approx(list(truth["scale"]), rel=1e-6)
    points = browser.find_elements(By.CSS_SELECTOR, "#history-plot circle.pt")
    assert len(points) == len(truth)
    assert console_errors(browser) == []
    shoot(browser, shots, web_db[0], "history-picked")
