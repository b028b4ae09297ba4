"""Ratios, reference goals, the Markdown table and the plot of a bench run.

Everything but plot() is pure: it reads the results dict that bench/run.py writes as
results.json, so a past run can be re-rendered with `python3 -m bench.report DIR`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The reference goals: reported, never pass/fail.
GOALS = {
    "churn_md5": 15.0,
    "churn_scram": 3.0,
    "persistent": 0.95,
    "fanin_clients": 1000,
    "warm_seconds": 15.0,
}
# Churn variants through PgBouncer, and the same with log_connections/log_disconnections off.
LOGGING_OFF = {"as deployed": "logging off", "auth_type=md5": "auth_type=md5, logging off"}


def tps(entry: dict | None) -> float | None:
    """tps of a pgbench entry, None if it is missing or did not run cleanly."""
    if not entry or not entry.get("pgbench", {}).get("ok"):
        return None
    return entry["pgbench"]["tps"]


def find(entries: list[dict], **match) -> dict | None:
    for entry in entries:
        if all(entry.get(key) == value for key, value in match.items()):
            return entry
    return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def summarize(results: dict) -> dict:
    """{"ratios": {...}, "goals": [...]} from a results dict."""
    churn = results.get("churn", [])
    persistent = results.get("persistent", [])
    ratios: dict[str, float | None] = {}
    notes: dict[str, str] = {}

    direct_scram = tps(find(churn, user_auth="scram-sha-256", target="direct"))
    pooled_scram = tps(find(churn, user_auth="scram-sha-256", target="pooled", variant="as deployed"))
    ratios["churn_scram"] = ratio(pooled_scram, direct_scram)

    direct_md5 = tps(find(churn, user_auth="md5", target="direct"))
    md5_default = find(churn, user_auth="md5", target="pooled", variant="as deployed")
    md5_auth = find(churn, user_auth="md5", target="pooled", variant="auth_type=md5")
    ratios["churn_md5_role_defaults"] = ratio(tps(md5_default), direct_md5)
    ratios["churn_md5"] = ratio(tps(md5_auth), direct_md5)
    if md5_default and tps(md5_default) is None:
        errors = md5_default["pgbench"].get("errors") or ["no tps"]
        notes["churn_md5"] = "as deployed the md5 user cannot log in through PgBouncer (%s); measured with auth_type=md5" % short_error(errors[0])

    for auth, base in (("scram-sha-256", "as deployed"), ("md5", "auth_type=md5")):
        on = tps(find(churn, user_auth=auth, target="pooled", variant=base))
        off = tps(find(churn, user_auth=auth, target="pooled", variant=LOGGING_OFF[base]))
        ratios["logging_on_over_off_" + ("scram" if auth != "md5" else "md5")] = ratio(on, off)
    ratios["server_reset_query_on_over_off_md5"] = ratio(
        tps(md5_auth), tps(find(churn, user_auth="md5", target="pooled", variant="auth_type=md5, no server_reset_query")))
    scram_with_md5 = tps(find(churn, user_auth="scram-sha-256", target="pooled", variant="auth_type=md5"))
    ratios["churn_scram_under_auth_type_md5"] = ratio(scram_with_md5, direct_scram)

    ratios["persistent"] = ratio(
        tps(find(persistent, target="pooled", variant="as deployed")), tps(find(persistent, target="direct"))
    )

    goals = [
        _goal("churn, md5 user: pooled/direct", ">= %gx" % GOALS["churn_md5"], ratios["churn_md5"],
              None if ratios["churn_md5"] is None else ratios["churn_md5"] >= GOALS["churn_md5"], notes.get("churn_md5")),
        _goal("churn, scram-sha-256 user: pooled/direct", ">= %gx" % GOALS["churn_scram"], ratios["churn_scram"],
              None if ratios["churn_scram"] is None else ratios["churn_scram"] >= GOALS["churn_scram"]),
        _goal("persistent: pooled/direct", ">= %gx" % GOALS["persistent"], ratios["persistent"],
              None if ratios["persistent"] is None else ratios["persistent"] >= GOALS["persistent"]),
    ]
    pooled = results.get("fanin", {}).get("pooled")
    if pooled:
        pool_size = int(results.get("meta", {}).get("pgbouncer_config", {}).get("default_pool_size", 0)) or None
        per_pair = max(pooled.get("servers_per_pair", {}).values(), default=None)
        met = pooled["clients"] >= GOALS["fanin_clients"] and pooled["errors"] == 0
        if pool_size is not None and per_pair is not None:
            met = met and per_pair <= pool_size
        goals.append(_goal(
            "fan-in through PgBouncer: clients, errors, max server connections per db/user pair",
            "%d, 0, <= default_pool_size (%s)" % (GOALS["fanin_clients"], pool_size),
            "%d, %d, %s" % (pooled["clients"], pooled["errors"], per_pair), met,
        ))
    ansible = results.get("ansible", [])
    if ansible:
        worst = max(ansible, key=lambda run: run["warm_s"])
        changed = max(run["warm_changed"] for run in ansible)
        goals.append(_goal(
            "warm re-run of site.yml: seconds, tasks changed (worst lab size)",
            "<= %g s, 0" % GOALS["warm_seconds"], "%.1f s, %d (%d nodes)" % (worst["warm_s"], changed, worst["nodes"]),
            worst["warm_s"] <= GOALS["warm_seconds"] and changed == 0,
        ))
    return {"ratios": ratios, "goals": goals}


def _goal(name: str, target: str, value, met: bool | None, note: str | None = None) -> dict:
    return {"goal": name, "target": target, "value": value, "met": met, "note": note}


def short_error(text: str) -> str:
    """The server's message of a libpq error line ("FATAL:  ..."), else the line, at most 80 characters."""
    if "FATAL:" in text:
        text = "FATAL: " + text.split("FATAL:", 1)[1].strip()
    return text.replace("|", "/")[:80]


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "%.*f" % (digits, value)
    return str(value)


