"""The user guide that ships with the package: settings, metrics and the export's bound, in Markdown."""

from __future__ import annotations

from importlib import resources

__all__ = ["user_guide"]


def user_guide() -> str:
    """The text of ``wfn_core/docs/settings_and_metrics.md``: what each setting and metric means (Markdown)."""
    return (resources.files("wfn_core") / "docs" / "settings_and_metrics.md").read_text(encoding="utf-8")
