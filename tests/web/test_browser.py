"""End-to-end tests in headless Chromium (Debian's package) driven by Playwright, against a live server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"

if not Path(CHROMIUM).exists():  # .ci/run installs it; a developer machine may not have it
    pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server):
    # The tests' own waits evaluate JavaScript text, which the pages' policy forbids: bypass it here;
    # test_pages_run_under_their_content_security_policy checks the pages with it.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.mark.parametrize("path", ["/", "/compare", "/build", "/features", "/attention", "/labs", "/docs", "/redoc"])
def test_pages_run_under_their_content_security_policy(browser, live_server, path: str) -> None:
    """Each page loads and does its first work with the policy on: no violation, no script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        response = page.goto(path)
        assert "default-src 'self'" in response.headers["content-security-policy"]
        if path == "/docs":
            page.get_by_text("/api/summary", exact=True).first.wait_for(timeout=30_000)
        elif path == "/redoc":
            page.get_by_text("Summarize an architecture").first.wait_for(state="attached", timeout=30_000)
        else:
            page.locator("main").wait_for()
            page.locator("#busy").wait_for(state="hidden", timeout=60_000)
            if path == "/":
                page.locator("#tile-params [data-value]").filter(has_text="62,378,344").wait_for(timeout=60_000)
    finally:
        context.close()
    # ReDoc's footer asks for its logo on a CDN: the policy blocks it, as it should (nothing loads from outside).
    ours = [p for p in problems if "https://cdn.redoc.ly/" not in p]
    assert not ours, ours


def tile(page, name: str):
    return page.locator(f"#tile-{name} [data-value]")


def wait_idle(page) -> None:
    page.wait_for_function("document.getElementById('busy').hidden === true", timeout=60_000)


def test_explorer_shows_alexnet_and_its_formulas(page, output_dir) -> None:
    page.goto("/")
    page.get_by_role("radio", name="AlexNet").click()
    expect_text(tile(page, "params"), "62,378,344")
    row = page.locator('tr[data-path="features.conv1"]')
    row.click()
    detail = page.locator("#layer-detail")
    expect_text(detail, "floor((224 + 2*2 - 11)/4) + 1 = 55")
    expect_text(detail, "96*3*11^2 + 96 = 34,944")
    wait_idle(page)
    for chart in ("params", "flops", "activations", "memory"):
        page.locator(f"#chart-{chart} .main-svg").first.wait_for(timeout=30_000)
    expect_text(tile(page, "training"), "GiB")
    page.screenshot(path=str(output_dir / "explorer.png"), full_page=True)
    DOCS.mkdir(exist_ok=True)
    shutil.copy(output_dir / "explorer.png", DOCS / "explorer.png")


def test_changing_the_variant_changes_the_count(page) -> None:
    page.goto("/?a=alexnet")
    expect_text(tile(page, "params"), "62,378,344")
    page.locator("#cfg-variant").select_option("torchvision")
    expect_text(tile(page, "params"), "61,100,840")
    assert "torchvision" in page.url


def test_a_bad_config_shows_an_inline_error_and_keeps_the_last_result(page, output_dir) -> None:
    page.goto("/?a=alexnet")
    expect_text(tile(page, "params"), "62,378,344")
    page.locator("#input-shape").fill("3, 32, 32")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    expect_text(error, "features.pool3")
    expect_text(error, "(1, 256, 1, 1)")
    assert tile(page, "params").inner_text() == "62,378,344"
    page.screenshot(path=str(output_dir / "explorer-error.png"))


def test_a_shared_url_reproduces_the_page(page, browser, live_server) -> None:
    page.goto("/?a=resnet")
    page.locator("#cfg-depth").select_option("50")
    page.locator("#batch-size").fill("16")
    expect_text(tile(page, "params"), "25,557,032")
    page.locator('tr[data-path="fc"]').click()
    wait_idle(page)
    shared = page.url
    other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    other.goto(shared)
    expect_text(other.locator("#tile-params [data-value]"), "25,557,032")
    expect_text(other.locator("#layer-detail"), "2048*1000")  # fc's worked example
    assert other.locator("#batch-size").input_value() == "16"
    assert other.locator("#cfg-depth").input_value() == "50"
    other.context.close()


