"""The ASSYST workflow in PyironFlow inside JupyterLab, driven through headless Chromium.

A real browser opens a notebook that shows :func:`build_workflow`'s graph (configs as form
nodes, the macro ungrouped into its stage nodes) in the PyironFlow widget; the test reads the
drawn nodes and their fields from the page, runs the workflow with the page's Run button,
types a new ``repeat`` into the sample config's field, runs again and reads the changed sample
report from the page. Needs Debian's ``chromium`` and ``chromium-driver`` (installed by
``scripts/run-tests.sh``), selenium and JupyterLab (the test extra). A screenshot is kept in
the test's tmp dir; its path is printed.
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
import uuid

import pytest

pytestmark = pytest.mark.slow

WAIT = 240  # s; generous: a loaded 2-core host starts JupyterLab and a kernel slowly
NOTEBOOK = [
    "import warnings\n",
    "warnings.simplefilter('ignore')\n",
    "from pyironflow import PyironFlow\n",
    "from pyiron_assyst.execution.executors import Executor\n",
    "from pyiron_assyst.stages.sample import Formulas, SampleConfig\n",
    "from pyiron_assyst.workflow.macro import build_workflow\n",
    "wf = build_workflow(Formulas.range('Cu', 1, 3), 'pipeline',\n",
    "                    sample_config=SampleConfig(spacegroups=(221,), seed=1),\n",
    "                    executor=Executor(kind='serial'))\n",
    "pf = PyironFlow([wf], library_roots=None)\n",
    "gui = pf.wf_widgets[0].gui\n",
    "gui.commands = 'ungroup_node: pipeline @ 1'\n",
    "gui.commands = 'ungroup_node: pipeline_assyst @ 2'\n",
    "pf.accordion.selected_index = 2  # the output panel, where a run shows its outputs\n",
    "pf.gui",
]
SAMPLE = "pipeline_cfg_sample_config"
STAGES = ("pipeline_assyst_sample_0", "pipeline_assyst_relax_0", "pipeline_assyst_relax_1",
          "pipeline_assyst_perturb_0", "pipeline_assyst_apply_filter_1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free port with a token, serving a tmp dir with the notebook."""
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian: apt-get install chromium "
                        "chromium-driver; scripts/run-tests.sh does it as root)")
    pytest.importorskip("selenium")
    pytest.importorskip("jupyterlab")
    root = tmp_path / "lab"
    root.mkdir()
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": NOTEBOOK}
    (root / "assyst.ipynb").write_text(json.dumps({
        "cells": [cell], "metadata": {"kernelspec": {
            "name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "jupyter.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.allow_root=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={token}", WAIT)
        yield base, token, tmp_path
    finally:
        try:  # stops the kernels too
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}",
                                             method="POST")
            urllib.request.urlopen(request, timeout=30).close()
            server.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=2400,1600", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _node(driver, node_id: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, f'.react-flow__node[data-id="{node_id}"]')


def _ports(driver, node_id: str) -> list[str]:
    from selenium.webdriver.common.by import By
    found = _node(driver, node_id).find_elements(By.CSS_SELECTOR, '[data-testid^="port-in-"]')
    return [p.get_attribute("data-testid").removeprefix("port-in-") for p in found]


def _output_text(driver) -> str:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
        ".map(e => e.textContent).join('\\n');")


FAILED = ("Traceback", "Cannot run:", "Error: ")  # what the page shows when a cell or run fails


def _failed(text: str) -> bool:
    return any(marker in text for marker in FAILED)


def _on_top(driver, element) -> bool:
    """Whether ``element`` is what a click at its centre hits (not clipped or covered)."""
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
        "return r.width > 0 && !!hit && (hit === arguments[0] || arguments[0].contains(hit));",
        element)


def _bring_into_view(driver, wait, node_id: str, target=None) -> None:
    """Pan the graph (drag its background, as a user does) until ``target(driver)`` (default:
    the node ``node_id`` itself; e.g. one of its fields) is unclipped and uncovered.

    The ungrouped pipeline is wider than the pane even at react-flow's smallest zoom, so
    "fit view" leaves its first nodes clipped; and the pane narrows when a run fills the
    output panel, so that a node's centre may show while a field near its edge is cut off.
    """
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    target = target or (lambda d: _node(d, node_id))
    for _ in range(5):
        if _on_top(driver, target(driver)):
            return
        pane = driver.find_element(By.CSS_SELECTOR, ".react-flow__pane")
        box, node = pane.rect, target(driver).rect
        dx = box["x"] + box["width"] / 2 - (node["x"] + node["width"] / 2)
        dy = box["y"] + box["height"] / 2 - (node["y"] + node["height"] / 2)
        start = (0, -box["height"] / 2 + 120)  # background below the toolbar, above the nodes
        (ActionChains(driver).move_to_element_with_offset(pane, *start).click_and_hold()
         .move_by_offset(dx / 2, dy / 2).move_by_offset(dx / 2, dy / 2).release().perform())
        time.sleep(0.5)
    wait.until(lambda d: _on_top(d, target(d)))


def _run(driver, wait, expected: str) -> None:
    from selenium.webdriver.common.by import By
    button = driver.find_element(
        By.XPATH, '//*[@data-testid="workflow-toolbar"]/button[normalize-space()="Run"]')
    button.click()
    wait.until(lambda d: expected in _output_text(d) or _failed(_output_text(d)))
    assert expected in _output_text(driver), _output_text(driver)[-3000:]


def test_workflow_is_drawn_edited_and_run_in_the_browser(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, tmp_path = lab
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.5)
    browser.get(f"{base}/lab/tree/assyst.ipynb?token={token}")
    wait.until(lambda d: d.execute_script(  # the notebook's kernel is connected and idle
        "const a = window.jupyterapp; if (!a) return false;"
        "return Array.from(a.shell.widgets('main')).some(w => {"
        " const k = w.sessionContext && w.sessionContext.session"
        "   && w.sessionContext.session.kernel;"
        " return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; });"))
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'.react-flow__node[data-id="{SAMPLE}"]')
               or _failed(_output_text(d)))
    assert not _failed(_output_text(browser)), _output_text(browser)[-3000:]
    wait.until(lambda d: all(d.find_elements(By.CSS_SELECTOR, f'.react-flow__node[data-id="{s}"]')
                             for s in STAGES))

    _bring_into_view(browser, wait, SAMPLE)  # so that its fields can be clicked
    sample_ports = _ports(browser, SAMPLE)
    assert {"spacegroups", "seed", "max_atoms", "repeat", "tolerance"} <= set(sample_ports)
    assert {"max_steps", "force_tolerance"} <= set(_ports(browser, "pipeline_cfg_full_relax"))
    assert "radii" in _ports(browser, "pipeline_cfg_final_filter_first")
    assert {"structures", "config", "calculator", "executor"} <= set(
        _ports(browser, "pipeline_assyst_relax_0"))
    title = _node(browser, SAMPLE).find_element(By.CSS_SELECTOR, '[data-testid="node-title"]')
    assert "cfg_sample_config" in title.text

    _run(browser, wait, "n_candidates=2")  # Cu and Cu2 in one group

    def repeat_field(driver):
        return _node(driver, SAMPLE).find_element(
            By.CSS_SELECTOR, '[data-testid="port-in-repeat"] input[data-testid="port-entry"]')

    assert repeat_field(browser).get_attribute("placeholder") == "1"  # the default, shown
    _bring_into_view(browser, wait, SAMPLE, repeat_field)  # the field itself, not the node
    repeat = repeat_field(browser)
    repeat.click()
    repeat.send_keys("2", Keys.ENTER)
    wait.until(lambda d: "port-entry--default" not in repeat.get_attribute("class"))
    _run(browser, wait, "n_candidates=4")  # each grid point drawn twice

    shot = tmp_path / "pyironflow.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