def _tps_cell(entry: dict | None) -> str:
    if entry is None:
        return "not run"
    value = tps(entry)
    if value is None:
        errors = entry.get("pgbench", {}).get("errors") or ["failed"]
        return "FAILED: %s" % short_error(errors[0])
    return "%.0f" % value


def markdown(results: dict, summary: dict) -> str:
    """The whole report as Markdown."""
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    out = ["# PgBouncer vs direct PostgreSQL on the lab", ""]
    out.append("Run %s, %s. Bench node %s (%s), client on the app node %s." % (
        meta.get("started", "?"), meta.get("git", "?"), meta.get("node", "?"), meta.get("node_ip", "?"), meta.get("app_ip", "?")))
    out.append("")
    out.append("| Machine | |")
    out.append("|---|---|")
    for key, label in (("cpu", "CPU"), ("nproc", "nproc"), ("memory", "memory"), ("kernel", "kernel"),
                       ("pgbouncer", "PgBouncer"), ("postgres", "PostgreSQL"), ("pgbench", "pgbench"), ("ansible", "ansible-core")):
        out.append("| %s | %s |" % (label, machine.get(key, "?")))
    settings = meta.get("settings", {})
    if settings:
        out.append("| bench settings | %s |" % ", ".join("%s=%s" % item for item in sorted(settings.items())))
    config = meta.get("pgbouncer_config", {})
    if config:
        shown = ("pool_mode", "default_pool_size", "max_db_connections", "max_client_conn", "auth_type", "log_connections", "log_disconnections",
                 "server_reset_query")
        out.append("| PgBouncer settings measured | %s |" % ", ".join("%s=%s" % (key, config.get(key)) for key in shown))
    users = meta.get("pgbouncer_users") or []
    if users:
        out.append("| PgBouncer [users] overrides | %s |" % ", ".join("%s: pool_mode=%s" % (row.get("name"), row.get("pool_mode")) for row in users))
    differs = meta.get("config_vs_role_defaults") or {}
    if differs:
        out.append("| differs from the role defaults | %s |" % ", ".join(
            "%s=%s (role: %s)" % (key, value["live"], value["role_default"]) for key, value in sorted(differs.items())))
    out.append("")

    out.append("## Reference goals (reported, not pass/fail)")
    out.append("")
    out.append("| Goal | Target | Measured | Met |")
    out.append("|---|---|---|---|")
    for goal in summary["goals"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[goal["met"]]
        value = goal["value"]
        value = "%.2fx" % value if isinstance(value, float) else _fmt(value)
        note = " (%s)" % goal["note"] if goal.get("note") else ""
        out.append("| %s | %s | %s%s | %s |" % (goal["goal"], goal["target"], value, note, met))
    out.append("")

    churn = results.get("churn", [])
    if churn:
        out.append("## Churn: `pgbench -C -S`, a new connection per transaction (tps)")
        out.append("")
        out.append("| User (password) | Direct 5432 | Pooled 6432, as deployed | Pooled, logging off | Pooled, auth_type=md5 "
                   "| Pooled, auth_type=md5, logging off | Pooled, auth_type=md5, server_reset_query='' |")
        out.append("|---|---|---|---|---|---|---|")
        for auth, user in (("scram-sha-256", "app_user"), ("md5", "report_user")):
            cells = [_tps_cell(find(churn, user_auth=auth, target="direct"))]
            for variant in ("as deployed", "logging off", "auth_type=md5", "auth_type=md5, logging off", "auth_type=md5, no server_reset_query"):
                cells.append(_tps_cell(find(churn, user_auth=auth, target="pooled", variant=variant)))
            out.append("| %s (%s) | %s |" % (user, auth, " | ".join(cells)))
        out.append("")
        conn = []
        for entry in churn:
            if tps(entry) is not None and entry["pgbench"].get("avg_connection_ms") is not None:
                conn.append("%s %s (%s): %.2f ms" % (entry["target"], entry["user"], entry["variant"], entry["pgbench"]["avg_connection_ms"]))
        if conn:
            out.append("Average connection time: " + "; ".join(conn) + ".")
            out.append("")

    persistent = results.get("persistent", [])
    if persistent:
        out.append("## Persistent: `pgbench -S`, connections kept (tps)")
        out.append("")
        out.append("| User | Direct 5432 | Pooled 6432 | Latency direct / pooled (ms) |")
        out.append("|---|---|---|---|")
        direct, pooled = find(persistent, target="direct"), find(persistent, target="pooled")
        lat = [(e or {}).get("pgbench", {}).get("latency_avg_ms") for e in (direct, pooled)]
        user = (direct or pooled or {}).get("user", "?")
        out.append("| %s | %s | %s | %s / %s |" % (user, _tps_cell(direct), _tps_cell(pooled), _fmt(lat[0], 2), _fmt(lat[1], 2)))
        out.append("")

    fanin = results.get("fanin", {})
    if fanin:
        out.append("## Fan-in: clients held open through one node, `SELECT 1` about every %s s" % _fmt(fanin.get("interval_s"), 2))
        out.append("")
        out.append("| Target | Clients | Logged in | Errors | Error kinds | Server connections (max per db/user) | PostgreSQL backends "
                   "| Backends RSS / PSS (MiB) | PgBouncer RSS (MiB) | Queries/s | p99 (ms) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for target in ("direct", "pooled"):
            run = fanin.get(target)
            if not run:
                continue
            kinds = {**run.get("connect_errors", {}), **run.get("query_errors", {})}
            kinds_text = "; ".join("%s x%d" % (kind.replace("|", "/")[:70], count) for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])) or "-"
            mem = run.get("memory", {})
            servers = max(run.get("servers_per_pair", {}).values(), default=None)
            out.append("| %s | %d | %d | %d | %s | %s | %s | %s / %s | %s | %s | %s |" % (
                target, run["clients"], run["connected"], run["errors"], kinds_text, _fmt(servers),
                _fmt(mem.get("backends")), _fmt(_mib(mem.get("backends_rss_kb"))), _fmt(_mib(mem.get("backends_pss_kb"))),
                _fmt(_mib(mem.get("pgbouncer_rss_kb"))), _fmt(run.get("qps")), _fmt(run.get("latency_ms", {}).get("p99"))))
        out.append("")

    ansible = results.get("ansible", [])
    if ansible:
        out.append("## Ansible: `playbooks/site.yml` on fresh nodes")
        out.append("")
        out.append("| Nodes | Cold converge (s) | Tasks changed, cold | Warm re-run (s) | Tasks changed, warm |")
        out.append("|---|---|---|---|---|")
        for run in ansible:
            out.append("| %d | %.1f | %d | %.1f | %d |" % (run["nodes"], run["cold_s"], run["cold_changed"], run["warm_s"], run["warm_changed"]))
        out.append("")

    if results.get("switchover"):
        out.extend(switchover_lines(results))

    out.append("## Ratios, pooled over direct")
    out.append("")
    for line in ratio_lines(summary):
        out.append("- " + line)
    out.append("")
    return "\n".join(out)