def test_keyboard_moves_between_architectures(page) -> None:
    page.goto("/?a=mlp")
    expect_text(tile(page, "params"), "22,401")
    page.get_by_role("radio", name="Multilayer perceptron").focus()
    loads: list[str] = []
    page.on("request", lambda r: loads.append(r.url) if r.url.endswith("/api/summary") else None)
    for _ in range(3):  # MLP -> LeNet-5 -> AlexNet -> VGG: one load, once the key rests
        page.keyboard.press("ArrowDown")
    assert page.get_by_role("radio", name="VGG").get_attribute("aria-checked") == "true"
    expect_text(tile(page, "params"), "138,357,544")  # VGG-16
    assert len(loads) == 1, loads


def test_dark_theme_and_phone_width(browser, live_server, output_dir) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=live_server, color_scheme="dark", bypass_csp=True
    )
    page = context.new_page()
    page.goto("/?a=lenet5")
    expect_text(page.locator("#tile-params [data-value]"), "61,706")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways at phone width ({width} px)"
    assert page.locator("#theme-toggle").get_attribute("aria-pressed") == "true"
    # one line of header, and the figures right after the architecture choice
    assert page.locator(".topbar").bounding_box()["height"] < 80
    assert page.locator("#tiles").bounding_box()["y"] < 500
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.locator("#theme-toggle").get_attribute("aria-pressed") == "false"
    page.screenshot(path=str(output_dir / "explorer-phone.png"), full_page=False)
    for path in ("/build", "/compare", "/features", "/attention", "/labs"):
        page.goto(path)
        page.locator("main").wait_for()
        wait_idle(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"{path} scrolls sideways at phone width ({width} px)"
    context.close()


def test_every_chart_has_titled_axes(page) -> None:
    """Plotly ignores a bare string title: every axis must carry its title as text, with its unit."""
    page.goto("/?a=resnet")
    wait_idle(page)
    for chart in ("params", "flops", "activations", "memory"):
        page.locator(f"#chart-{chart} .main-svg").first.wait_for(timeout=30_000)
    titles = {
        chart: page.locator(f"#chart-{chart} .g-xtitle, #chart-{chart} .g-ytitle").all_text_contents()
        for chart in ("params", "flops", "activations", "memory")
    }
    assert titles["flops"] == ["block", "GFLOPs per forward"], titles  # past 40 layers: a bar per block
    assert "output size (MiB)" in titles["activations"] and "memory at the peak (MiB)" in titles["memory"], titles
    assert all(len(both) == 2 and all(both) for both in titles.values()), titles
    page.locator("#chart-group").select_option("stage")
    expect_text(page.locator("#chart-params .g-xtitle"), "stage")


def test_keyboard_opens_tree_rows_and_tabs_once_into_the_table(page) -> None:
    page.goto("/?a=alexnet")
    expect_text(tile(page, "params"), "62,378,344")
    # one row of the table is in the Tab order (a roving tabindex), not all 26
    assert page.locator("#layer-table tr[tabindex='0']").count() == 1
    toggle = page.locator('[data-toggle="features"]')
    toggle.focus()
    page.keyboard.press("Enter")
    page.locator('tr[data-path="features"][aria-expanded="false"]').wait_for()
    assert page.locator('tr[data-path="features.conv1"]').count() == 0
    page.locator('[data-toggle="features"]').focus()
    page.keyboard.press(" ")
    page.locator('tr[data-path="features.conv1"]').wait_for()
    # Enter on a collapsed row itself (not its toggle) opens it too, and selects it
    page.locator('[data-toggle="features"]').focus()
    page.keyboard.press("Enter")
    page.locator('tr[data-path="features"][aria-expanded="false"]').wait_for()
    page.locator('tr[data-path="features"]').focus()
    page.keyboard.press("Enter")
    page.locator('tr[data-path="features"][aria-expanded="true"][aria-selected="true"]').wait_for()
    assert page.locator('tr[data-path="features.conv1"]').count() == 1
    page.locator("#layer-search").fill("pool")
    assert page.locator("#layer-table tr[data-path]").count() == 3


def test_stale_results_are_dimmed_until_the_new_answer(page) -> None:
    page.goto("/?a=alexnet")
    expect_text(tile(page, "params"), "62,378,344")
    wait_idle(page)
    page.route("**/api/summary", lambda route: route.fulfill(status=422, json={"detail": "bad", "field": "input"}))
    page.locator("#batch-size").fill("3")
    page.locator("#error").wait_for(state="visible")
    assert "stale" in page.locator("#table-view").get_attribute("class")
    assert "stale" in page.locator("#tiles").get_attribute("class")
    expect_text(page.locator(".field-error"), "bad")  # next to the field, not only in the banner
    page.unroute("**/api/summary")
    page.locator("#batch-size").fill("2")
    expect_text(tile(page, "flops"), "4.54 GFLOPs")  # twice AlexNet's 2.27 at batch 1
    page.wait_for_function("!document.getElementById('table-view').classList.contains('stale')")
    assert page.locator(".field-error").count() == 0


def test_a_missing_page_is_a_page(page) -> None:
    response = page.goto("/no-such-page")
    assert response.status == 404
    expect_text(page.locator("main"), "No page here")


def test_hugging_face_presets_and_a_pasted_config(page, output_dir) -> None:
    """The Hugging Face card: a preset, then a config.json pasted in, checked in the page before it is sent."""
    import json

    from models.huggingface import bundled_config

    page.goto("/")
    wait_idle(page)
    page.locator("#arch-huggingface").click()
    page.locator("#preset").select_option("mixtral-8x7b")
    expect_text(tile(page, "params"), "46,702,792,704")
    expect_text(page.locator("#tile-params [data-sub]"), "12,879,925,248 active per token")
    area = page.locator("#cfg-hf_config")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if "/api/summary" in request.url else None)
    area.fill('{"hidden_size": 64}')
    expect_text(page.locator("#cfg-hf_config-error"), "model_type")
    area.fill('{"model_type": "llama", "auto_map": {"AutoModel": "evil.Model"}}')
    expect_text(page.locator("#cfg-hf_config-error"), "remote code")
    assert sent == []  # nothing that fails the check is sent
    area.fill(json.dumps(bundled_config("mistral-7b")))
    expect_text(tile(page, "params"), "7,241,732,096")
    assert page.locator("#cfg-hf_config-error").is_hidden()
    page.screenshot(path=str(output_dir / "huggingface.png"), full_page=True)


