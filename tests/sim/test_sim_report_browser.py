"""The HTML report renders in a real browser (Debian's headless Chromium) and its charts are drawn."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tillvault.sim.report import chromium_args, chromium_path, export_png, render_html, write_report
from tillvault.sim.simulate import Outage, Scenario, SimResult, run_scenario

TV_BLUE = (0x1C, 0x7E, 0xD6)
NAIVE_ORANGE = (0xE8, 0x59, 0x0C)


@pytest.fixture(scope="module")
def run() -> SimResult:
    """A small run with every kind of event: surge, outage, update download, a naive store that fills."""
    return run_scenario(
        Scenario(
            days=4,
            per_day=200,
            surge=10,
            surge_days=(1,),
            capacity="2MiB",
            outages=(Outage.parse("2@12:00+8h"),),
            update_day=3,
            update_hour=5.0,
        )
    )


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = chromium_path()
    if exe is None:
        print("chromium not installed (scripts/setup-test-deps.sh installs it): skipping the browser test")
        pytest.skip("chromium is not installed (run scripts/setup-test-deps.sh as root)")
    return exe


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG, unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 4 if colour == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line if channels == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3)))
        prev = line
    return width, height, rows


def count_colour(rows: list[bytes], rgb: tuple[int, int, int], tolerance: int = 24) -> int:
    """Pixels within ``tolerance`` of ``rgb``."""
    n = 0
    for row in rows:
        for i in range(0, len(row), 3):
            if all(abs(row[i + k] - rgb[k]) <= tolerance for k in range(3)):
                n += 1
    return n


def test_sim_report_is_self_contained(run: SimResult) -> None:
    page = render_html(run.figures, run.timeline)
    assert page.count("<svg") == 3
    assert not re.search(r'(src|href)="(https?:)?//', page), "no external resources"
    assert "<link" not in page
    for kind in ("settlement", "surge", "outage", "update"):
        assert f"event-{kind}" in page or f'class="{kind}"' in page, kind


def test_sim_report_renders_in_chromium(run: SimResult, chromium: str, tmp_path: Path) -> None:
    report = write_report(tmp_path / "report.html", run.figures, run.timeline)
    base = chromium_args(chromium, tmp_path / "profile")
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The browser parsed three charts with their series drawn as paths.
    assert dom.stdout.count("<svg") == 3
    tv = re.search(r'class="series series-tillvault" d="([^"]+)"', dom.stdout)
    assert tv is not None and tv.group(1).count("L") > 20
    assert 'class="series series-naive"' in dom.stdout
    assert re.search(r'class="pressure pressure-\w+"', dom.stdout)
    assert 'class="bar bar-naive"' in dom.stdout
    shot = tmp_path / "page.png"
    done = subprocess.run(
        [*base, "--window-size=1100,1000", f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == (1100, 1000)
    # Not blank: the TillVault line (blue) and the naive store's (orange) are on screen.
    assert count_colour(rows, TV_BLUE) > 200
    assert count_colour(rows, NAIVE_ORANGE) > 200


def test_sim_png_export(run: SimResult, chromium: str, tmp_path: Path) -> None:
    files = export_png(run.figures, run.timeline, tmp_path / "png")
    assert [f.name for f in files] == ["storage.png", "runway.png", "compare.png"]
    width, height, rows = decode_png(files[0].read_bytes())
    assert width == 980 and height == 400
    assert count_colour(rows, TV_BLUE) > 100
