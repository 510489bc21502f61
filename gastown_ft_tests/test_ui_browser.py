"""The Dagster web UI in headless Chromium: the asset graph shows every asset of the code location,
and the automation page lists every sensor and schedule. Screenshots of both pages are kept in
the test artifacts directory."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from gastown_ft_tests.browser import (
    artifacts_dir,
    dagster_webserver,
    dismiss_community_dialog,
    expand_all_graph_groups,
    find_chromium,
    headless_chromium,
    label_shows,
    names_missing_from,
    visible_graph_labels,
    wait_until_loaded,
    zoom_out_graph,
)

PAGE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def repository():
    """What the UI should show, read from the code location itself."""
    from gastown_ft.definitions import defs

    return defs.get_repository_def()


@pytest.fixture(scope="module")
def ui(demo_town, tmp_path_factory):
    """(driver, webserver): the real webserver over the demo town, and a browser pointed at it."""
    binaries = find_chromium()
    if binaries is None:
        reason = (
            "no chromium and chromedriver found on PATH or in $GASTOWN_FT_CHROMIUM / $GASTOWN_FT_CHROMEDRIVER "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    elif importlib.util.find_spec("selenium") is None:
        reason = "selenium is not installed (pip install -e '.[test]')"
    else:
        reason = None
    if reason and os.environ.get("CI"):
        pytest.fail(reason)  # .ci/run installs them: in CI their absence is a broken install, not a skip
    if reason:
        pytest.skip(reason)

    from gastown_ft.config import (
        CONFIG_ENV,
        ArtifactsConfig,
        DagsterConfig,
        Settings,
        TownConfig,
        load_settings,
        render_settings_toml,
    )
    from gastown_ft.instance import prepare_dagster_home

    work = tmp_path_factory.mktemp("ui_browser")
    cfg = work / "gastown-ft.toml"
    cfg.write_text(
        render_settings_toml(
            Settings(
                town=TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir),
                artifacts=ArtifactsConfig(dir=work / "artifacts"),
                dagster=DagsterConfig(home=work / "dagster"),
            )
        )
    )
    # prepare_dagster_home exports DAGSTER_HOME and the config path; keep that out of this process.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", "")
        mp.setenv(CONFIG_ENV, "")
        prepare_dagster_home(load_settings(cfg))
        env = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}

    with dagster_webserver(env, log=work / "webserver.log") as server:
        with headless_chromium(binaries) as driver:
            dismiss_community_dialog(driver, server.url)
            yield driver, server


def keep_screenshot(driver, name: str) -> Path:
    path = artifacts_dir() / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_graph_labels_match_names_in_full_or_shortened_around_an_ellipsis():
    assert label_shows("raw_beads", "raw_beads")
    assert label_shows("evaluation…report", "evaluation_scorecard_report")
    assert not label_shows("evaluation…report", "evaluation_scorecard_summary")
    assert not label_shows("raw_beads", "raw_beads_v2")
    # One label stands for one asset: two long names sharing a shortened form need two nodes.
    assert names_missing_from(["eval…report"], ["eval_a_report", "eval_b_report"]) == ["eval_b_report"]
    assert names_missing_from(["a", "eval…report"], ["a", "eval_a_report"]) == []


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_asset_graph_shows_every_asset(ui, repository):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, server = ui
    graph = repository.asset_graph
    keys = graph.get_all_asset_keys()
    assert keys, "the code location defines no assets"
    names = sorted(key.path[-1] for key in keys)  # a graph node is labelled with its key's last part
    groups = {graph.get(key).group_name for key in keys}

    driver.get(f"{server.url}/asset-groups")
    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "svg foreignObject"),
            "the global asset graph did not render",
        )
        if len(groups) > 1:

            def expanded(d) -> bool:
                if "expanded=" in d.current_url:
                    return True
                expand_all_graph_groups(d)
                return False

            WebDriverWait(driver, 20, poll_frequency=1).until(expanded, "the asset groups did not expand")

        # Zoom out step by step until every node is on screen (the graph renders only what is in view).
        most_shown: list[str] = []

        def all_shown(d) -> bool:
            nonlocal most_shown
            labels = visible_graph_labels(d)
            most_shown = max(most_shown, labels, key=len)
            if not names_missing_from(labels, names):
                return True
            zoom_out_graph(d)
            return False

        try:
            WebDriverWait(driver, 45, poll_frequency=1).until(all_shown)
        except TimeoutException:
            pytest.fail(
                f"the asset graph never shows {names_missing_from(most_shown, names)}; "
                f"at best it shows {sorted(most_shown)}"
            )
    finally:
        keep_screenshot(driver, "ui-asset-graph.png")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_automation_page_lists_every_sensor_and_schedule(ui, repository):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, server = ui
    sensors = sorted(s.name for s in repository.sensor_defs)
    schedules = sorted(s.name for s in repository.schedule_defs)
    assert sensors, "the code location defines no sensor"
    expected = sensors + schedules

    def page_lines(d) -> set[str]:
        return {line.strip() for line in d.find_element(By.TAG_NAME, "body").text.splitlines()}

    driver.get(f"{server.url}/automation")
    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S).until(lambda d: page_lines(d).issuperset(expected))
        wait_until_loaded(driver)  # each row's status loads after its name
    except TimeoutException:
        missing = sorted(set(expected) - page_lines(driver))
        pytest.fail(f"the automation page does not list {missing}")
    finally:
        keep_screenshot(driver, "ui-automation.png")
