"""Medians, spreads, comparisons, reference goals, the Markdown table and the plot of a bench run.

Everything but plot() is pure: it reads the results dict that bench/run.py writes as
results.json, so a past run can be re-rendered with `python3 -m bench.report DIR`.

Each comparison's variants ran interleaved (bench/interleave.py): a variant is shown as the
median of its runs with [min-max] and the spread, (max - min) / median. The generated
findings quote a difference only when interleave.compare() finds it larger than the range of
both variants; otherwise they say "within noise". Results of runs before interleaving (one
run per variant) still render, with n=1 and no difference quoted.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # python3 bench/report.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import interleave  # noqa: E402

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
CHURN_VARIANTS = ("as deployed", "logging off", "auth_type=md5", "auth_type=md5, logging off", "auth_type=md5, no server_reset_query")
PATH_TARGETS = ("direct", "pooler", "haproxy rw", "haproxy ro")
PATH_LABELS = {"direct": "primary:5432 direct", "pooler": "primary's PgBouncer :6432", "haproxy rw": "VIP:5000 (HAProxy, rw)",
               "haproxy ro": "VIP:5001 (HAProxy, ro: replicas)"}


def tps(entry: dict | None) -> float | None:
    """tps of a pgbench entry, None if it is missing or did not run cleanly."""
    if not entry or not entry.get("pgbench", {}).get("ok"):
        return None
    return entry["pgbench"]["tps"]


def latency(entry: dict | None) -> float | None:
    """Average latency (ms) of a clean pgbench entry, else None."""
    if tps(entry) is None:
        return None
    return entry["pgbench"].get("latency_avg_ms")


def find(entries: list[dict], **match) -> dict | None:
    for entry in entries:
        if all(entry.get(key) == value for key, value in match.items()):
            return entry
    return None


def find_all(entries: list[dict], **match) -> list[dict]:
    """Every run of a variant, in round order."""
    found = [entry for entry in entries if all(entry.get(key) == value for key, value in match.items())]
    return sorted(found, key=lambda entry: entry.get("round", 0))


def stats(entries: list[dict], metric=tps) -> dict | None:
    """interleave.summary() of metric over the entries; None when there are none."""
    if not entries:
        return None
    return interleave.summary(metric(entry) for entry in entries)


def median(entries: list[dict], metric=tps) -> float | None:
    found = stats(entries, metric)
    return found["median"] if found else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def comparisons(results: dict) -> list[dict]:
    """Every A-against-B comparison of the run, with both summaries and interleave.compare()."""
    found = []

    def add(phase, label, unit, a_name, a_entries, b_name, b_entries, metric=tps):
        a, b = stats(a_entries, metric), stats(b_entries, metric)
        if a is None or b is None:
            return
        found.append({"phase": phase, "label": label, "unit": unit, "a": a_name, "b": b_name, "a_stats": a, "b_stats": b,
                      **interleave.compare(a, b)})

    churn = results.get("churn", [])
    for auth, user, base in (("scram-sha-256", "scram-sha-256 user", "as deployed"), ("md5", "md5 user", "auth_type=md5")):
        pooled = find_all(churn, user_auth=auth, target="pooled", variant=base)
        add("churn", "churn, %s: pooled (%s) against direct" % (user, base), "tps", "pooled", pooled,
            "direct", find_all(churn, user_auth=auth, target="direct"))
        add("churn", "churn, %s: PgBouncer log_connections/log_disconnections off against on" % user, "tps",
            "off", find_all(churn, user_auth=auth, target="pooled", variant=LOGGING_OFF[base]), "on", pooled)
    add("churn", "churn, md5 user (session mode): server_reset_query '' against DISCARD ALL", "tps",
        "''", find_all(churn, user_auth="md5", target="pooled", variant="auth_type=md5, no server_reset_query"),
        "DISCARD ALL", find_all(churn, user_auth="md5", target="pooled", variant="auth_type=md5"))
    add("churn", "churn, scram-sha-256 user: auth_type=md5 against as deployed", "tps",
        "auth_type=md5", find_all(churn, user_auth="scram-sha-256", target="pooled", variant="auth_type=md5"),
        "as deployed", find_all(churn, user_auth="scram-sha-256", target="pooled", variant="as deployed"))
    persistent = results.get("persistent", [])
    add("persistent", "persistent: pooled against direct", "tps", "pooled", find_all(persistent, target="pooled"),
        "direct", find_all(persistent, target="direct"))
    path = results.get("path", [])
    for script, clients in path_groups(path):
        direct = find_all(path, script=script, clients=clients, target="direct")
        for target in PATH_TARGETS[1:]:
            runs = find_all(path, script=script, clients=clients, target=target)
            add("path", "path, %s, %d client%s: latency through %s against direct" % (script, clients, "" if clients == 1 else "s",
                PATH_LABELS[target]), "ms", target, runs, "direct", direct, latency)
    socket = results.get("socket", [])
    for metric, unit in ((tps, "tps"), (latency, "ms")):
        add("socket", "PgBouncer to its PostgreSQL, pgbench -S: unix socket against TCP (%s)" % ("tps" if unit == "tps" else "latency"),
            unit, "unix socket", find_all(socket, variant="unix socket"), "tcp", find_all(socket, variant="tcp"), metric)
    reuseport = results.get("reuseport", [])
    two, one = find_all(reuseport, processes=2), find_all(reuseport, processes=1)
    add("reuseport", "churn (pgbench -C -S): 2 PgBouncer processes against 1", "tps", "2 processes", two, "1 process", one)
    for key, label, unit in (("ramp_s", "fan-in logins, all clients", "s"), ("qps", "fan-in queries", "queries/s"),
                             ("p99", "fan-in p99 latency", "ms")):
        add("reuseport", "%s: 2 PgBouncer processes against 1" % label, unit, "2 processes", two, "1 process", one,
            lambda entry, key=key: fanin_metric(entry, key))
    return found


def fanin_metric(entry: dict, key: str) -> float | None:
    """A number of a reuseport entry's fan-in (None when any client failed)."""
    fanin = entry.get("fanin") or {}
    if fanin.get("errors") or not fanin:
        return None
    value = fanin.get("latency_ms", {}).get(key) if key == "p99" else fanin.get(key)
    return None if value is None else float(value)


