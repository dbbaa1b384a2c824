"""The bring-up report of the simulated two-node lab, cold then warm (issue 14, item 3).

`qnetlab bringup` on the shipped configs (moved to free ports, as in
tests/test_network_bringup.py), twice: from cold (every calibration runs) and warm (all
fresh, only the delivery). Checked: the structure of the HTML and JSON (contents, provenance
with the config's hash, captions, the graph as inline SVG coloured by state, the link section
with its histograms, rates against the prediction and every error counter explained, the
session in sentences), and that the warm report shows every current value with its error,
age and timeout. Then `qnetlab link` once more: its own report with the link section.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qnetlab.cli import main
from qnetlab.sequences.calibration.graph_svg import STATE_COLOURS

from conftest import network_lab_on_free_ports

pytestmark = [pytest.mark.slow, pytest.mark.processes]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    lab = network_lab_on_free_ports(tmp_path_factory.mktemp("report_lab"))
    folder = lab.parent.parent / "lab_data"
    out: dict[str, Any] = {"config": lab}
    for run in ("cold", "warm"):
        before = set(folder.glob("bringup_*.json"))
        code = main(["bringup", str(lab), "--pairs", "40", "--quiet"])
        (summary,) = set(folder.glob("bringup_*.json")) - before
        out[run] = {"code": code, "json": json.loads(summary.read_text()),
                    "html": summary.with_suffix(".html").read_text(encoding="utf-8")}
    code = main(["link", str(lab), "--pairs", "20"])
    (summary,) = folder.glob("link_*.json")
    out["link"] = {"code": code, "json": json.loads(summary.read_text()),
                   "html": summary.with_suffix(".html").read_text(encoding="utf-8")}
    yield out


def test_the_cold_report_has_contents_provenance_captions_and_the_graph_as_svg(
        reports: dict[str, Any]) -> None:
    cold = reports["cold"]
    assert cold["code"] == 0, cold["json"]["verdict"]
    report, page = cold["json"], cold["html"]
    anchors = re.findall(r"<a href='#([^']+)'>", page)
    ids = re.findall(r" id='([^']+)'", page)
    assert len(anchors) == len(report["contents"]) and set(anchors) <= set(ids)
    assert {"Summary", "Calibrated values now", "What was done", "Figures", "Link",
            "Provenance"} <= set(report["contents"])
    prov = report["provenance"]
    config: Path = reports["config"]
    assert prov["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert prov["profile"] == "sim" and isinstance(prov["seed"], int)
    assert any(r.startswith("node_a run ") for r in prov["run_ids"])
    assert any(r.startswith("link run ") for r in prov["run_ids"])
    # Every figure captioned (a numbered caption per figure element), none by file name.
    assert page.count("<figure>") == page.count("<figcaption>Figure ") >= 10
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert not any(c.endswith(".png") for c in captions)
    # The graph inline as SVG, every node coloured by its state, with a legend.
    svg = page[page.index("<svg"):page.index("</svg>")]
    states = dict(re.findall(r'data-node="([^"]+)" data-state="([^"]+)"', svg))
    assert set(states) == set(report["states"]) and set(states.values()) == {"calibrated"}
    assert STATE_COLOURS["calibrated"] in svg and 'class="legend"' in svg
    # The session in sentences, not the terminal's log lines.
    notes = report["notes"]
    assert "node_a.dark_counts was calibrated (run 1) because it was never calibrated" in \
        " ".join(notes)
    assert not any(n.startswith(("state ", "CALIBRATED")) or "; why:" in n for n in notes)


def test_the_link_section_has_histograms_rates_against_prediction_and_counters(
        reports: dict[str, Any]) -> None:
    report, page = reports["cold"]["json"], reports["cold"]["html"]
    (link,) = [b for b in report["blocks"] if b["title"] == "Link"]
    names = [Path(f["path"]).name for f in link["figures"]]
    assert names[0].endswith("_arm_delays.png")
    assert any(n.endswith("_latency.png") for n in names)
    assert any(n.endswith("_rate_fidelity.png") for n in names)
    assert len(link["arm_delays"]) == 4  # two nodes x two detectors
    assert all(" ± " in a["text"] and a["text"].endswith("µs") for a in link["arm_delays"])
    rows = {r["quantity"]: r for r in link["tables"]["Rate and fidelity against the prediction"]}
    rate = rows["pair rate (pairs/s)"]
    assert " ± " in rate["delivered"] and " ± " in rate["predicted from the calibrations"]
    assert rate["difference"].endswith("\N{GREEK SMALL LETTER SIGMA}")
    assert " ± " in rows["fidelity (simulation ground truth)"]["delivered"]
    counters = link["tables"]["Error counters"]
    assert counters and all(c["what it counts"] != "(not described)" for c in counters)
    assert "memory cutoff" in page and "id='link'" in page


def test_the_warm_report_shows_every_value_with_error_age_and_timeout(
        reports: dict[str, Any]) -> None:
    warm = reports["warm"]
    assert warm["code"] == 0, warm["json"]["verdict"]
    report = warm["json"]
    assert report["summary"]["calibrations"].startswith("0 recalibrated, 0 measurements")
    values = report["tables"]["Calibrated values now"]
    assert len(values) > 40
    by_name = {(row["lab"], row["value"]): row for row in values}
    for key in (("node_a", "optical_resonance_wavelength"), ("node_a", "eta_max"),
                ("link", "arm_delay_node_a"), ("station", "dark_count_rate_ch1")):
        row = by_name[key]
        assert " ± " in row["now"], row  # its own error or its stored _error companion
        assert row["age"] and row["timeout"] and row["state"] == "fresh"
    # An error stored as a value of its own is shown with its value, not as a row.
    assert ("node_a", "eta_max_error") not in by_name
    assert not any(row["state"] in ("good", "fail") for row in values)
    # Warm: the arm-delay histograms kept from the cold calibration are shown.
    (link,) = [b for b in report["blocks"] if b["title"] == "Link"]
    assert len(link["arm_delays"]) == 4
    assert "last calibration" in link["figures"][0]["caption"]


def test_qnetlab_link_writes_its_own_report_with_the_link_section(
        reports: dict[str, Any]) -> None:
    link = reports["link"]
    assert link["code"] == 0, link["json"]["verdict"]
    report = link["json"]
    assert report["contents"] == ["Summary", "Link", "Provenance"]
    (block,) = report["blocks"]
    assert len(block["arm_delays"]) == 4 and len(block["figures"]) == 3
    prov = report["provenance"]
    assert prov["config_sha256"] == hashlib.sha256(
        reports["config"].read_bytes()).hexdigest()
    assert prov["run_ids"] and prov["run_ids"][0].startswith("link run ")
    assert link["html"].count("data:image/png;base64,") == 3