def test_fits_on_panel_and_the_largest_batch(page, output_dir) -> None:
    """GPT-2: every GPU's headroom for inference, training and generation, and the largest batch on demand."""
    page.goto("/?a=gpt&p=bf16&nt=64")
    wait_idle(page)
    expect_text(page.locator("#tile-generation [data-value]"), "MiB")
    table = page.locator("#fits-table")
    expect_text(table, "NVIDIA H100")
    expect_text(table, "free")
    page.locator('[data-max-batch="t4-16gb"]').click()
    expect_text(page.locator('[data-batch-for="t4-16gb"]'), "(")
    batch = int(page.locator('[data-batch-for="t4-16gb"]').text_content().split()[0].replace(",", ""))
    assert batch > 1
    page.locator("#gpus").fill("4")
    wait_idle(page)
    expect_text(table, "per GPU, 4 × fsdp")
    # FSDP2's CPU offload: the training tile says what the host holds, and the table's peaks are the GPU's.
    page.locator("#offload").select_option("all")
    expect_text(table, "per GPU, 4 × fsdp, offload all")
    expect_text(page.locator("#tile-training [data-sub]"), "on the host (offload all)")
    assert "off=all" in page.url
    page.screenshot(path=str(output_dir / "fits.png"), full_page=True)


def test_fine_tuning_with_lora_and_planning_serving(page, output_dir) -> None:
    """GPT-2: LoRA on the attention projections lowers the training tile below full fine-tuning; the serving
    panel plans a T4's KV cache."""
    page.goto("/?a=gpt&p=bf16&nt=16")
    wait_idle(page)
    training = page.locator("#tile-training [data-value]")
    expect_text(training, "B")
    full = training.text_content()
    with page.expect_response(
        lambda r: "/api/memory/optimizers" in r.url and b'"adapter"' in r.request.post_data_buffer
    ):
        page.locator("#lora-targets").fill("q_proj,v_proj")
        page.locator("#tuning").select_option("lora")
    wait_idle(page)
    page.wait_for_function(
        "(full) => document.querySelector('#tile-training [data-value]').textContent !== full", arg=full
    )
    assert "ft=lora" in page.url
    page.locator("#serving-gpu").select_option("t4-16gb")
    page.locator("#serving-tokens").fill("1024")
    page.locator("#serving-run").click()
    expect_text(page.locator("#serving-result"), "concurrent 1,024-token requests")
    page.screenshot(path=str(output_dir / "fine-tuning-serving.png"), full_page=True)