def path_groups(path: list[dict]) -> list[tuple[str, int]]:
    """(script, clients) of the path phase, in the order they ran."""
    seen: list[tuple[str, int]] = []
    for entry in path:
        key = (entry["script"], entry["clients"])
        if key not in seen:
            seen.append(key)
    return seen


def finding(item: dict) -> str:
    """One generated finding: the medians, the ratio and whether the difference is beyond the noise."""
    a, b = item["a_stats"], item["b_stats"]
    digits = 3 if item["unit"] == "ms" else (1 if item["unit"] == "s" else 0)
    head = "%s: %s %s against %s %s %s" % (item["label"], item["a"], _num(a["median"], digits), item["b"], _num(b["median"], digits), item["unit"])
    if item["ratio"] is not None:
        head += " (%.2fx)" % item["ratio"]
    diff = _num(abs(item["difference"]), digits) if item["difference"] is not None else "n/a"
    noise = _num(item["noise"], digits) if item["noise"] is not None else "n/a"
    if item["verdict"] in ("higher", "lower"):
        return "%s: **%s beyond the noise** (difference %s %s, largest range %s)." % (head, item["verdict"], diff, item["unit"], noise)
    if item["verdict"] == "within noise":
        return "%s: within noise (difference %s %s, range up to %s): no effect shown." % (head, diff, item["unit"], noise)
    return "%s: not quoted, too few clean runs (%d and %d; %d each needed)." % (head, a["n"], b["n"], interleave.MIN_RUNS)


