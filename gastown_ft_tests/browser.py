"""Headless Chromium against a real Dagster webserver, for the web UI tests.

Selenium drives Debian's `chromium` through the `chromedriver` built from the same source (so the
two always match); with the driver path given, Selenium Manager is never run and nothing is
downloaded. The webserver runs in its own process group so that stopping it also stops its code
server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_CANDIDATES = ("chromedriver", "/usr/lib/chromium/chromedriver")

# Tests run as root in CI, hence --no-sandbox; the rest keeps Chromium quiet and offline.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--hide-scrollbars",
)


@dataclass(frozen=True)
class ChromiumBinaries:
    browser: str
    driver: str


def find_chromium() -> ChromiumBinaries | None:
    """The browser and its driver: $GASTOWN_FT_CHROMIUM / $GASTOWN_FT_CHROMEDRIVER, else the PATH."""

    def first(env: str, names: tuple[str, ...]) -> str | None:
        if os.environ.get(env):
            return shutil.which(os.environ[env])
        return next((p for p in map(shutil.which, names) if p), None)

    browser = first("GASTOWN_FT_CHROMIUM", BROWSER_CANDIDATES)
    driver = first("GASTOWN_FT_CHROMEDRIVER", DRIVER_CANDIDATES)
    return ChromiumBinaries(browser, driver) if browser and driver else None


def artifacts_dir() -> Path:
    """Where tests keep files for people to look at: $GASTOWN_FT_TEST_ARTIFACTS or <repo>/test-artifacts."""
    path = Path(os.environ.get("GASTOWN_FT_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def headless_chromium(binaries: ChromiumBinaries, width: int = 1600, height: int = 1000) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binaries.browser
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=binaries.driver), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Webserver:
    url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def dagster_webserver(
    env: dict[str, str], log: Path, module: str = "gastown_ft.definitions"
) -> Iterator[Webserver]:
    """`dagster-webserver -m MODULE` on a free loopback port, up once /server_info answers (<= 120 s)."""
    port = free_port()
    server = Webserver(url=f"http://127.0.0.1:{port}", log=log)
    cmd = [sys.executable, "-m", "dagster_webserver", "-m", module, "-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {proc.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not serve within 120 s:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=2) as r:
                    json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        yield server
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    # Dagster turns SIGTERM into a clean shutdown; whatever is left after the grace period is killed.
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            os.killpg(proc.pid, 0)  # the group can outlive its leader (the code server)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break


# --- Reading the Dagster UI -------------------------------------------------------------------

# Visible asset-node labels of the asset graph. Asset nodes are HTML inside SVG <foreignObject>s; the
# graph also renders nodes just outside the viewport, and its toolbar floats over it, so a label counts
# only where the browser hit-tests it (its middle and both ends) to its own node.
_VISIBLE_GRAPH_LABELS_JS = """
const labels = [];
for (const el of document.querySelectorAll('svg foreignObject [class*="assetName"]')) {
  const node = el.closest('foreignObject');
  const r = el.getBoundingClientRect();
  const y = r.top + r.height / 2;
  const xs = [r.left + 1, r.left + r.width / 2, r.right - 1];
  const shown = r.width > 0 && xs.every((x) => {
    const hit = document.elementFromPoint(x, y);
    return hit !== null && node.contains(hit);
  });
  if (shown) labels.push(el.innerText.trim());
}
return labels;
"""


def visible_graph_labels(driver) -> list[str]:
    return driver.execute_script(_VISIBLE_GRAPH_LABELS_JS)


def label_shows(label: str, name: str) -> bool:
    """Whether a node label shows `name`: in full, or shortened around an ellipsis as Dagster does with
    long names on small nodes (`evaluation…report`)."""
    if label == name:
        return True
    if label.count("…") != 1:
        return False
    head, tail = label.split("…")
    return len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)


def names_missing_from(labels: list[str], names: list[str]) -> list[str]:
    """The names that no label shows, each label standing for one name (exact matches first)."""
    free = list(labels)
    missing = []
    for name in sorted(names, key=lambda n: n not in free):
        match = next((lab for lab in free if label_shows(lab, name)), None)
        if match is None:
            missing.append(name)
        else:
            free.remove(match)
    return missing


def dismiss_community_dialog(driver, base_url: str) -> None:
    """Mark Dagster's one-time "Join the Dagster community" dialog as seen, as its Skip button does,
    so it does not cover the screenshots."""
    driver.get(f"{base_url}/server_info")
    driver.execute_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")


def expand_all_graph_groups(driver) -> None:
    """The graph settings' "Expand all groups" (its shortcut ⌥E): the global graph starts collapsed."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()


def zoom_out_graph(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "[aria-label='zoom_out']").find_element(By.XPATH, "./..").click()


_LOADING_JS = """
return document.querySelectorAll(
  '[class*="Spinner"], [class*="spinner"], [class*="Skeleton"], [class*="skeleton"]').length;
"""


def wait_until_loaded(driver, timeout_s: float = 20.0) -> bool:
    """Wait (at most timeout_s) until no spinner or loading skeleton is left, so a screenshot shows the
    page as an operator sees it; False if something was still loading."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.5).until(
            lambda d: d.execute_script(_LOADING_JS) == 0
        )
        return True
    except TimeoutException:
        return False
