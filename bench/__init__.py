"""`make bench`: PgBouncer (6432) against direct PostgreSQL (5432) on the podman lab."""
