"""The web page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium against ``python -m src.app`` on 127.0.0.1.

Uploads a scene of the shapes world, types ``circle, square, triangle``, runs, waits for the
overlay, reads the legend and the class mask the page shows, and checks that the mask's
majority class inside each drawn shape is right for most shapes; saves a screenshot in the
app's run folder. The browser resolves no host but 127.0.0.1 (nothing leaves the machine).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.data.shapes import ShapesConfig, render_scene
from src.pictures.palette import prediction_palette
from tests.web.serve import app_state, serving_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CLASSES = ["circle", "square", "triangle"]

HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
INSTALL = "apt-get install -y chromium chromium-driver (Debian's Chromium and its driver)"
if not HAVE_CHROMIUM and os.environ.get("CI"):  # CI installs them (.ci/run): never skip there
    raise RuntimeError(f"the browser test needs Chromium in CI: {INSTALL}")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not HAVE_CHROMIUM, reason=f"needs Chromium: {INSTALL}"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[dev]' (selenium)")


def fetch(url: str) -> bytes:
    assert url.startswith("http://127.0.0.1:"), url  # never anything but this machine
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[tuple[str, Path, Callable[[], str]]]:
    """``python -m src.app`` on a free port; (its address, its run folder, what it says now:
    the end of its console with every thread's stack)."""
    tmp = tmp_path_factory.mktemp("app")
    with serving_app(tmp) as (url, run, pid):
        yield url, run, lambda: app_state(pid, tmp / "app.log")


@pytest.fixture()
def browser(tmp_path: Path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1500",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]:  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def scene_with_every_shape():
    """The first validation scene of the shapes world that holds all three kinds."""
    for index in range(100):
        scene = render_scene(ShapesConfig(), index, "val")
        if {o.kind for o in scene.objects} == set(CLASSES):
            return scene
    raise AssertionError("no scene with all three shapes")


def classes_of(rgb: np.ndarray) -> np.ndarray:
    """The class index of every pixel of the page's colour mask (-1: not a class colour)."""
    palette = prediction_palette(CLASSES)[: len(CLASSES)].astype(int)
    distance = np.abs(rgb[..., None, :].astype(int) - palette[None, None]).sum(-1)
    index = distance.argmin(-1)
    return np.where(distance.min(-1) == 0, index, -1)


def what_the_page_and_app_say(browser, run_dir: Path, app_console: Callable[[], str]) -> str:
    """Why a request did not finish, as far as the page and the app tell (with a screenshot
    in the app's run folder)."""
    from selenium.webdriver.common.by import By

    browser.save_screenshot(str(run_dir / "browser_test_failed.png"))
    status = browser.find_element(By.CSS_SELECTOR, "#status").text
    toasts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".toast-body")]
    try:
        console = [e["message"] for e in browser.get_log("browser")][-20:]
    except Exception as err:  # noqa: BLE001 - a driver without logs still gives the rest
        console = [f"(no browser log: {err})"]
    return (
        f"the request did not finish: status {status!r}, messages {toasts}, browser console "
        f"{console}, screenshot {run_dir / 'browser_test_failed.png'}\n"
        f"the app's console:\n{app_console()}"
    )


def test_segment_a_scene_in_a_real_browser(app, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, run_dir, app_console = app
    scene = scene_with_every_shape()
    upload = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(upload)
    wait = WebDriverWait(browser, 120)
    browser.get(url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image input[type=file]")))

    # pressing Segment with no image gives a message on the page, not a stack trace
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    error = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#status .error")))
    assert "no image given" in error.text and "Traceback" not in browser.page_source

    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(upload))
    browser.find_element(By.CSS_SELECTOR, "#classes textarea").send_keys(", ".join(CLASSES))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image img")))
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    try:
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#status .ok")))
    except Exception:
        raise AssertionError(what_the_page_and_app_say(browser, run_dir, app_console)) from None
    overlay = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#overlay img")))
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", overlay) > 0)
    browser.save_screenshot(str(run_dir / "browser_test.png"))
    print(f"screenshot: {run_dir / 'browser_test.png'}")

    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#legend .name")]
    assert sorted(names) == CLASSES, names
    assert "into 3 classes" in browser.find_element(By.CSS_SELECTOR, "#timing").text
    overlay_png = Image.open(io.BytesIO(fetch(overlay.get_attribute("src"))))
    assert overlay_png.height == 128 and overlay_png.width > 128  # the image and its legend

    mask_src = browser.find_element(By.CSS_SELECTOR, "#mask img").get_attribute("src")
    mask = classes_of(np.asarray(Image.open(io.BytesIO(fetch(mask_src))).convert("RGB")))
    assert mask.shape == scene.mask.shape and (mask >= 0).all()
    right = 0
    for j, obj in enumerate(scene.objects):
        inside = mask[scene.instances == j]
        right += int(np.bincount(inside, minlength=3).argmax() == CLASSES.index(obj.kind))
    assert right >= 2 * len(scene.objects) / 3, (right, [o.kind for o in scene.objects])

    link = browser.find_element(By.CSS_SELECTOR, "#files a").get_attribute("href")
    with zipfile.ZipFile(io.BytesIO(fetch(link))) as archive:
        files = sorted(Path(n).name for n in archive.namelist())
    assert files == sorted(["legend.json", "scene_mask.png", "scene_overlay.jpg"]
                           + [f"scene_conf_{c}.png" for c in CLASSES])  # fmt: skip
    assert len(browser.find_elements(By.CSS_SELECTOR, "#confidence img")) == 3

    # a teacher option: the app composes the teacher config through Hydra and loads it once
    browser.find_element(By.CSS_SELECTOR, "#options textarea").send_keys("key_smoothing=true")
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    try:
        wait.until(
            lambda d: (
                "0002_scene.zip"
                in (d.find_element(By.CSS_SELECTOR, "#files a").get_attribute("href") or "")
            )
        )
    except Exception:
        raise AssertionError(what_the_page_and_app_say(browser, run_dir, app_console)) from None
    assert "model loaded" in browser.find_element(By.CSS_SELECTOR, "#timing").text
    legend = json.loads((run_dir / "requests" / "0002_scene" / "legend.json").read_text())
    assert legend["model"]["options"] == ["key_smoothing=true"]