def test_a_recipe_opens_its_whole_setup(page, output_dir) -> None:
    """Picking the QLoRA recipe opens Llama-3.1-8B with its batch, sequence, adapter, quantization, optimizer and
    checkpointing, and the training tile estimates that setup."""
    page.goto("/?a=mlp")
    wait_idle(page)
    page.wait_for_function("document.querySelectorAll('#recipe option').length > 1")
    page.locator("#recipe").select_option("qlora-llama-3.1-8b")
    page.wait_for_url("**ft=qlora**")
    for param in ("a=huggingface", "o=paged-adamw-8bit", "ck=1", "b=2", "ld=0.05", "p=bf16"):
        assert param in page.url, (param, page.url)
    assert page.locator("#tuning").input_value() == "qlora"
    expect_text(page.locator("#tile-training [data-value]"), "GiB", timeout=240_000)
    assert "paged" in page.locator("#tile-training [data-sub]").text_content().lower()
    # The model's generation can keep its KV cache in fp8: the generation tile says so, and the link keeps it.
    expect_text(page.locator("#tile-generation [data-sub]"), "KV cache", timeout=240_000)
    before = page.locator("#tile-generation [data-sub]").text_content()
    page.locator("#kv-cache").select_option("fp8")
    expect_text(page.locator("#tile-generation [data-sub]"), "(fp8)", timeout=240_000)
    assert "kv=fp8" in page.url and page.locator("#tile-generation [data-sub]").text_content() != before
    page.screenshot(path=str(output_dir / "recipe.png"), full_page=True)


