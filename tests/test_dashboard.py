"""`smol dashboard` in a real browser: headless Chromium (Debian's package) loads the page, runs its
JavaScript against the live API and the DOM it leaves is checked against the store read with
Python's sqlite3: the plotted points, the baseline band, events, and curves growing while a
training runs. Bad requests get JSON 4xx."""
import json
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import smol_binary
from test_runs import long_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(url):
    assert CHROMIUM, "chromium is missing: scripts/install.sh installs Debian's chromium"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def elements(html, tag, **match):
    p = Elements()
    p.feed(html)
    return [a for t, a in p.found if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in match.items())]


@pytest.fixture
def dashboard(tmp_path):
    procs = []

    def start(store):
        p = subprocess.Popen([smol_binary(), "dashboard", "--store", store, "--port", "0", "--reports", tmp_path / "reports"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, line + p.stderr.read()
        return line.split(" on ")[1].split(" ")[0].rstrip("/")
    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


def values(store, run, metric):
    con = sqlite3.connect(store)
    try:
        return con.execute("SELECT tokens, value FROM metric WHERE run_id = ? AND name = ? ORDER BY step", (run, metric)).fetchall()
    finally:
        con.close()


def plotted(html, run, cls="raw"):
    svg = elements(html, "svg", id="plot")[0]
    a = {k: float(svg["data-" + k]) for k in ("x-min", "x-max", "y-min", "y-max", "left", "top", "width", "height")}
    line = elements(html, "polyline", data_run=str(run), **{"class": cls})[0]
    p = np.array([[float(c) for c in q.split(",")] for q in line["points"].split()])
    x = a["x-min"] + (p[:, 0] - a["left"]) / a["width"] * (a["x-max"] - a["x-min"])
    y = a["y-max"] - (p[:, 1] - a["top"]) / a["height"] * (a["y-max"] - a["y-min"])
    return x, y, a


def test_page_plots_the_runs_points_and_baseline_band(smol, config, tmp_path, dashboard):  # noqa: F811
    store = tmp_path / "runs.sqlite"
    (tmp_path / "base.yaml").write_text(long_config(config, 40))
    smol("train", tmp_path / "base.yaml", "--out", tmp_path / "base", "--store", store, "--no-samples")
    (tmp_path / "guarded.yaml").write_text(long_config(config, 40, "baseline: {run: base, tolerance: 0.05, patience: 2}\n")
                                           .replace("  seed: 11\n", "  seed: 12\n"))
    smol("train", tmp_path / "guarded.yaml", "--out", tmp_path / "guarded", "--store", store, "--no-samples")
    url = dashboard(store)
    html = dump_dom(url + "/?runs=1,2&metric=val_loss")
    for run in (1, 2):
        x, y, a = plotted(html, run)
        expected = np.array(values(store, run, "val_loss"), dtype=float)
        assert len(x) == len(expected)
        assert x == pytest.approx(expected[:, 0], abs=(a["x-max"] - a["x-min"]) / a["width"] * 0.01)
        assert y == pytest.approx(expected[:, 1], abs=(a["y-max"] - a["y-min"]) / a["height"] * 0.01)
    band = elements(html, "polygon", **{"class": "baseline-band", "data_run": "2", "data_baseline": "1"})
    assert len(band) == 1 and len(band[0]["points"].split()) == 2 * len(values(store, 1, "val_loss"))
    assert "checkpoint" in html and "guarded" in html and "finished" in html


def test_page_reads_the_store_while_a_training_runs(smol, config, tmp_path, dashboard):  # noqa: F811
    store = tmp_path / "runs.sqlite"
    (tmp_path / "long.yaml").write_text(long_config(config, 3000).replace("  checkpoint_every: 10\n", "  checkpoint_every: 0\n"))
    p = subprocess.Popen([smol_binary(), "train", tmp_path / "long.yaml", "--out", tmp_path / "long", "--store", store, "--no-samples"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (store.exists() and values(store, 1, "loss")):
            time.sleep(0.2)
        url = dashboard(store)
        first = len(plotted(dump_dom(url + "/?runs=1&metric=loss"), 1)[0])
        time.sleep(2)
        html = dump_dom(url + "/?runs=1&metric=loss")
        second = len(plotted(html, 1)[0])
        assert 0 < first < second and "running" in html
    finally:
        p.kill()
        p.wait()


def test_bad_requests_get_json_4xx(smol, config, tmp_path, dashboard):  # noqa: F811
    store = tmp_path / "runs.sqlite"
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--no-samples", "--set", "training.steps=3")
    url = dashboard(store)
    for path, status in (("/api/runs/99", 404), ("/api/runs/abc", 400), ("/api/runs/1/series", 400),
                         ("/api/runs/1/series?metric=nope", 404), ("/nothing", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, timeout=30)
        assert e.value.code == status, path
        assert json.loads(e.value.read())["error"]
    with urllib.request.urlopen(url + "/api/runs/1/series?metric=loss", timeout=30) as r:
        view = json.loads(r.read())
        assert [p["step"] for p in view["points"]] == [1, 2, 3] and view["total"] == 3 and not view["downsampled"]
    for query in ("from=x", "from=5&to=1", "points=1", "format=xml"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/api/runs/1/series?metric=loss&" + query, timeout=30)
        assert e.value.code == 400 and json.loads(e.value.read())["error"], query


def test_ablation_reports_and_their_plots(smol, config, tmp_path, dashboard):  # noqa: F811
    store = tmp_path / "runs.sqlite"
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--no-samples", "--set", "training.steps=3")
    rep = tmp_path / "reports" / "sweep1"
    rep.mkdir(parents=True)
    (rep / "report.json").write_text("{}")
    (rep / "report.md").write_text("# Ablation: sweep1\n| code25 | neutral |\n")
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="5" height="5"/></svg>'
    (rep / "val_loss.svg").write_text(svg)
    url = dashboard(store)
    html = dump_dom(url + "/")
    assert "Ablation: sweep1" in html
    imgs = elements(html, "img", **{"class": "ablation-plot"})
    assert [i["src"] for i in imgs] == ["/api/ablations/sweep1/val_loss.svg"]
    with urllib.request.urlopen(url + imgs[0]["src"], timeout=30) as r:
        assert r.read().decode() == svg and r.headers["Content-Type"] == "image/svg+xml"
    for path, status in (("/api/ablations/sweep1/report.md", 400), ("/api/ablations/sweep1/nope.svg", 404),
                         ("/api/ablations/..%2F..%2Fetc/passwd.svg", 400)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + path, timeout=30)
        assert e.value.code in (status, 404), path


def long_store(smol, config, tmp_path, runs=4, steps=200_000):
    """A store holding `runs` runs of `steps` steps each (the issue's 2.4M-row store, in its
    shape): one real training makes the schema and a run row; the rest is inserted here."""
    store = tmp_path / "runs.sqlite"
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--no-samples", "--set", "training.steps=3")
    con = sqlite3.connect(store)
    cols = [c[1] for c in con.execute("PRAGMA table_info(run)")]
    rng = np.random.default_rng(0)
    curves = {}
    for r in range(runs):
        run_id = con.execute(f"INSERT INTO run ({','.join(c for c in cols if c != 'id')}) "
                             f"SELECT {','.join(c for c in cols if c != 'id')} FROM run WHERE id = 1").lastrowid
        step = np.arange(1, steps + 1)
        loss = 2 + 8 / np.sqrt(step) + 0.05 * rng.standard_normal(steps) + 0.1 * r
        loss[123_457] = 50.0          # a spike that downsampling must not hide
        curves[run_id] = loss
        con.executemany("INSERT INTO metric (run_id, step, tokens, name, value, time) VALUES (?, ?, ?, 'loss', ?, 0)",
                        ((run_id, int(s), int(s) * 4096, float(v)) for s, v in zip(step, loss)))
    con.commit()
    con.close()
    return store, curves


def test_long_runs_are_downsampled_by_the_server_and_zoom_to_full_resolution(smol, config, tmp_path, dashboard):  # noqa: F811
    store, curves = long_store(smol, config, tmp_path)
    url = dashboard(store)
    run = 2
    steps = len(curves[run])
    t0 = time.time()
    with urllib.request.urlopen(f"{url}/api/runs/{run}/series?metric=loss", timeout=60) as r:
        body = r.read()
    seconds = time.time() - t0
    view = json.loads(body)
    # ~2,000 points instead of 200,000: about 0.3 MB of JSON instead of 12 MB.
    assert view["downsampled"] and view["total"] == steps and len(view["points"]) == 2000 and len(body) < 400_000, len(body)
    print(f"series of {steps} steps: {len(body)} bytes in {seconds:.2f} s")
    # Each bucket against NumPy over the same equal-width step buckets.
    step = np.arange(1, steps + 1)
    bucket = (step - 1) * 2000 // steps
    loss = curves[run]
    for i in (0, 1, 617, 1234, 1999):
        sel = bucket == i
        p = view["points"][i]
        assert p["n"] == sel.sum() and p["step"] == pytest.approx(step[sel].mean())
        assert p["value"] == pytest.approx(loss[sel].mean(), rel=1e-12)
        assert p["min"] == pytest.approx(loss[sel].min()) and p["max"] == pytest.approx(loss[sel].max())
    assert max(p["max"] for p in view["points"]) == 50.0      # the spike survives
    # Zoomed into 1,500 steps: every point, as stored.
    with urllib.request.urlopen(f"{url}/api/runs/{run}/series?metric=loss&from=100001&to=101500", timeout=60) as r:
        zoom = json.loads(r.read())
    assert not zoom["downsampled"] and zoom["total"] == 1500
    assert [p["value"] for p in zoom["points"]] == pytest.approx(loss[100_000:101_500].tolist(), rel=1e-15)
    # The raw series stays exportable.
    with urllib.request.urlopen(f"{url}/api/runs/{run}/series?metric=loss&format=csv", timeout=60) as r:
        lines = r.read().decode().splitlines()
    assert lines[0] == "step,tokens,value" and len(lines) == steps + 1
    assert float(lines[123_458].split(",")[2]) == 50.0

    # The page, in headless Chromium, over four such runs.
    html = dump_dom(url + "/?runs=2,3,4,5&metric=loss&x=steps")
    for r in (2, 3, 4, 5):
        x, y, a = plotted(html, r)
        assert len(x) == 2000
        line = elements(html, "polyline", data_run=str(r), **{"class": "raw"})[0]
        assert line["data-total"] == str(steps) and line["data-downsampled"] == "true"
        band = elements(html, "polygon", data_run=str(r), **{"class": "range"})
        assert len(band) == 1 and len(band[0]["points"].split()) == 4000
    assert a["y-max"] >= 50.0                          # the plot's range holds the spike
    html = dump_dom(url + "/?runs=2&metric=loss&x=steps&from=100001&to=101500")
    x, y, a = plotted(html, 2)
    assert len(x) == 1500 and not elements(html, "polygon", **{"class": "range"})
    assert y == pytest.approx(loss[100_000:101_500], abs=(a["y-max"] - a["y-min"]) / a["height"] * 0.01)
    assert x == pytest.approx(np.arange(100_001, 101_501), abs=(a["x-max"] - a["x-min"]) / a["width"] * 0.01)