def summarize(results: dict) -> dict:
    """{"ratios": {...}, "goals": [...], "comparisons": [...]} from a results dict (ratios of medians)."""
    churn = results.get("churn", [])
    persistent = results.get("persistent", [])
    ratios: dict[str, float | None] = {}
    notes: dict[str, str] = {}

    direct_scram = median(find_all(churn, user_auth="scram-sha-256", target="direct"))
    ratios["churn_scram"] = ratio(median(find_all(churn, user_auth="scram-sha-256", target="pooled", variant="as deployed")), direct_scram)

    direct_md5 = median(find_all(churn, user_auth="md5", target="direct"))
    md5_default = find_all(churn, user_auth="md5", target="pooled", variant="as deployed")
    md5_auth = median(find_all(churn, user_auth="md5", target="pooled", variant="auth_type=md5"))
    ratios["churn_md5_role_defaults"] = ratio(median(md5_default), direct_md5)
    ratios["churn_md5"] = ratio(md5_auth, direct_md5)
    if md5_default and median(md5_default) is None:
        errors = md5_default[0]["pgbench"].get("errors") or ["no tps"]
        notes["churn_md5"] = "as deployed the md5 user cannot log in through PgBouncer (%s); measured with auth_type=md5" % short_error(errors[0])

    for auth, base in (("scram-sha-256", "as deployed"), ("md5", "auth_type=md5")):
        on = median(find_all(churn, user_auth=auth, target="pooled", variant=base))
        off = median(find_all(churn, user_auth=auth, target="pooled", variant=LOGGING_OFF[base]))
        ratios["logging_on_over_off_" + ("scram" if auth != "md5" else "md5")] = ratio(on, off)
    ratios["server_reset_query_on_over_off_md5"] = ratio(
        md5_auth, median(find_all(churn, user_auth="md5", target="pooled", variant="auth_type=md5, no server_reset_query")))
    ratios["churn_scram_under_auth_type_md5"] = ratio(median(find_all(churn, user_auth="scram-sha-256", target="pooled", variant="auth_type=md5")),
                                                      direct_scram)
    ratios["persistent"] = ratio(median(find_all(persistent, target="pooled")), median(find_all(persistent, target="direct")))

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
    return {"ratios": ratios, "goals": goals, "comparisons": comparisons(results)}


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


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else "%.*f" % (digits, value)


def stats_cell(entries: list[dict], metric=tps, digits: int = 0) -> str:
    """"median [min-max] spread%" of a variant's runs, "FAILED: ..." when none ran cleanly."""
    if not entries:
        return "not run"
    found = stats(entries, metric)
    if found["median"] is None:
        errors = entries[0].get("pgbench", {}).get("errors") or ["failed"]
        return "FAILED: %s" % short_error(errors[0])
    if found["n"] == 1:
        text = _num(found["median"], digits)
    else:
        spread = "%.0f%%" % (100 * found["spread"]) if found["spread"] is not None else ""
        text = "%s [%s-%s] %s" % (_num(found["median"], digits), _num(found["min"], digits), _num(found["max"], digits), spread)
    if found["failed"]:
        text += " (%d failed)" % found["failed"]
    return text.strip()


def settle_lines(results: dict) -> list[str]:
    """How the client settled before the runs of each phase (TIME_WAIT toward the run's port)."""
    out = []
    for phase in ("churn", "persistent", "path", "socket", "reuseport"):
        settles = [entry["settle"] for entry in results.get(phase, []) if entry.get("settle")]
        if not settles:
            continue
        waited = [item for item in settles if item["waited_s"] >= 1]
        unsettled = [item for item in settles if not item["settled"]]
        out.append("- %s: %d runs; %d waited for TIME_WAIT to drain (longest %.0f s); TIME_WAIT at the start of a run at most %d%s." % (
            phase, len(settles), len(waited), max((item["waited_s"] for item in settles), default=0),
            max(item["after"] for item in settles),
            "; **%d started unsettled** (max wait reached)" % len(unsettled) if unsettled else ""))
    return out


