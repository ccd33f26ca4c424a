"""The site file's ``[report]`` table: PUE target, counterfactual setpoints and the EED information items.

The models live in the kernel (:mod:`aidc.site_tables`) so that the table is validated once, when the site file is
loaded; an error names the site file, the key path and the bad value, like every other site-file error. Everything
is optional: a missing EED item is reported as missing, never guessed.
"""

from __future__ import annotations

from aidc.config import Site
from aidc.site_tables import EedInfo, ReportConfig

__all__ = ["EedInfo", "ReportConfig", "report_config"]


def report_config(site: Site) -> ReportConfig:
    """The site's ``[report]`` table (validated when the site was loaded)."""
    return site.config.report
