"""Every setting read from the environment is in docs/configuration.md's one table, with a meaning."""

from __future__ import annotations

from tools import settings_doc


def test_the_settings_table_is_current() -> None:
    doc = settings_doc.DOC.read_text()
    assert settings_doc.render(doc) == doc, "docs/configuration.md's settings table is stale: run `make settings-doc`"


def test_every_setting_says_what_it_means() -> None:
    rows = settings_doc.rows()
    assert len(rows) > 80
    missing = [r.variable for r in rows if not r.meaning.strip()]
    assert not missing, f"settings without a meaning (a comment above the field, or MEANINGS): {missing}"
    table = settings_doc.table()
    for expected in (
        "`KAFKA_SECURITY_PROTOCOL`",
        "`SWITCHBOARD_ENV`",
        "`<SERVICE>_HTTP_HOST`",
        "`ASSIST_UPDATE_BUDGET_MS`",
    ):
        assert f"| {expected} |" in table
