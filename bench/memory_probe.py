"""Run on a pg node (python3 - < this file): memory of PostgreSQL and PgBouncer, as JSON.

Client backends are the postgres processes titled "postgres: <cluster>: <user> <db> <host>(<port>) ...";
RSS counts shared buffers in every process that touched them, PSS shares them out fairly.
"""

import collections
import json
import os
import re

BACKEND = re.compile(r"^postgres: \S+: (\S+) (\S+) (\d+\.\d+\.\d+\.\d+|\[local\])")


def kb(text, field):
    match = re.search(r"^%s:\s+(\d+) kB" % field, text, re.MULTILINE)
    return int(match.group(1)) if match else 0


totals = collections.Counter()
per_pair = collections.Counter()
backends_from = collections.defaultdict(collections.Counter)
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open("/proc/%s/status" % pid) as f:
            status = f.read()
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open("/proc/%s/smaps_rollup" % pid) as f:
            pss = kb(f.read(), "Pss")
    except OSError:
        continue
    name = re.search(r"^Name:\s+(\S+)", status, re.MULTILINE).group(1)
    rss = kb(status, "VmRSS")
    if name == "pgbouncer":
        totals["pgbouncer_rss_kb"] += rss
        totals["pgbouncer_pss_kb"] += pss
    elif name == "postgres":
        totals["postgres_rss_kb"] += rss
        totals["postgres_pss_kb"] += pss
        totals["postgres_processes"] += 1
        match = BACKEND.match(title)
        if match:
            user, db, host = match.groups()
            totals["backends"] += 1
            totals["backends_rss_kb"] += rss
            totals["backends_pss_kb"] += pss
            per_pair["%s/%s" % (db, user)] += 1
            backends_from[host]["%s/%s" % (db, user)] += 1
result = {key: totals[key] for key in ("backends", "backends_rss_kb", "backends_pss_kb", "postgres_processes", "postgres_rss_kb",
                                       "postgres_pss_kb", "pgbouncer_rss_kb", "pgbouncer_pss_kb")}
result["backends_per_pair"] = dict(per_pair)
result["backends_from"] = {host: dict(pairs) for host, pairs in backends_from.items()}
print(json.dumps(result))
