"""The static HTML report (inline SVG charts) over the published DuckDB database."""
