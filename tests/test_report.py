"""`bench report` and the analysis notebook, on real results made here: a smoke run on sqlite and
on memory, a one-trial lose-node crash and a tiny sync-interval sweep. The notebook is executed
end to end so it cannot rot; the report must be self-contained, cite its sources, refuse mixed
workloads, flag partial runs and price with the given price file."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from backends.errors import DurabenchError
from bench import cost
from tests.helpers import start_bench

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    smoke = ["--workload", "smoke", "--results-dir", str(root), "--no-progress"]
    fault = ["--fault", "lose-node", "--trials", "1", "--restart-delay", "0.5", "--at", "1.5"]
    # the two fault-free runs beside the sweep, the heaviest (smoke offers 10 runs/s: light
    # next to one another on 2 cores; a loaded run is flagged, which the tests allow for)
    together = [
        ["sweep", "--backend", "sqlite", *fault, "--set", "sync-interval=0.5,2"],
        ["run", "--backend", "sqlite"],
        ["run", "--backend", "memory"],
    ]
    procs = [(args, start_bench(*args, *smoke)) for args in together]
    for args, proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{args}: {err[-2000:]}"
    out = bench("crash", "--backend", "sqlite", *fault, *smoke)
    assert out.returncode == 0, f"crash: {out.stderr[-2000:]}"
    return root


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def steady_dir(results: Path, backend: str) -> Path:
    """The fault-free `bench run` directory of a backend (crash and sweep trials have a fault)."""
    for p in sorted(results.iterdir()):
        if p.is_dir() and f"-{backend}-" in p.name and "fault" not in _manifest(p):
            return p
    raise AssertionError(f"no fault-free {backend} run in {results}")


def inputs(results: Path) -> list[str]:
    return [str(p) for p in sorted(results.iterdir()) if p.is_dir() or p.suffix == ".json"]


def report(argv: list[str], capsys) -> tuple[int, str]:
    """`bench report ...` through bench.cli when it is wired in, else through the same
    parse -> dispatch -> DurabenchError-to-exit-2 path the CLI uses."""
    from bench import cli
    from bench.report import commands

    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "report" in sub.choices:
        rc = cli.main(["report", *argv])
    else:
        ap = argparse.ArgumentParser(prog="bench")
        commands.add_parsers(ap.add_subparsers(dest="cmd", required=True))
        try:
            rc = commands.dispatch(ap.parse_args(["report", *argv]), cli.Console())
        except DurabenchError as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 2
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def full_report(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    from bench.report.build import build

    build([Path(p) for p in inputs(results)], out)
    return out


def test_report_files_exist_and_html_embeds_every_image(full_report: Path, results: Path) -> None:
    from bench.report.load import load_run

    pngs = sorted(p.name for p in full_report.glob("*.png"))
    for name in ("recovery-times.png", "sweep-sync-interval.png"):
        assert name in pngs
    # the comparison charts draw only trustworthy fault-free runs; on a loaded CI machine the
    # harness may flag both smoke runs (load generator behind), and then there is none to draw
    trusted = [load_run(steady_dir(results, b)).steady for b in ("sqlite", "memory")]
    if any(trusted):
        assert "latency-cdf-run.png" in pngs
        assert any(n.startswith("throughput-") for n in pngs)
    else:
        assert "latency-cdf-run.png" not in pngs
    assert any(n.startswith("fault-") for n in pngs), "the fault trial gets a shaded chart"
    html = (full_report / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "<script" not in html and "url(" not in html
    md = (full_report / "report.md").read_text()
    assert all(f"]({p})" in md for p in pngs), "every chart is in the Markdown too"
    assert md.count("*How to read:*") == len(pngs)
    # every sqlite run replicates: acks at risk over time, the per-ack CDF, a quotable sentence
    assert "## Exposure: acks that exist only on the node" in md
    assert "exposure-cdf.png" in pngs and any(n.startswith("exposure-1") for n in pngs)
    assert re.search(r"\*\*sqlite[^*]*\*\*: at [0-9.]+ runs/s offered, an ack is exposed", md)
    assert "**: ." not in md


def test_no_load_chart_from_runs_at_one_load(full_report: Path) -> None:
    assert not (full_report / "exposure-vs-load.png").exists()
    assert "Exposure against offered load" not in (full_report / "report.md").read_text()


def test_every_table_cites_existing_source_files(full_report: Path) -> None:
    md = (full_report / "report.md").read_text()
    blocks = re.split(r"\n(?=\| .* \|\n\|---)", md)[1:]  # each starts with a table
    assert len(blocks) >= 8
    for block in blocks:
        table_end = block.find("\n\n")
        after = block[table_end : table_end + 4000]
        assert "Sources" in after.split("\n#")[0], f"table without sources: {block[:200]}"
    cited = set(re.findall(r"`([^`]+\.(?:json|csv|toml))`", md))
    assert any(c.endswith("summary.json") for c in cited)
    assert any(c.endswith("-sweep.json") for c in cited)
    for c in cited:
        assert (full_report / c).exists(), f"cited file does not exist: {c}"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"seed": 2}, "different seed"),
        ({}, "changed"),  # same workload, seed and rate-scale, another schedule
    ],
)
def test_mixing_workloads_is_refused(
    results: Path, tmp_path: Path, capsys, change: dict, why: str
) -> None:
    run = steady_dir(results, "sqlite")
    other = tmp_path / f"{run.name}-other"
    shutil.copytree(run, other)
    m = json.loads((other / "manifest.json").read_text())
    m["schedule"].update(change, hash="f" * 64)
    (other / "manifest.json").write_text(json.dumps(m))
    rc, err = report([str(run), str(other), "--out", str(tmp_path / "r")], capsys)
    assert rc == 2
    assert "ffffffffffff" in err and why in err
    assert json.loads((run / "manifest.json").read_text())["schedule"]["hash"][:12] in err
    assert "rate-scale" in err and not (tmp_path / "r" / "report.md").exists()


def test_a_load_series_draws_exposure_against_offered_load(
    results: Path, tmp_path: Path, capsys
) -> None:
    """One workload and seed at two rate-scales (a real x4 run beside the fixture's x1): each
    rate-scale its own configuration, and exposure drawn against the offered load."""
    out = bench(
        *("run", "--backend", "sqlite", "--workload", "smoke", "--rate-scale", "4"),
        *("--results-dir", str(tmp_path / "x4"), "--no-progress"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (x4,) = [p for p in (tmp_path / "x4").iterdir() if p.is_dir()]
    x1 = steady_dir(results, "sqlite")
    rc, err = report([str(x1), str(x4), "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "![Exposure against offered load](exposure-vs-load.png)" in md
    assert (tmp_path / "r" / "exposure-vs-load.png").stat().st_size > 0
    assert "sqlite rate_scale=1" in md and "sqlite rate_scale=4" in md
    for run, scale in ((x1, "1"), (x4, "4")):
        s = json.loads((run / "summary.json").read_text())
        p99 = s["exposure"]["exposure_s"]["p99"]
        row = f"| sqlite | {scale} | {s['offered_rate_per_s']:.3g} |"
        assert row in md, row
        line = next(x for x in md.splitlines() if x.startswith(row))
        assert f"{p99:.3g} s" in line or "<" in line  # its own p99 (or below the resolution)


def test_partial_run_is_flagged_and_left_out(results: Path, tmp_path: Path, capsys) -> None:
    mem, sql = steady_dir(results, "memory"), steady_dir(results, "sqlite")
    part = tmp_path / f"{mem.name}-partial"
    shutil.copytree(mem, part)
    m = json.loads((part / "manifest.json").read_text())
    m.update(partial=True, partial_reason="interrupted (Ctrl-C)", run_id=part.name)
    (part / "manifest.json").write_text(json.dumps(m))
    rc, _ = report([str(sql), str(part), "--out", str(tmp_path / "r")], capsys)
    assert rc == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"{part.name}: PARTIAL result: interrupted (Ctrl-C)" in md
    assert "Excluded from every table and chart" in md
    tput = md.split("| backend group | basis |")[1].split("\n\n")[0]
    assert "memory" not in tput, "a partial run never feeds the aggregates"
    assert not list((tmp_path / "r").glob("*memory*.png"))


def test_failed_and_untrusted_runs_stay_visible_outside_medians(
    results: Path, tmp_path: Path, capsys
) -> None:
    """A fault-free run whose verdict failed, and one whose load generator fell behind, each keep
    a flagged row of their own in the throughput and cost tables (with a banner) and never move
    the median of their backend group."""
    mem = steady_dir(results, "memory")
    bad, lag = tmp_path / f"{mem.name}-bad", tmp_path / f"{mem.name}-lag"
    for d, change in (
        (bad, {"verdict": False}),
        (lag, {"untrusted": ["the load generator fell behind its schedule: test"]}),
    ):
        shutil.copytree(mem, d)
        s = json.loads((d / "summary.json").read_text())
        s.update(change)
        s["throughput"]["runs_per_s"] = 987.0 if d is lag else 876.0  # visible if mixed in
        (d / "summary.json").write_text(json.dumps(s))
    rc, _ = report([str(mem), str(bad), str(lag), "--out", str(tmp_path / "r")], capsys)
    assert rc == 0
    md = (tmp_path / "r" / "report.md").read_text()
    tput = md.split("| backend group | basis |")[1].split("\n\n")[0]
    rows = tput.splitlines()[2:]
    median = next(x for x in rows if x.startswith("| memory"))
    assert "1 run(s)" in median and "987" not in median and "876" not in median
    bad_row = next(x for x in rows if bad.name in x)
    lag_row = next(x for x in rows if lag.name in x)
    assert "NOT IN MEDIAN: verdict FALSE" in bad_row and "876" in bad_row
    assert "NOT IN MEDIAN: untrusted" in lag_row and "987" in lag_row
    assert f"{bad.name}: correctness verdict FALSE" in md and "Shown on its own row" in md
    cost_rows = _cost_summary(md)
    assert bad.name in cost_rows and lag.name in cost_rows and "NOT IN MEDIAN" in cost_rows


def _cost_summary(md: str) -> str:
    return md.split("**Cost summary**")[1].split("\n\n")[1]


def test_costs_follow_the_price_file(results: Path, tmp_path: Path, capsys) -> None:
    sql = steady_dir(results, "sqlite")
    data = tomllib.loads(cost.DEFAULT_PRICES.read_text())
    text = cost.DEFAULT_PRICES.read_text().replace(
        f"value = {data['prices']['vcpu_hour']['value']}", "value = 4.048"
    )
    dearer = tmp_path / "dear.toml"
    dearer.write_text(text)
    rc1, _ = report([str(sql), "--out", str(tmp_path / "a")], capsys)
    rc2, _ = report([str(sql), "--out", str(tmp_path / "b"), "--prices", str(dearer)], capsys)
    assert rc1 == rc2 == 0
    a, b = ((tmp_path / d / "report.md").read_text() for d in "ab")
    assert _cost_summary(a) != _cost_summary(b)
    assert "4.048" in b and "dear.toml" in b, "the report shows which prices it used"
    assert "seaweedfs (local stand-in) -> S3" in _cost_summary(a), "S3 replaces SeaweedFS"
    store_cpu = next(x for x in a.splitlines() if x.startswith("| CPU: store / server"))
    (priced,) = [c for c in store_cpu.split("|") if "CPU scales linearly" in c]
    assert "litestream" in priced and "seaweedfs" not in priced, "no server price for a stand-in"

    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace("value = 4.048", 'value = "cheap"'))
    rc, err = report([str(sql), "--out", str(tmp_path / "c"), "--prices", str(broken)], capsys)
    assert rc == 2 and "vcpu_hour" in err and "must be a number" in err
    rc, err = report([str(sql), "--out", str(tmp_path / "c"), "--prices", str(tmp_path)], capsys)
    assert rc == 2 and "prices file" in err


def test_per_run_and_per_time_costs_scale_differently(results: Path) -> None:
    from bench.report.load import load_run
    from bench.report.usage import usage_of

    r = load_run(steady_dir(results, "sqlite"))
    usage = usage_of(r.manifest, r.summary, r.csv("runs.csv"), r.csv("resources.csv"))
    prices = cost.load_prices()
    low, high = cost.estimate(usage, prices, 10), cost.estimate(usage, prices, 20)
    assert low.lines and all(line.assumption for line in low.lines)
    for a, b in zip(low.lines, high.lines, strict=True):
        if a.kind == "per-run":
            assert b.per_month == pytest.approx(2 * a.per_month)
            assert b.per_million_runs == pytest.approx(a.per_million_runs)
        else:
            assert a.per_million_runs is None and b.per_month == pytest.approx(a.per_month)
    assert any("scale with time, not runs" in x.assumption for x in low.lines)


def test_notebook_runs_end_to_end(results: Path, monkeypatch) -> None:
    monkeypatch.setenv("DURABENCH_RESULTS", str(results))
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, "latency CDF, throughput (steady + fault), RPO sweep"
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any("image/png" in o.get("data", {}) for o in last.outputs), "the sweep is charted"


# --- the decision summary (issue 14) ----------------------------------------------------------


def _decision(md: str) -> str:
    return md.split("## Decision summary")[1].split("\n## ")[0]


def test_report_opens_with_a_decision_summary_linked_to_sections_and_files(
    full_report: Path,
) -> None:
    from bench.report.doc import anchor

    md = (full_report / "report.md").read_text()
    first_h2 = re.search(r"^## (.+)$", md, re.M).group(1)
    assert first_h2 == "Decision summary"
    dec = _decision(md)
    rows = [x for x in dec.splitlines() if x.startswith("| [")]
    labels = [re.match(r"\| \[([^\]]+)\]", x).group(1) for x in rows]
    assert "memory" in labels and any(lab.startswith("sqlite") for lab in labels)
    assert len(labels) == len(set(labels)), "one row per configuration"
    headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", md, re.M)}
    for row in rows:
        cells = row.strip("|").split(" | ")
        assert len(cells) == 9 and all("](#" in c for c in cells), row
        for target in re.findall(r"\]\(#([^)]+)\)", row):
            assert target in headings, f"link to a missing section: {target}"
        for f in re.findall(r"\[↗\d*\]\(([^)]+)\)", row):
            assert (full_report / f).exists(), f"linked file does not exist: {f}"
    mem = next(x for x in rows if x.startswith("| [memory]"))
    assert "no fault trial" in mem and ("kept up with" in mem or "fell behind" in mem)
    header = next(x for x in dec.splitlines() if x.startswith("| configuration |"))
    assert "| exposure |" in header and "not measured" in mem
    # one paragraph per configuration, from the same figures
    for lab in labels:
        assert f"**{lab}**:" in dec
    assert "No fault was injected: what it loses under a fault is not measured." in dec


def _trial_copy(results: Path, tmp: Path, name: str, rpo: float, lost: int, bound: float) -> Path:
    """A lose-node trial of the fixture with its measured loss and promise set by the test."""
    group = json.loads(next(results.glob("*-crash.json")).read_text())
    src = Path(group["rows"]["lose-node"][0]["run_dir"])
    d = tmp / f"{src.name}-{name}"
    shutil.copytree(src, d)
    s = json.loads((d / "summary.json").read_text())
    s["checks"]["write_loss"].update(rpo_s=rpo if lost else None, lost_count=lost)
    s["checks"]["promise"]["promise"]["max_lost_age_s"] = bound
    s["checks"]["promise"]["promise_label"] = f"<= {bound:g} s"
    (d / "summary.json").write_text(json.dumps(s))
    return d


def test_rpo_budget_marks_what_exceeds_it(results: Path, tmp_path: Path, capsys) -> None:
    over = _trial_copy(results, tmp_path, "over", rpo=1.8, lost=5, bound=2.5)
    rc, _ = report([str(over), "--out", str(tmp_path / "a"), "--rpo-budget", "1"], capsys)
    assert rc == 0
    dec = _decision((tmp_path / "a" / "report.md").read_text())
    assert "RPO budget 1 s" in dec and "⚠ OVER: lose-node lost acks up to 1.8 s old" in dec
    rc, _ = report([str(over), "--out", str(tmp_path / "b"), "--rpo-budget", "3"], capsys)
    dec = _decision((tmp_path / "b" / "report.md").read_text())
    assert "OVER" not in dec and "within: lose-node: worst measured 1.8 s" in dec
    rc, _ = report([str(over), "--out", str(tmp_path / "c"), "--rpo-budget", "2"], capsys)
    dec = _decision((tmp_path / "c" / "report.md").read_text())
    assert (
        "⚠ not promised: lose-node: worst measured 1.8 s, but the promise allows up to 2.5 s" in dec
    )
    assert "OVER" not in dec
    none = _trial_copy(results, tmp_path, "none", rpo=0, lost=0, bound=0.0)
    rc, _ = report([str(none), "--out", str(tmp_path / "d"), "--rpo-budget", "0"], capsys)
    dec = _decision((tmp_path / "d" / "report.md").read_text())
    assert "within: lose-node: worst measured 0 s" in dec and "0 acks lost" in dec
    rc, err = report([str(none), "--out", str(tmp_path / "e"), "--rpo-budget", "-1"], capsys)
    assert rc == 2 and "--rpo-budget must be" in err


def test_rpo_budget_names_a_swept_setting_that_met_it() -> None:
    from bench.report import budget
    from bench.report.configs import Config, FaultFigures

    def ff(rpo: float, bound: float, files: list[str]) -> FaultFigures:
        return FaultFigures(
            "lose-node", 1, f"<= {bound:g} s", "1 kept", [bound], 3, rpo, 1.0, 2.0, files
        )

    c = Config("sqlite sync_interval_s=5", "sqlite", [])
    c.faults = {"lose-node": ff(6.0, 6.5, ["own"])}
    c.sweep_points = [
        ("sync-interval=5", 5.0, ff(6.0, 6.5, ["own"])),
        ("sync-interval=0.1", 0.1, ff(0.3, 0.6, ["a"])),
        ("sync-interval=1", 1.0, ff(1.2, 1.5, ["b"])),
        ("sync-interval=2", 2.0, ff(2.4, 3.0, ["c"])),
    ]
    text = budget.mark(c, 1.5)
    assert text.startswith("⚠ OVER: lose-node lost acks up to 6 s old")
    assert "a sweep measured `sync-interval=1`: worst measured 1.2 s, promise <= 1.5 s" in text
    c.sweep_points = c.sweep_points[:1]
    assert budget.mark(c, 1.5).endswith("no swept setting measured better")
    c.sweep_points = []
    assert budget.mark(c, 1.5).endswith("no sweep ran")


def test_percentile_spectrum_reads_the_histogram_on_a_nines_axis() -> None:
    from hdrh.histogram import HdrHistogram

    from bench.report import spectrum

    h = HdrHistogram(1, 60_000_000_000, 3)
    for ms in range(1, 10_001):  # 1 ms .. 10 s, one value each
        h.record_value(ms * 1_000)  # microseconds, as in summary.json
    assert spectrum.nines(99) == pytest.approx(2) and spectrum.nines(99.99) == pytest.approx(4)
    assert spectrum.reach(10_000) == pytest.approx(4) and spectrum.reach(100) == pytest.approx(2)
    xs, ys = spectrum.curve(h)
    assert xs[0] == 0 and xs[-1] == pytest.approx(4)
    at = {round(x, 2): y for x, y in zip(xs, ys, strict=True)}
    p99 = min(at, key=lambda x: abs(x - 2))
    assert ys == sorted(ys) and at[p99] == pytest.approx(9.9, rel=0.02)
    few = HdrHistogram(1, 60_000_000_000, 3)
    for ms in range(1, 101):
        few.record_value(ms * 1_000)
    assert spectrum.curve(few)[0][-1] == pytest.approx(2), "100 values say nothing past p99"
    fig = spectrum.percentile_spectrum({"x": (few, 1)}, "t", {"x": "#000"})
    assert fig.axes[0].get_xlim() == (0, 4)


def test_spectrum_beside_the_cdfs_and_time_series_start_at_the_schedules_zero(
    full_report: Path, results: Path
) -> None:
    from bench.report import charts, series
    from bench.report.load import load_run

    md = (full_report / "report.md").read_text()
    if "latency-cdf-run.png" in md:
        cdf, spec = md.index("(latency-cdf-run.png)"), md.index("(latency-spectrum-run.png)")
        assert cdf < spec < md.index("(latency-cdf-step_commit.png)".replace("_", "-"))
    r = load_run(steady_dir(results, "sqlite"))
    assert r.schedule_start_t > 0.5, "the fixture's deployment takes time to start"
    ts = series.on_schedule_clock(r)
    assert ts["t"].min() == pytest.approx(r.schedule_start_t), "bucket 0 starts at the zero"
    assert ts["arrivals"].sum() == len(r.csv("runs.csv")), "no arrival lost by rebucketing"
    fig = charts.throughput_over_time(ts, r.schedule_start_t, 0.5, None, "x", "#000", "t")
    assert fig.axes[0].get_xlim()[0] == 0, "no negative-time bucket drawn"


# --- portable report, rendered in a real browser ------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:tmp|work|home|root|usr|var|opt|srv|mnt|Users)/")

# appended to a copy of report.html (the report itself carries no script): after the page has
# loaded, write what a reader would see broken into the DOM, which --dump-dom prints
PROBE = """<script>
window.addEventListener("load", () => {
  const bad = [];
  const imgs = [...document.images];
  imgs.forEach((i) => { if (!i.complete || i.naturalWidth === 0) bad.push("image: " + i.alt); });
  const hs = [...document.querySelectorAll("h2")];
  hs.forEach((h) => {
    let n = h.nextElementSibling, text = "";
    while (n && n.tagName !== "H2") { text += n.innerText + (n.querySelector("img") ? "img" : "");
      n = n.nextElementSibling; }
    if (!text.trim()) bad.push("empty section: " + h.innerText);
  });
  document.querySelectorAll('a[href^="#"]').forEach((a) => {
    if (!document.getElementById(a.getAttribute("href").slice(1))) bad.push("dead link " + a.href);
  });
  const dec = document.querySelector("table.decision");
  const top = dec ? dec.getBoundingClientRect().top : -1;
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({bad, images: imgs.length, sections: hs.length, top,
    height: window.innerHeight});
  document.body.appendChild(out);
});
</script>"""


def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def headless(exe: str, profile: Path, *args: str) -> list[str]:
    """Chromium flags for a quiet, sandbox-free, offline render with a fresh profile."""
    return [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        *args,
    ]


def test_report_names_no_machine_paths(full_report: Path) -> None:
    """Paths are relative to the report (or the results root); the price file travels with it."""
    ups = "../" * (len(full_report.resolve().parts) - 1)  # enough to climb to the root
    for name in ("report.md", "report.html"):
        text = re.sub(r"base64,[^\"]*", "", (full_report / name).read_text())
        assert not ABSOLUTE.search(text), f"{name}: {ABSOLUTE.search(text).group(0)}"
        assert ups not in text, f"{name}: a relative path climbs to the filesystem root"
    assert (full_report / "prices.toml").exists() and "`prices.toml`" in (
        full_report / "report.md"
    ).read_text()


def test_report_renders_in_a_real_browser(full_report: Path, tmp_path: Path) -> None:
    exe = browser()
    if exe is None:
        pytest.skip(
            f"no Chromium/Chrome on PATH (tried {', '.join(BROWSERS)}): the report was "
            "not rendered in a real browser"
        )
    page = full_report / "probe.html"
    html = (full_report / "report.html").read_text()
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    try:
        out = subprocess.run(
            headless(
                exe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()
            ),
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        page.unlink()
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert m, f"the page did not finish loading in {exe}: {out.stderr[-1500:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["bad"] == [], probe["bad"]
    assert probe["images"] == len(list(full_report.glob("*.png"))) > 0
    assert probe["sections"] >= 6
    assert 0 <= probe["top"] < probe["height"], "the decision summary is on the first screen"


def test_kept_up_needs_the_offered_rate_and_the_answer_lines_say_only_what_was_measured() -> None:
    """A backend that finished every run, but 2.5 s after the schedule ended at 6 of the 10
    runs/s offered, fell behind (the first criterion, 'no run unfinished', called it kept up)."""
    from bench.report import answer, configs
    from bench.report.configs import Config
    from bench.report.load import Run

    def run(done: float, end_t: float) -> Run:
        summary = {
            "throughput": {"runs_per_s": done},
            "schedule_rate_per_s": 10.0,
            "offered_rate_per_s": 5.0,
            "runs": {"unfinished": 0},
            "latency": {"run": {"censored": 0, "p99_s": 0.3}, "step_commit": {"p99_s": 0.01}},
            "window": {"end_t": end_t},
            "schedule_start_t": 2.0,
        }
        return Run(Path("x"), {"schedule": {"duration_s": 3.0}}, summary)

    slow, fast = configs.speed([run(6.02, 7.5)]), configs.speed([run(10.4, 5.05)])
    assert not slow.kept_up and slow.late_s == pytest.approx(2.5) and slow.offered == 10.0
    assert fast.kept_up
    a, b, c = Config("a", "x", []), Config("b", "x", []), Config("c", "x", [])
    a.speed, b.speed = fast, slow
    a.costs = {"self-hosted": (30.0, []), "managed": (20.0, [])}
    b.costs = {"self-hosted": (10.0, [])}
    line = answer.speed_line([a, b, c], 10)
    assert "kept up with the 10 runs/s offered: a; fell behind: b; speed not measured: c" in line
    assert "not the load offered" in answer.speed_line([a], 50), "a target never offered"
    cost = answer.cost_line([a, b, c], 10)
    assert "b $10.00 (self-hosted), a $20.00 (managed); not priced: c" in cost