def switchover_lines(results: dict) -> list[str]:
    """The switchover phase as Markdown: the planned switchover with and without the playbook,
    side by side, and the failover's write gap."""
    runs = results.get("switchover", [])
    machine = results.get("meta", {}).get("machine", {})
    out = ["## Switchover and failover under writes through VIP:5000", ""]
    out.append("PgBouncer %s, PostgreSQL %s; pgbench, one INSERT per transaction, connections kept, --max-tries=1." % (
        machine.get("pgbouncer", "?"), machine.get("postgres", "?")))
    out.append("")
    out.append("| Switchover | Clients | Transactions acknowledged | Failed | Clients cut | Longest transaction | Rows on the new primary |")
    out.append("|---|---|---|---|---|---|---|")
    for run in runs:
        if "gap_s" in run:
            continue
        acknowledged = "%d" % run["processed"] if run["summary"] else "%d logged (pgbench gave up)" % run["processed"]
        out.append("| %s (%s -> %s) | %d | %s | %d | %d | %.0f ms | %d |" % (
            run["run"], run["old_primary"], run["new_primary"], run["clients"], acknowledged, run["failed"], run["clients_cut"],
            run["longest_ms"], run["rows"]))
    out.append("")
    for run in runs:
        if "gap_s" in run:
            out.append("Failover (Patroni stopped on %s, %s promoted), a writer reconnecting after each error, one INSERT every 20 ms: "
                       "first write on the new primary %s s after the stop; %d writes acknowledged, %d of them on the new primary; "
                       "%d failed attempts." % (run["old_primary"], run["new_primary"], _fmt(run["gap_s"]), run["acknowledged"],
                                                run["acknowledged_found"], run["failed_attempts"]))
            out.append("")
    return out


