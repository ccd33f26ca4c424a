"""The monthly PUE report (HTML and PDF) and the annual EU energy-performance export (Delegated Regulation (EU)
2024/1364). :func:`analytics.report.schedule.write_month_report` is the one call that builds and writes a month."""
