"""Driver lane (issue 26): real client libraries through PgBouncer in transaction pooling.

`python -m bench.drivers.run --dsn ... --read-dsn ... --seconds 10 --drivers all` runs each
driver's workload (one module per driver) in its own process and prints one JSON result per
driver. The modules import their driver only when they run, so the runner, common and the
docs generator work without any driver installed.
"""