def markdown(results: dict, summary: dict) -> str:
    """The whole report as Markdown."""
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    settings = meta.get("settings", {})
    out = ["# PgBouncer vs direct PostgreSQL on the lab", ""]
    out.append("Run %s, %s. Bench node %s (%s), client on the app node %s." % (
        meta.get("started", "?"), meta.get("git", "?"), meta.get("node", "?"), meta.get("node_ip", "?"), meta.get("app_ip", "?")))
    out.append("")
    out.append("| Machine | |")
    out.append("|---|---|")
    for key, label in (("cpu", "CPU"), ("nproc", "nproc"), ("memory", "memory"), ("kernel", "kernel"),
                       ("pgbouncer", "PgBouncer"), ("postgres", "PostgreSQL"), ("pgbench", "pgbench"), ("ansible", "ansible-core")):
        out.append("| %s | %s |" % (label, machine.get(key, "?")))
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
    if meta.get("phase_s"):
        out.append("| phase durations | %s |" % ", ".join("%s %.0f s" % item for item in meta["phase_s"].items()))
    for note in meta.get("cut_short") or []:
        out.append("| **cut short** | %s |" % note)
    out.append("")
    out.append("Each comparison ran interleaved, A, B, A, B, ... (%s rounds): a cell is the median over the runs, "
               "[min-max], and the spread (max - min) / median. Before each run the app node waited until fewer than %s of its "
               "connections toward the run's port were in TIME_WAIT (at most %s s)." % (
                   settings.get("repeats", "?"), settings.get("settle_time_wait", "?"), settings.get("settle_max_s", "?")))
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

    found = summary.get("comparisons") or []
    if found:
        out.append("## Comparisons (generated from the interleaved runs)")
        out.append("")
        out.append("A difference is quoted only when the medians differ by more than the range (max - min) of each variant.")
        out.append("")
        for item in found:
            out.append("- " + finding(item))
        out.append("")

    churn = results.get("churn", [])
    if churn:
        out.append("## Churn: `pgbench -C -S`, a new connection per transaction (tps)")
        out.append("")
        out.append("| User (password) | Direct 5432 | Pooled 6432, as deployed | Pooled, logging off | Pooled, auth_type=md5 "
                   "| Pooled, auth_type=md5, logging off | Pooled, auth_type=md5, server_reset_query='' |")
        out.append("|---|---|---|---|---|---|---|")
        for auth, user in (("scram-sha-256", "app_user"), ("md5", "report_user")):
            cells = [stats_cell(find_all(churn, user_auth=auth, target="direct"))]
            for variant in CHURN_VARIANTS:
                cells.append(stats_cell(find_all(churn, user_auth=auth, target="pooled", variant=variant)))
            out.append("| %s (%s) | %s |" % (user, auth, " | ".join(cells)))
        out.append("")
        conn = []
        for auth, user in (("scram-sha-256", "app_user"), ("md5", "report_user")):
            for target, variant in [("direct", None)] + [("pooled", variant) for variant in CHURN_VARIANTS]:
                match = {"user_auth": auth, "target": target, **({"variant": variant} if variant else {})}
                value = median(find_all(churn, **match), lambda entry: entry["pgbench"].get("avg_connection_ms") if tps(entry) else None)
                if value is not None:
                    conn.append("%s %s%s: %.2f ms" % (user, target, " (%s)" % variant if variant else "", value))
        if conn:
            out.append("Average connection time (median): " + "; ".join(conn) + ".")
            out.append("")

    persistent = results.get("persistent", [])
    if persistent:
        out.append("## Persistent: `pgbench -S`, connections kept (tps)")
        out.append("")
        out.append("| User | Direct 5432 | Pooled 6432 | Latency direct / pooled (ms, median) |")
        out.append("|---|---|---|---|")
        direct, pooled = find_all(persistent, target="direct"), find_all(persistent, target="pooled")
        user = (direct or pooled or [{}])[0].get("user", "?")
        out.append("| %s | %s | %s | %s / %s |" % (user, stats_cell(direct), stats_cell(pooled), _num(median(direct, latency), 2),
                                                   _num(median(pooled, latency), 2)))
        out.append("")

    out.extend(path_lines(results))
    out.extend(socket_lines(results))
    out.extend(reuseport_lines(results))

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

    settled = settle_lines(results)
    if settled:
        out.append("## Settling between runs")
        out.append("")
        out.extend(settled)
        out.append("")

    out.append("## Ratios of medians, pooled over direct")
    out.append("")
    for line in ratio_lines(summary):
        out.append("- " + line)
    out.append("")
    return "\n".join(out)