def test_graph_shows_resnets_residual_joins_and_selects_with_the_table(page, output_dir) -> None:
    page.goto("/?a=resnet&v=graph")
    view = page.locator("#graph-view")
    view.locator(".graph-op").first.wait_for(timeout=60_000)
    adds = view.locator(".graph-op", has_text="add")
    assert adds.count() == 8
    assert view.locator('[data-path="layer2.0.downsample.0"]').count() == 1
    expect_text(view.locator('[data-path="layer2.0.downsample.0"]'), "1×128×28×28")
    # one node is a Tab stop; arrows walk the nodes, Enter selects
    assert view.locator(".graph-node[tabindex='0']").count() == 1
    first = view.locator(".graph-node[tabindex='0']")
    start = first.get_attribute("data-path")
    first.focus()
    page.keyboard.press("ArrowDown")
    reached = page.evaluate("document.activeElement.dataset.path")
    assert reached and reached != start
    page.keyboard.press("Enter")
    expect_text(page.locator("#layer-detail .panel-title"), reached)
    # a node selects its row and shows its formulas, and the URL keeps it
    view.locator('.graph-node[data-path="layer3.0.conv1"]').click()
    expect_text(page.locator("#layer-detail"), "layer3.0.conv1")
    assert "l=layer3.0.conv1" in page.url and "v=graph" in page.url
    # and the table selects the node
    page.locator("#view-table").click()
    page.locator('tr[data-path="fc"]').click()
    page.locator("#view-graph").click()
    page.locator('.graph-node.graph-selected[data-path="fc"]').wait_for()
    with page.expect_download() as svg:
        page.locator("#export-svg").click()
    assert svg.value.suggested_filename == "resnet-graph.svg"
    assert "<svg" in Path(svg.value.path()).read_text()
    with page.expect_download() as png:
        page.locator("#export-png").click()
    assert Path(png.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.screenshot(path=str(output_dir / "graph-resnet.png"), full_page=True)


def test_graph_of_a_deep_model_starts_collapsed_and_expands(page, output_dir) -> None:
    page.goto("/?a=huggingface&c=%7B%22preset%22%3A%22llama-3.1-8b%22%7D&s=16&v=graph")
    view = page.locator("#graph-view")
    blocks = view.locator(".graph-collapsed")
    blocks.first.wait_for(timeout=90_000)
    assert blocks.count() == 32
    before = view.locator(".graph-node").count()
    blocks.first.dblclick()
    view.locator(".graph-box").first.wait_for()
    assert view.locator(".graph-node").count() > before
    assert view.locator(".graph-collapsed").count() == 31
    page.screenshot(path=str(output_dir / "graph-llama.png"))


def test_open_the_pooling_lab_from_the_explorer_and_edit_it(page, output_dir) -> None:
    """AlexNet's max pooling row links to the pooling lab, which opens on the notes' 6x6 example."""
    page.goto("/?a=alexnet")
    expect_text(tile(page, "params"), "62,378,344")
    page.locator('tr[data-path="features.pool1"]').click()
    link = page.locator('#layer-detail a.lab-link[data-lab="pooling"]')
    expect_text(link, "pooling lab")
    link.click()
    page.wait_for_url("**/labs?lab=pooling*")
    output = page.locator("#lab-output")
    expect_text(output, "9")
    assert [float(v) for v in output.locator("td").all_inner_texts()] == [6, 5, 3, 7, 8, 7, 2, 9, 4]
    output.locator('[data-cell="0,0"]').hover()
    expect_text(page.locator("#lab-window"), "max(1, 3, 4, 6) = 6")
    assert page.locator("#lab-input td.hit").count() == 4
    page.locator('#lab-form [name="kind"]').select_option("avg")
    expect_text(page.locator("#lab-window"), "/ 4 = 3.5")
    assert "avg" in page.url
    page.screenshot(path=str(output_dir / "lab-pooling.png"), full_page=True)


@pytest.mark.parametrize(
    ("url", "row", "lab", "field", "value", "expected"),
    [
        ("/?a=alexnet", "features.conv1", "convolution", "stride", "2", "-3"),  # top-left window is unchanged
        ("/?a=resnet", "bn1", "batchnorm", "momentum", "0.5", "1.5"),  # running mean after 1 step: 0.5 * 3
        ("/?a=gpt", "blocks.0.attn", "attention", "causal", None, "-inf above the diagonal"),
        ("/?a=transformer", "positional", "positional-encoding", "d_model", "8", "(1, 0.1, 0.01, 0.001)"),
    ],
)
def test_explorer_rows_open_their_lab_and_the_lab_takes_edits(page, url, row, lab, field, value, expected) -> None:
    page.goto(f"{url}&l={row}")  # the URL's selection opens the row, even inside a collapsed block
    page.locator(f'tr[data-path="{row}"][aria-selected="true"]').wait_for()
    page.locator(f'#layer-detail a.lab-link[data-lab="{lab}"]').click()
    page.wait_for_url(f"**/labs?lab={lab}*")
    page.locator("#lab-steps li").first.wait_for()
    wait_idle(page)
    control = page.locator(f'#lab-form [name="{field}"]')
    if value is None:
        control.check(force=True)  # a switch, drawn over its checkbox
    else:
        control.fill(value)
    expect_text(page.locator("main"), expected)
    page.wait_for_function(f"location.search.includes({field!r})")
    assert page.locator("#error").is_hidden()


def test_every_lab_opens_and_dropout_follows_an_edit(page) -> None:
    page.goto("/labs?lab=dropout")
    outputs = page.locator("#lab-outputs")
    expect_text(outputs, "(4, 0, -6, 0, 10)")
    page.locator('#lab-form [name="p"]').fill("0.75")
    expect_text(outputs, "(8, 0, -12, 0, 20)")
    for link in page.locator("#lab-list .lab-link").all():
        title = link.inner_text().split("§")[0].strip()
        link.click()
        expect_text(page.locator("#lab-title"), title)
        page.locator("#lab-steps li").first.wait_for()
        wait_idle(page)
        assert page.locator("#error").is_hidden(), title


def test_compare_two_architectures(page, output_dir) -> None:
    page.goto("/compare")
    table = page.locator("#compare-table")
    expect_text(table, "62,378,344")
    expect_text(table, "25,557,032")
    page.locator("#chart-compare-memory .main-svg").first.wait_for(timeout=30_000)
    page.locator("#add-selection").click()
    page.locator('[data-index="2"] select[data-key="a"]').select_option("mlp")
    expect_text(table, "22,401")
    assert "mlp" in page.url
    page.screenshot(path=str(output_dir / "compare.png"), full_page=True)


def test_build_a_three_layer_model(page, output_dir) -> None:
    page.goto("/build")
    page.locator("#clear-layers").click()
    page.locator("#input-shape").fill("1, 28, 28")
    for layer_type in ("Flatten", "Linear", "ReLU"):
        page.locator("#new-type").select_option(layer_type)
        page.locator("#add-layer").click()
        wait_idle(page)
    expect_text(page.locator('[data-shape-for="1"]'), "1 × 64")  # Linear(784 -> 64), in_features filled in
    expect_text(page.locator('[data-shape-for="2"]'), "1 × 64")
    expect_text(page.locator("#tile-params [data-value]"), "50,240")  # 784*64 + 64
    # A wrong size is reported at its layer.
    page.locator('input[data-arg="in_features"]').fill("100")
    page.locator("#error").wait_for(state="visible", timeout=30_000)
    expect_text(page.locator("#error"), "1")
    assert "invalid" in page.locator('.layer-item[data-module="1"]').get_attribute("class")
    page.screenshot(path=str(output_dir / "build.png"), full_page=True)
    spec = page.locator("#spec-json").input_value()
    assert '"Flatten"' in spec and '"Linear"' in spec


def test_build_offers_a_flatten_and_keeps_the_explorer_link_current(page) -> None:
    page.goto("/build")
    page.locator("#clear-layers").click()
    page.locator("#input-shape").fill("3, 8, 8")
    page.locator("#new-type").select_option("MaxPool2d")
    page.locator("#add-layer").click()
    wait_idle(page)
    expect_text(page.locator('[data-shape-for="0"]'), "1 × 3 × 4 × 4")
    page.locator("#new-type").select_option("Linear")
    page.locator("#add-layer").click()
    expect_text(page.locator("#build-note"), "Added a Flatten")
    expect_text(page.locator('[data-shape-for="2"]'), "1 × 64")  # Linear(48 -> 64) after the Flatten
    expect_text(page.locator("#tile-params [data-value]"), "3,136")  # 48*64 + 64
    page.locator('input[data-arg="out_features"]').fill("10")
    page.wait_for_function(
        "decodeURIComponent(document.getElementById('open-explorer').href).includes('\"out_features\":10')"
    )


def test_edit_a_layer_inside_a_residual_block(page) -> None:
    """The default model's residual block: its convolution's arguments are edited in place."""
    page.goto("/build")
    wait_idle(page)
    expect_text(page.locator("#tile-params [data-value]"), "33,914")  # 160 + 32 + 2,320 + 32 + 31,370
    inner = """input[data-where='[3,"layers",0]']"""
    page.locator(f"{inner}[data-arg='kernel_size']").fill("1")
    page.locator(f"{inner}[data-arg='padding']").fill("0")
    page.locator(f"{inner}[data-arg='padding']").press("Tab")
    expect_text(page.locator("#tile-params [data-value]"), "31,866")  # the inner conv: 16 x 16 + 16 = 272


def expect_text(locator, text: str, timeout: int = 60_000) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text, timeout=timeout)


