"""Every notebook's widget, driven in JupyterLab by a real Chromium.

One JupyterLab server (127.0.0.1, a free port, a token, every config folder
in a temporary directory) serves a copy of the notebooks. Headless Chromium,
driven by Playwright, opens each notebook and runs all its cells. It checks
that the widget rendered as controls and not as the text fallback, changes a
control (or presses Run), waits for the widget's output to change, and takes a
screenshot into test-artifacts/browser/. Any browser console error or Python
traceback fails the notebook.

Two notebooks run at a time, in two tabs. Kernels spend much of their time in
single-threaded Python and XLA compilation, so the second tab uses the second
core. On 2 cores a third tab gained nothing.
The browser is Debian's ``chromium`` (``make test`` installs it); where it or
Playwright is missing the test skips, unless ``GRULM_EDU_BROWSER_TEST=required``
(set by ``make test``), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("GRULM_EDU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PARALLEL_TABS = 2
RUN_ALL_TIMEOUT_S = 150
CHANGE_TIMEOUT_S = 60


def widget_cell_indices(name: str) -> list[int]:
    """Positions (among all cells) of the cells whose stored output is a widget."""
    cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
    return [
        i
        for i, cell in enumerate(cells)
        if any(WIDGET_MIME in output.get("data", {}) for output in cell.get("outputs", []))
    ]


def widget_notebooks() -> list[str]:
    """Names of the notebooks whose stored outputs contain a widget view."""
    return [path.name for path in sorted(NOTEBOOKS.glob("*.ipynb")) if widget_cell_indices(path.name)]


def _missing_tools() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return 'the Python package playwright is not installed (pip install -e ".[dev]")'
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set GRULM_EDU_CHROMIUM)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_settings(settings_dir: pathlib.Path) -> None:
    """User settings: no news toast, no autosave (the test never rewrites a notebook)."""
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }.items():
        path = settings_dir / plugin
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


def _copy_without_outputs(source: pathlib.Path, target: pathlib.Path) -> None:
    """Copy a notebook with its stored outputs cleared: Run All replaces them anyway,
    and the browser then renders each figure once instead of twice."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    target.write_text(json.dumps(notebook), encoding="utf-8")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels: they share the process group we created."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a copy of the notebooks."""
    missing = _missing_tools()
    if missing:
        if os.environ.get("GRULM_EDU_BROWSER_TEST") == "required":
            pytest.fail(f"browser test required but {missing}")
        pytest.skip(missing)

    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    for name in widget_notebooks():
        _copy_without_outputs(NOTEBOOKS / name, work / name)
    env = dict(os.environ)
    for variable in (
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTER_RUNTIME_DIR",
        "JUPYTERLAB_SETTINGS_DIR",
        "JUPYTERLAB_WORKSPACES_DIR",
        "IPYTHONDIR",
    ):
        env[variable] = str(root / variable.lower())
    _write_settings(root / "jupyterlab_settings_dir")
    port, token = _free_port(), secrets.token_hex(16)
    log = open(root / "jupyterlab.log", "w", encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI machines run as root
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab failed to start within 60 s; end of its log: {(root / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield {"base": base, "token": token}
    finally:
        _stop(process)
        log.close()


# JavaScript run in the page. `window.jupyterapp` exists because the server
# was started with --LabApp.expose_app_in_browser=True.
WAIT_FOR_KERNEL = """async (name) => {
    const app = window.jupyterapp;
    await app.restored;
    for (let i = 0; i < 600; i++) {
        const panel = app.shell.currentWidget;
        if (panel && panel.context && panel.context.path === name && panel.sessionContext) {
            await panel.context.ready;
            await panel.sessionContext.ready;
            const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
            if (kernel && kernel.status === "idle") return kernel.name;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return null;
}"""

OPEN = """async (name) => {
    await window.jupyterapp.commands.execute("docmanager:open", { path: name, factory: "Notebook" });
}"""

# Shut the kernel down, then close the tab's notebook. The race keeps the
# returned promise bounded if the shutdown reply never arrives.
CLOSE = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.sessionContext) return;
    const shutdown = panel.sessionContext.shutdown().catch(() => undefined);
    await Promise.race([shutdown, new Promise((resolve) => setTimeout(resolve, 10000))]);
    panel.dispose();
}"""

RUN_ALL = """async () => {
    const app = window.jupyterapp;
    return await app.commands.execute("notebook:run-all-cells");
}"""

# Errors from the notebook model: error outputs and tracebacks in any stream.
OUTPUT_PROBLEMS = """(widgetCells) => {
    const panel = window.jupyterapp.shell.currentWidget;
    const problems = [];
    panel.content.widgets.forEach((cell, index) => {
        if (cell.model.type !== "code") return;
        if (cell.model.executionCount === null) problems.push(`cell ${index} did not run`);
        for (const output of cell.model.outputs.toJSON()) {
            if (output.output_type === "error") problems.push(`cell ${index}: ${output.ename}: ${output.evalue}`);
            const text = output.text || (output.data && output.data["text/plain"]) || "";
            const joined = Array.isArray(text) ? text.join("") : text;
            if (joined.includes("Traceback (most recent call last)")) problems.push(`cell ${index}: traceback in output`);
        }
        if (widgetCells.includes(index)) {
            cell.node.setAttribute("data-widget-cell", String(index));
        }
    });
    return problems;
}"""

KERNEL_IDLE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    return panel.sessionContext.session.kernel.status === "idle";
}"""


async def _output_signature(output) -> str:
    """What the widget's output area shows: its text and the source of each image."""
    return await output.evaluate(
        "(node) => node.innerText + [...node.querySelectorAll('img')].map((img) => img.src.length + img.src.slice(-64)).join()"
    )


async def _change_one_control(page, cell) -> str:
    """Press Run if the widget has one, else move a slider or pick another option; name what was done."""
    run_button = cell.locator("button.jupyter-button", has_text="Run")
    if await run_button.count():
        await run_button.first.click()
        return "pressed Run"
    handles = cell.locator(".noUi-handle")
    if await handles.count():
        handle = handles.first
        before, maximum = await handle.get_attribute("aria-valuenow"), await handle.get_attribute("aria-valuemax")
        await handle.focus()
        await page.keyboard.press("ArrowLeft" if float(before) >= float(maximum) else "ArrowRight")
        return f"moved a slider from {before}"
    select = cell.locator("select")
    if await select.count():
        values = await select.first.evaluate("(node) => [...node.options].map((option) => option.value)")
        current = await select.first.input_value()
        choice = next(value for value in values if value != current)
        await select.first.select_option(choice)
        return f"chose {choice!r} instead of {current!r}"
    raise AssertionError("the widget has no Run button, slider or drop-down to change")


async def _drive_notebook(page, name: str) -> dict:
    """Open, run all, check and change the widget of one notebook in an open JupyterLab page."""
    result = {"problems": [], "actions": [], "console": [], "seconds": {}}

    def on_console(message) -> None:
        if message.type == "error":
            result["console"].append(message.text)

    def on_page_error(error) -> None:
        result["console"].append(f"page error: {error}")

    listeners = {"console": on_console, "pageerror": on_page_error}
    for event, listener in listeners.items():
        page.on(event, listener)
    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        result["seconds"][phase] = time.monotonic() - clock
        clock = time.monotonic()

    try:
        await page.evaluate(OPEN, name)
        kernel = await page.evaluate(WAIT_FOR_KERNEL, name)
        lap("open")
        if kernel is None:
            result["problems"].append("the kernel never became idle")
            return result
        finished = await asyncio.wait_for(page.evaluate(RUN_ALL), RUN_ALL_TIMEOUT_S)
        lap("run all")
        if finished is False:
            result["problems"].append("Run All stopped at a failing cell")
        widget_cells = widget_cell_indices(name)
        result["problems"] += await page.evaluate(OUTPUT_PROBLEMS, widget_cells)
        for index in widget_cells:
            await _check_widget_cell(page, name, index, result)
        lap("widget")
    except Exception as error:  # a timeout or a missing element: report it, keep the other notebooks running
        result["problems"].append(f"{type(error).__name__}: {error}")
    finally:
        try:
            await page.evaluate(CLOSE)
        except Exception as error:  # the page itself failed, and the problem list contains the cause
            result["problems"].append(f"closing the notebook failed: {error}")
        for event, listener in listeners.items():
            page.remove_listener(event, listener)
    return result


async def _check_widget_cell(page, name: str, index: int, result: dict) -> None:
    """Check that cell `index` shows controls, change one, and wait for its output to change."""
    cell = page.locator(f'[data-widget-cell="{index}"]')
    await cell.scroll_into_view_if_needed()
    controls = cell.locator(".jp-OutputArea-output .widget-box")
    try:
        await controls.first.wait_for(state="visible", timeout=20_000)
    except Exception:
        text = await cell.locator(".jp-OutputArea").inner_text()
        result["problems"].append(f"cell {index}: no widget controls rendered; the output reads {text[:200]!r}")
        return
    output = cell.locator(".jp-OutputArea").first
    before = await _output_signature(output)
    result["actions"].append(f"cell {index}: {await _change_one_control(page, cell)}")
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    after = before
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        after = await _output_signature(output)
        if after != before and await page.evaluate(KERNEL_IDLE):
            break
    await asyncio.sleep(0.5)  # let the new figure paint before the screenshot
    after = await _output_signature(output)
    if after == before:
        result["problems"].append(f"cell {index}: the widget's output did not change")
    if "Traceback (most recent call last)" in after:
        result["problems"].append(f"cell {index}: the widget's callback raised: {after[-400:]!r}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await cell.screenshot(path=str(ARTIFACTS / f"{name.removesuffix('.ipynb')}.png"))


async def _drive_all(lab, names: list[str]) -> dict[str, dict]:
    """Drive `names` in PARALLEL_TABS JupyterLab tabs; each tab opens one notebook after another."""
    from playwright.async_api import async_playwright

    queue: asyncio.Queue[str] = asyncio.Queue()
    # Later notebooks train more: start them first, so the short early ones fill the last minute.
    for name in sorted(names, reverse=True):
        queue.put_nowait(name)
    results: dict[str, dict] = {}

    async def tab(context, number: int) -> None:
        page = await context.new_page()
        # One workspace per tab, so the tabs do not restore each other's layout.
        await page.goto(f"{lab['base']}/lab/workspaces/tab{number}?reset&token={lab['token']}")
        await page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        await page.evaluate("async () => { await window.jupyterapp.restored; }")
        # No spinners or transitions: a headless browser would paint every frame of them.
        await page.add_style_tag(content="*, *::before, *::after { animation: none !important; transition: none !important; }")
        while not queue.empty():
            name = queue.get_nowait()
            results[name] = await _drive_notebook(page, name)
        await page.close()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 1300})
            await asyncio.gather(*(tab(context, number) for number in range(PARALLEL_TABS)))
        finally:
            await browser.close()
    return results


@pytest.fixture(scope="module")
def browser_results(lab, request):
    """Drive each selected notebook once, two tabs at a time; results keyed by notebook name.

    Only the notebooks whose tests pytest selected are driven, so
    ``pytest tests/test_browser.py -k 05_`` opens notebook 05 alone.
    """
    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_widget_works_in_jupyterlab"
    ]
    start = time.monotonic()
    results = asyncio.run(_drive_all(lab, names))
    print(f"\nbrowser test: {len(results)} notebooks in {time.monotonic() - start:.0f} s")
    for name, result in sorted(results.items()):
        laps = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result["seconds"].items())
        print(f"  {name}: {laps}; {'; '.join(result['actions'])}")
    return results


@pytest.mark.parametrize("name", widget_notebooks())
def test_widget_works_in_jupyterlab(browser_results, name):
    result = browser_results[name]
    assert result["problems"] == [], f"{name}: {result['problems']} (actions: {result['actions']})"
    assert result["console"] == [], f"{name}: browser console errors: {result['console']}"
    assert result["actions"], f"{name}: no widget was changed"