def path_lines(results: dict) -> list[str]:
    """The path phase: per script and client count, each path against primary:5432, with the
    microseconds each hop adds (per-round paired differences of the average latency)."""
    path = results.get("path", [])
    if not path:
        return []
    out = ["## Path: app -> VIP -> HAProxy -> PgBouncer -> PostgreSQL, against the primary's 5432", ""]
    out.append("pgbench from the app node, connections kept; `select` is `-S`, `write` the builtin simple-update (`-N`). "
               "Added: average latency of the path minus that of direct, per round (runs of one round are neighbours in time), "
               "as median [min..max] in microseconds.")
    out.append("")
    for script, clients in path_groups(path):
        out.append("### %s, %d client%s" % (script, clients, "" if clients == 1 else "s"))
        out.append("")
        out.append("| Path | tps | Latency (ms) | Added (us) |")
        out.append("|---|---|---|---|")
        direct = find_all(path, script=script, clients=clients, target="direct")
        direct_lat = {entry.get("round"): latency(entry) for entry in direct}
        for target in PATH_TARGETS:
            runs = find_all(path, script=script, clients=clients, target=target)
            if not runs:
                continue
            added = "-"
            if target != "direct":
                diffs = interleave.paired_differences([latency(entry) for entry in runs], [direct_lat.get(entry.get("round")) for entry in runs])
                if diffs:
                    diffs_us = sorted(1000 * value for value in diffs)
                    added = "%s [%.0f..%.0f]" % (_num(statistics.median(diffs_us)), diffs_us[0], diffs_us[-1])
            out.append("| %s | %s | %s | %s |" % (PATH_LABELS[target], stats_cell(runs), stats_cell(runs, latency, 3), added))
        out.append("")
    return out


def socket_lines(results: dict) -> list[str]:
    socket = results.get("socket", [])
    if not socket:
        return []
    entry = results.get("meta", {}).get("socket_entry") or {}
    out = ["## PgBouncer to its PostgreSQL: unix socket against TCP", ""]
    out.append("`pgbench -S`, %s clients, connections kept, through 6432: appdb (the `*` entry, TCP to the node's address) against "
               "%s (host=%s, dbname=appdb)." % (socket[0].get("clients", "?"), entry.get("name", "appdb_sock"), entry.get("host", "?")))
    out.append("")
    out.append("| PgBouncer to PostgreSQL | tps | Latency (ms) |")
    out.append("|---|---|---|")
    for variant in ("tcp", "unix socket"):
        runs = find_all(socket, variant=variant)
        out.append("| %s | %s | %s |" % (variant, stats_cell(runs), stats_cell(runs, latency, 3)))
    out.append("")
    return out


def reuseport_lines(results: dict) -> list[str]:
    runs = results.get("reuseport", [])
    if not runs:
        return []
    out = ["## so_reuseport: pgbouncer_processes 1 against 2", ""]
    out.append("Each switch is a converge of the bench node (site.yml --limit). Churn: `pgbench -C -S`, scram-sha-256 user; fan-in: "
               "clients logging in together, then `SELECT 1` each about every 0.5 s.")
    out.append("")
    out.append("| Processes | Churn tps | Fan-in logins, all clients (s) | Fan-in errors | Fan-in queries/s | Fan-in p99 (ms) | Converge (s) |")
    out.append("|---|---|---|---|---|---|---|")
    for processes in (1, 2):
        found = find_all(runs, processes=processes)
        if not found:
            continue
        errors = sum((entry.get("fanin") or {}).get("errors") or 0 for entry in found)
        converges = [entry["converge_s"] for entry in found if entry.get("converge_s") is not None]
        out.append("| %d | %s | %s | %d | %s | %s | %s |" % (
            processes, stats_cell(found), stats_cell(found, lambda e: fanin_metric(e, "ramp_s"), 1), errors,
            stats_cell(found, lambda e: fanin_metric(e, "qps")), stats_cell(found, lambda e: fanin_metric(e, "p99"), 1),
            _num(interleave.summary(converges)["median"], 1) if converges else "-"))
    out.append("")
    return out


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
        bars.append(("churn %s\ndirect" % user, stats(find_all(churn, user_auth=auth, target="direct")), "tab:gray"))
        bars.append(("churn %s\npooled" % user, stats(find_all(churn, user_auth=auth, target="pooled", variant=pooled_variant)), "tab:blue"))
    bars.append(("persistent\ndirect", stats(find_all(persistent, target="direct")), "tab:gray"))
    bars.append(("persistent\npooled", stats(find_all(persistent, target="pooled")), "tab:blue"))
    _bars(ax, bars, "tps, median [min-max] (log scale)", "pgbench -S, 20 clients (md5 pooled: auth_type=md5)", log=True)

    ax = axes[0][1]
    bars = []
    for auth, user, base in (("scram-sha-256", "scram", "as deployed"), ("md5", "md5", "auth_type=md5")):
        bars.append(("%s\nlogging on" % user, stats(find_all(churn, user_auth=auth, target="pooled", variant=base)), "tab:blue"))
        bars.append(("%s\nlogging off" % user, stats(find_all(churn, user_auth=auth, target="pooled", variant=LOGGING_OFF[base])), "tab:cyan"))
    bars.append(("md5\nno reset query", stats(find_all(churn, user_auth="md5", target="pooled", variant="auth_type=md5, no server_reset_query")),
                 "tab:olive"))
    _bars(ax, bars, "tps, median [min-max]", "churn through PgBouncer: logging, server_reset_query")

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
    """Bars of medians with [min-max] error bars; bars are (label, stats() or None, colour)."""
    labels = [item[0] for item in bars]
    values = [(item[1] or {}).get("median") or 0 for item in bars]
    low = [value - ((item[1] or {}).get("min") or value) for item, value in zip(bars, values)]
    high = [((item[1] or {}).get("max") or value) - value for item, value in zip(bars, values)]
    ax.bar(labels, values, color=[item[2] for item in bars], yerr=[low, high], capsize=3)
    for i, item in enumerate(bars):
        median_value = (item[1] or {}).get("median")
        ax.annotate("failed" if median_value is None else "%.0f" % median_value, (i, median_value or 0), ha="center", va="bottom", fontsize=8)
    if log and any(values):
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)


