"""The documentation site builds with warnings as errors, and looks right in a real browser.

The browser part needs a ``chromium`` executable on PATH (Debian: ``apt-get install chromium``)
and is skipped without one. Set ``AIF_DOCS_SCREENSHOTS=<folder>`` to keep the screenshots.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageStat

REPO = Path(__file__).resolve().parents[2]
# Flags that let headless Chromium run as root on a machine with a closed network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)
# (page, what the browser's tab title must start with, text the rendered page must contain)
PAGES = {
    "home": ("", "aif-offload", "policies; best"),  # the output of the executed example
    "api": ("reference/aif/", "aif - aif-offload", "aif.free_energy"),
}

# A rendered page has text below its header: real pages here show 8-25% ink and a grey spread of
# 30-60; an empty one shows 0 and 0.
MIN_INK, MIN_SPREAD = 0.02, 10.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Not a skip: `make test-slow` installs the docs extra, so a missing mkdocs is a setup fault.
    assert importlib.util.find_spec("mkdocs"), "install the docs extra: pip install -e '.[docs]'"
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site on a localhost port, as a reader's browser would fetch it."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_site_builds_strict_with_executed_examples(site: Path) -> None:
    home, started = (
        html.unescape(re.sub(r"<[^>]+>", "", (site / page).read_text(encoding="utf-8")))
        for page in ("index.html", "getting-started/index.html")
    )
    # markdown-exec ran the blocks: their printed output is in the pages.
    assert re.search(r"16 policies; best \d+: efe [-\d.]+\s+= risk [-\d.]+ \+ ambiguity", home)
    assert re.search(r"step 4: server \d+ \((cloud|edge)\), latency", started)
    for package in ("aif", "generative_models", "environments", "baselines", "experiments"):
        page = (site / "reference" / package / "index.html").read_text(encoding="utf-8")
        assert f'id="{package}.' in page, f"no API entries rendered for {package}"


@pytest.mark.slow
def test_site_loads_scripts_styles_and_fonts_from_itself(site: Path) -> None:
    """Nothing the pages need comes from another host: formulas render with no network."""
    outside = re.compile(
        r"<(?:script[^>]*\bsrc|link[^>]*\bhref)=\"((?:https?:)?//[^\"]+)\"", flags=re.IGNORECASE
    )
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        found = outside.findall(text)
        assert not found, f"{page.relative_to(site)} loads {found[:3]}"
    assert (site / "assets" / "mathjax" / "tex-chtml.js").is_file()
    fonts = site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10


def chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={user_data}", *args],
        capture_output=True,
        timeout=120,
    )


# The page header: a coloured bar that even an empty page shows.
HEADER_PX = 100


def ink(image: Image.Image) -> tuple[float, float]:
    """Below the header: the share of pixels not in the background colour, and the grey spread."""
    rgb = image.convert("RGB")
    body = rgb.crop((0, min(HEADER_PX, rgb.height // 2), rgb.width, rgb.height))
    n = body.width * body.height
    colours = body.getcolors(maxcolors=n)
    assert colours
    background = max(count for count, _ in colours)
    return 1 - background / n, ImageStat.Stat(body.convert("L")).stddev[0]


def test_ink_tells_an_empty_page_from_a_page() -> None:
    empty = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(empty).rectangle((0, 0, 400, 48), fill=(63, 81, 181))  # header bar only
    page = empty.copy()
    draw = ImageDraw.Draw(page)
    for y in range(120, 300, 14):
        draw.text((10, y), "expected free energy = risk + ambiguity", fill="black")
    assert ink(empty) == (0.0, 0.0)
    share, spread = ink(page)
    assert share > MIN_INK and spread > MIN_SPREAD


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no chromium on PATH (Debian: apt-get install chromium)",
)
@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_in_headless_chromium(served: str, name: str, tmp_path: Path) -> None:
    path, title, text = PAGES[name]
    url = served + path
    dom = chromium("--dump-dom", url, user_data=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    rendered = html.unescape(dom.stdout.decode("utf-8", errors="replace"))
    found = re.search(r"<title>(.*?)</title>", rendered, flags=re.DOTALL)
    assert found and found.group(1).strip().startswith(title), found
    assert text in rendered

    keep = os.environ.get("AIF_DOCS_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    png.unlink(missing_ok=True)
    shot = chromium(f"--screenshot={png}", url, user_data=tmp_path / "profile-shot")
    assert shot.returncode == 0 and png.exists(), shot.stderr.decode(errors="replace")[-2000:]
    with Image.open(png) as image:
        share, spread = ink(image)
    assert share > MIN_INK and spread > MIN_SPREAD, (
        f"{png} looks empty below the header: {share:.1%} ink, grey spread {spread:.1f}"
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no chromium on PATH (Debian: apt-get install chromium)",
)
def test_formulas_are_typeset_in_headless_chromium(served: str, tmp_path: Path) -> None:
    """MathJax, served by the site itself, turns every formula of a page into mathematics."""
    # Virtual time lets MathJax finish typesetting before the DOM is written out.
    dom = chromium(
        "--virtual-time-budget=10000",
        "--dump-dom",
        served + "notation/",
        user_data=tmp_path / "profile-math",
    )
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    rendered = dom.stdout.decode("utf-8", errors="replace")
    formulas = re.findall(r'<(span|div) class="arithmatex">(.*?)</\1>', rendered, flags=re.DOTALL)
    assert len(formulas) >= 10
    untypeset = [body[:80] for _, body in formulas if "<mjx-container" not in body]
    assert not untypeset, f"{len(untypeset)} formulas left as TeX: {untypeset[:3]}"
    assert "<mjx-merror" not in rendered, "MathJax reported a TeX error"