def test_draw_a_digit_and_read_the_prediction(page, output_dir) -> None:
    page.goto("/features?a=lenet5&w=trained")
    page.locator("#fm-layers .fm-layer").first.wait_for(timeout=60_000)
    canvas = page.locator("#draw-canvas")
    box = canvas.bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 0.15 * box["height"])
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x, box["y"] + (0.15 + 0.7 * step / 20) * box["height"])
    page.mouse.up()
    page.wait_for_function("document.getElementById('fm-prediction').dataset.top === '1'", timeout=60_000)
    expect_text(page.locator("#fm-steps"), "4 x 4 blocks")
    layers = page.locator("#fm-layers .fm-layer")
    assert layers.count() == 5  # c1, s2, c3, s4, c5
    page.locator("#fm-layers img.fm-grid").first.click()
    page.locator("#channel-heatmap .main-svg").first.wait_for(timeout=30_000)
    page.screenshot(path=str(output_dir / "features-lenet.png"), full_page=True)


def test_feature_maps_shrink_along_alexnet(page, output_dir) -> None:
    page.goto("/features?a=alexnet&s=cat")
    expect_text(page.locator("#fm-flow"), "224 → 55 → 27 → 13 → 6")
    # random weights say so on the probabilities' axis, and the cards of a row start level
    expect_text(page.locator("#fm-prediction .g-xtitle"), "random weights: meaningless")
    cards = page.locator("#fm-layers .fm-layer")
    assert cards.nth(0).bounding_box()["y"] == cards.nth(1).bounding_box()["y"]
    page.screenshot(path=str(output_dir / "features-alexnet.png"), full_page=True)