def ratio_lines(summary: dict) -> list[str]:
    """The printed summary: one line per ratio."""
    labels = {
        "churn_scram": "churn, scram-sha-256 user, as deployed",
        "churn_md5_role_defaults": "churn, md5 user, as deployed",
        "churn_md5": "churn, md5 user, auth_type=md5",
        "churn_scram_under_auth_type_md5": "churn, scram-sha-256 user, auth_type=md5",
        "persistent": "persistent",
        "logging_on_over_off_scram": "PgBouncer log_connections+log_disconnections on/off, churn, scram user (pooled/pooled)",
        "logging_on_over_off_md5": "PgBouncer log_connections+log_disconnections on/off, churn, md5 user (pooled/pooled)",
        "server_reset_query_on_over_off_md5": "server_reset_query as deployed / empty, churn, md5 user (pooled/pooled)",
    }
    lines = []
    for key, label in labels.items():
        value = summary["ratios"].get(key)
        lines.append("%s: %s" % (label, "n/a" if value is None else "%.2fx" % value))
    return lines


def _mib(kb):
    return None if kb is None else kb / 1024.0


def plot(results: dict, path: Path) -> None:
    """A 2x2 PNG: churn and persistent tps, fan-in errors and memory, converge times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    fig.suptitle("pgbouncer.cluster bench %s: %s cores, %s, PgBouncer %s, PostgreSQL %s" % (
        meta.get("started", ""), machine.get("nproc", "?"), machine.get("memory", "?"),
        machine.get("pgbouncer", "?"), machine.get("postgres", "?")), fontsize=10)

    ax = axes[0][0]
    churn = results.get("churn", [])
    persistent = results.get("persistent", [])
    bars = []
    for auth, user, pooled_variant in (("scram-sha-256", "scram", "as deployed"), ("md5", "md5", "auth_type=md5")):
        bars.append(("churn %s\ndirect" % user, tps(find(churn, user_auth=auth, target="direct")), "tab:gray"))
        bars.append(("churn %s\npooled" % user, tps(find(churn, user_auth=auth, target="pooled", variant=pooled_variant)), "tab:blue"))
    bars.append(("persistent\ndirect", tps(find(persistent, target="direct")), "tab:gray"))
    bars.append(("persistent\npooled", tps(find(persistent, target="pooled")), "tab:blue"))
    _bars(ax, bars, "tps (log scale)", "pgbench -S, 20 clients (md5 pooled: auth_type=md5)", log=True)

    ax = axes[0][1]
    bars = []
    for auth, user, base in (("scram-sha-256", "scram", "as deployed"), ("md5", "md5", "auth_type=md5")):
        bars.append(("%s\nlogging on" % user, tps(find(churn, user_auth=auth, target="pooled", variant=base)), "tab:blue"))
        bars.append(("%s\nlogging off" % user, tps(find(churn, user_auth=auth, target="pooled", variant=LOGGING_OFF[base])), "tab:cyan"))
    _bars(ax, bars, "tps", "churn through PgBouncer: log_connections/log_disconnections")

    ax = axes[1][0]
    fanin = results.get("fanin", {})
    labels, errors, backends, rss = [], [], [], []
    for target in ("direct", "pooled"):
        run = fanin.get(target)
        if run:
            labels.append("%s\n%d clients" % (target, run["clients"]))
            errors.append(run["errors"])
            backends.append(run.get("memory", {}).get("backends") or 0)
            rss.append(_mib(run.get("memory", {}).get("backends_pss_kb")) or 0)
    if labels:
        x = range(len(labels))
        ax.bar([i - 0.27 for i in x], errors, 0.27, label="client errors", color="tab:red")
        ax.bar(list(x), backends, 0.27, label="PostgreSQL backends", color="tab:gray")
        ax.bar([i + 0.27 for i in x], rss, 0.27, label="backends PSS (MiB)", color="tab:green")
        ax.set_xticks(list(x), labels)
        ax.legend(fontsize=8)
        for i in x:
            for dx, value in ((-0.27, errors[i]), (0, backends[i]), (0.27, rss[i])):
                ax.annotate("%.0f" % value, (i + dx, value), ha="center", va="bottom", fontsize=8)
    ax.set_title("fan-in", fontsize=10)

    ax = axes[1][1]
    ansible = sorted(results.get("ansible", []), key=lambda run: run["nodes"])
    if ansible:
        nodes = [run["nodes"] for run in ansible]
        ax.plot(nodes, [run["cold_s"] for run in ansible], "o-", label="cold converge")
        ax.plot(nodes, [run["warm_s"] for run in ansible], "s-", label="warm re-run")
        ax.axhline(GOALS["warm_seconds"], color="tab:red", linestyle=":", label="warm goal %g s" % GOALS["warm_seconds"])
        ax.set_xticks(nodes)
        ax.set_xlabel("nodes")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    ax.set_title("ansible-playbook site.yml on fresh nodes", fontsize=10)

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax, bars, ylabel: str, title: str, log: bool = False) -> None:
    labels = [item[0] for item in bars]
    values = [item[1] or 0 for item in bars]
    ax.bar(labels, values, color=[item[2] for item in bars])
    for i, item in enumerate(bars):
        ax.annotate("failed" if item[1] is None else "%.0f" % item[1], (i, item[1] or 0), ha="center", va="bottom", fontsize=8)
    if log and any(values):
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)


README_HEAD = """\
# `make bench`: PgBouncer against direct PostgreSQL, on the lab

