"""Turning samples into the table, the JSON and the chart of ratios.

``samples[row_key][server_name]`` is the list of sample dicts of one row on one registry, in
repetition order (A and B ran interleaved, so sample i of A and of B ran one after the other:
their ratio is "the ratio of repetition i").
"""
from __future__ import annotations

import statistics
from pathlib import Path

from rows import Row, TokenLoad

REFERENCE = "distribution"


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def summary(samples: list[dict]) -> dict | None:
    values = [s["value"] for s in samples if "value" in s]
    if not values:
        return None
    med = lambda key: statistics.median(s.get(key, 0.0) for s in samples)  # noqa: E731
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values,
            "server_cpu_s": med("server_cpu_s"), "client_cpu_s": med("client_cpu_s"), "rest_cpu_s": med("rest_cpu_s"),
            "rest_cpu_max_s": max(s.get("rest_cpu_s", 0.0) for s in samples),
            "errors": sum(s.get("errors", 0) for s in samples)}


def ratios(a: list[dict], b: list[dict]) -> list[float]:
    """a / b for each repetition pair that both measured."""
    return [x["value"] / y["value"] for x, y in zip(a, b) if x.get("value") and y.get("value")]


def analyse(rows: list[Row], samples: dict, names: list[str]) -> list[dict]:
    """One dict per row: summaries per registry, ratios berth / reference per repetition and their median."""
    out = []
    ref = REFERENCE if REFERENCE in names else next((n for n in names if n != "berth"), None)
    for row in rows:
        per = {n: summary(samples.get(row.key, {}).get(n, [])) for n in names}
        entry = {"key": row.key, "label": row.label, "unit": row.unit, "target_ratio": row.target_ratio,
                 "load_generator": row.load_generator, "summaries": per, "reference": ref, "ratios": [],
                 "median_ratio": None, "other_ratios": {}}
        if "berth" in names and ref and per.get("berth") and per.get(ref):
            entry["ratios"] = ratios(samples[row.key]["berth"], samples[row.key][ref])
            entry["median_ratio"] = statistics.median(entry["ratios"]) if entry["ratios"] else None
        for n in names:
            if n not in ("berth", ref) and per.get("berth") and per.get(n):
                rs = ratios(samples[row.key]["berth"], samples[row.key][n])
                entry["other_ratios"][n] = statistics.median(rs) if rs else None
        out.append(entry)
    return out


def value_cell(s: dict | None) -> str:
    if s is None:
        return "n/a"
    if len(s["values"]) == 1:
        return f"**{fmt(s['median'])}**"
    return f"**{fmt(s['median'])}** ({fmt(s['min'])}–{fmt(s['max'])})"


def cpu_cell(s: dict | None, measured_server: bool) -> str:
    if s is None:
        return "n/a"
    server = f"{s['server_cpu_s']:.2f}" if measured_server else "?"
    rest = f"{s['rest_cpu_s']:.2f}"
    if s["rest_cpu_max_s"] > max(0.5, 2 * s["rest_cpu_s"]):
        rest += f" (max {s['rest_cpu_max_s']:.2f})"
    return f"{server} / {s['client_cpu_s']:.2f} / {rest}"


def target_cell(entry: dict) -> str:
    if entry["target_ratio"]:
        return f"{entry['target_ratio']}×"
    if entry["key"] == TokenLoad.key:
        return f"≥ {TokenLoad.absolute_target:,.0f}/s (absolute)"
    return ""


def table(entries: list[dict], names: list[str], measured: dict[str, bool]) -> str:
    ref = entries[0]["reference"] if entries else None
    others = [n for n in names if n not in ("berth", ref)]
    head = (["row", "unit"] + [f"{n} median (range)" for n in names]
            + ([f"berth / {ref} per rep", "median ratio", "target"] if "berth" in names and ref else [])
            + [f"berth / {n}" for n in others if "berth" in names]
            + [f"CPU s {n}: server / client / rest" for n in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for e in entries:
        cells = [e["label"], e["unit"]] + [value_cell(e["summaries"][n]) for n in names]
        if "berth" in names and ref:
            cells += [" ".join(f"{r:.2f}" for r in e["ratios"]) or "n/a",
                      f"**{e['median_ratio']:.2f}**" if e["median_ratio"] else "n/a", target_cell(e)]
        cells += [f"{v:.2f}" if v else "n/a" for n, v in ((n, e["other_ratios"].get(n)) for n in others)
                  if "berth" in names]
        cells += [cpu_cell(e["summaries"][n], measured[n]) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def errors_note(entries: list[dict], names: list[str]) -> str:
    bad = [f"{e['label']} on {n}: {e['summaries'][n]['errors']}" for e in entries for n in names
           if e["summaries"][n] and e["summaries"][n]["errors"]]
    return ("Errors (non-2xx/3xx or socket errors counted by wrk/ab): " + "; ".join(bad)) if bad else ""


def chart(entries: list[dict], path: Path, title: str) -> Path | None:
    """Horizontal bars of the median ratio per row, the per-repetition range as whiskers,
    a line at 1.0, the targets as red marks. None when matplotlib is missing."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: pip install -e '.[bench]'
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    shown = [e for e in entries if e["median_ratio"]]
    if not shown:
        return None
    shown.reverse()  # first row at the top
    y = list(range(len(shown)))
    med = [e["median_ratio"] for e in shown]
    low = [m - min(e["ratios"]) for m, e in zip(med, shown)]
    high = [max(e["ratios"]) - m for m, e in zip(med, shown)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.6))
    colors = ["#2a9d8f" if m >= 1 else "#e76f51" for m in med]
    ax.barh(y, med, xerr=[low, high], color=colors, capsize=3, height=0.6, error_kw={"elinewidth": 1})
    for yi, e in zip(y, shown):
        if e["target_ratio"]:
            ax.plot([e["target_ratio"]] * 2, [yi - 0.35, yi + 0.35], color="#c1121f", linewidth=2.5)
        ax.text(e["median_ratio"] + 0.03, yi + 0.18, f"{e['median_ratio']:.2f}×", fontsize=8, va="center")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y, [e["label"] for e in shown], fontsize=8)
    ax.set_xlabel(f"berth / {shown[0]['reference']} (median of repetitions; whiskers: range; red: target)")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(max(med) + max(high + [0]), max((e["target_ratio"] or 0) for e in shown)) * 1.12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