def test_attention_heatmaps(page, output_dir) -> None:
    page.goto("/attention?a=gpt&p=nano")
    page.locator("#at-heatmap .main-svg").first.wait_for(timeout=60_000)
    expect_text(page.locator("#at-tokens"), "tention")
    assert page.locator("#at-heads .head-thumb").count() == 4
    page.locator("#at-pe .main-svg").first.wait_for(timeout=30_000)
    page.locator("#at-text").fill("Le mécanisme d'attention compare chaque requête à toutes les clés.")
    expect_text(page.locator("#at-tokens"), "attention")
    page.screenshot(path=str(output_dir / "attention.png"), full_page=True)


def test_swagger_ui_renders_from_local_assets(page) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/docs")
    page.get_by_text("/api/summary", exact=True).first.wait_for(timeout=30_000)
    assert all(url.startswith(page.url.split("/docs")[0]) or url.startswith("data:") for url in requests), requests


def test_a_long_request_shows_its_progress(page) -> None:
    """The busy indicator shows the engine's stage, read from GET /api/progress/{id}, while the request runs."""
    page.goto("/")
    wait_idle(page)
    page.evaluate(
        """() => import("/static/js/api.js").then(({ post }) => {
            window.__done = false;
            post("/api/memory/optimizers", {architecture: "vit", config: {preset: "vit_h_14"}, input: {batch_size: 7}},
                 {busyText: "Estimating memory…"}).finally(() => { window.__done = true; });
        })"""
    )
    # Inference and a step per optimizer on ViT-H/14 take many seconds: the stage ("memory reports 2 of 8 done",
    # one per optimizer and the inference) and the time show.
    reports = 1 + len(page.evaluate("() => fetch('/api/choices').then((r) => r.json())")["optimizers"])
    page.wait_for_function(
        f"/reports [0-9] of {reports} done, [0-9.]+ s\\)/.test(document.getElementById('busy-text').textContent)",
        timeout=60_000,
    )
    assert page.evaluate("window.__done") is False
    page.wait_for_function("window.__done === true", timeout=180_000)