This page is written by `make bench` (bench/run.py) from its latest published run, except
[findings.md](findings.md), which a person writes after reading the numbers. The raw data of
the run is [results.json](results.json).

What it runs, all from the lab's app node to one PostgreSQL node (`BENCH_NODE`, default
pg-srv1): pgbench `-C -S` (a new connection per transaction) and `-S` (persistent), 20
clients, to PostgreSQL on 5432 (direct) and to PgBouncer on 6432 of the same node (pooled),
for a scram-sha-256 user and an md5 user; the same churn with PgBouncer's
log_connections/log_disconnections off and with auth_type=md5 (set through the admin console,
set back afterwards); 1000 clients held open through the node (`bench/fanin_client.py`),
counting errors, PgBouncer's server connections (SHOW POOLS/SHOW SERVERS) and the memory of
the PostgreSQL backends; and site.yml on fresh extra lab nodes (cold, then warm) for each lab
size. `BENCH_*` variables (see bench/run.py) set the durations, the node and the phases.

"""


def readme(markdown_text: str, findings: str) -> str:
    """docs/bench/README.md: the fixed introduction, the findings, the latest table and the plot."""
    body = "\n".join("#" + line if line.startswith("#") else line for line in markdown_text.splitlines())
    return README_HEAD + findings.strip() + "\n\n" + body.strip() + "\n\n![Latest bench](bench.png)\n"


def main() -> None:
    """Re-render results.md and bench.png of a run directory from its results.json (and README.md
    where a findings.md sits next to it, as in docs/bench)."""
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results/latest")
    results = json.loads((directory / "results.json").read_text())
    summary = summarize(results)
    text = markdown(results, summary)
    (directory / "results.md").write_text(text)
    plot(results, directory / "bench.png")
    if (directory / "findings.md").exists():
        (directory / "README.md").write_text(readme(text, (directory / "findings.md").read_text()))
    print("\n".join(ratio_lines(summary)))


if __name__ == "__main__":
    main()