README_HEAD = """\
# `make bench`: PgBouncer against direct PostgreSQL, on the lab

This page is written by `make bench` (bench/run.py) from its latest published run, except
[findings.md](findings.md), which a person writes after reading the numbers; the run's section
"Comparisons (generated from the interleaved runs)" is generated from the numbers. The raw
data of the run is [results.json](results.json).

What it runs, all from the lab's app node (`BENCH_PHASES`; bench/run.py's docstring has every
`BENCH_*` setting):

- **churn** (about 25 min): pgbench `-C -S` (a new connection per transaction), 20 clients,
  to PostgreSQL on 5432 (direct) and PgBouncer on 6432 of the bench node (`BENCH_NODE`,
  default pg-srv1), a scram-sha-256 and an md5 user; pooled also with
  log_connections/log_disconnections off, auth_type=md5 and server_reset_query='' (set through
  the admin console, set back after each run).
- **persistent** (about 2 min): pgbench `-S`, connections kept, direct and pooled.
- **fanin** (about 3 min): 1000 clients held open through the node (`bench/fanin_client.py`):
  errors, PgBouncer's server connections, the memory of the backends.
- **path** (about 8 min): pgbench `-S` at 1 and 20 clients (and simple-update at 1) to the
  primary's 5432, its PgBouncer, VIP:5000 (HAProxy, rw) and VIP:5001 (HAProxy, ro to the
  replicas): tps, latency, and the microseconds each path adds.
- **socket** (about 3 min): PgBouncer to its PostgreSQL over the unix socket against TCP (a
  temporary `appdb_sock` entry, host=/var/run/postgresql), pgbench `-S`, 20 clients.
- **reuseport** (about 15 min): `pgbouncer_processes` 1 against 2 (so_reuseport): churn and a
  400-client fan-in, each switch a converge of the bench node.
- **ansible** (about 8 min): site.yml on fresh extra lab nodes (cold, then warm) per lab size.
- **switchover** (about 3 min): writes through VIP:5000 across switchover.yml, a bare
  patronictl switchover and a failover ([switchover.md](switchover.md)).

About 70 minutes in all. Each comparison runs interleaved, A, B, A, B, ... (`BENCH_REPEATS`,
5 rounds), and before every run the app node waits until fewer than 1000 of its sockets toward
the run's port are in TIME_WAIT (at most 75 s; `BENCH_SETTLE_*`): in an earlier run the order
of the runs, not the setting, decided the result. A cell is the median of the runs, [min-max],
and the spread, (max - min) / median. A difference is quoted only when the medians differ by
more than the range of both variants; otherwise it is "within noise". Every phase is bounded:
each run by its timeout, each settle step and converge by its own, and no new round starts
once a phase has run `BENCH_PHASE_BUDGET` (45 min).

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
