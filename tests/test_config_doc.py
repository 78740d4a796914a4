"""docs/configuration.md is written from the settings models: it must say what they say."""

from __future__ import annotations

from psilm import config_doc


def test_configuration_md_is_the_settings_models_rendered():
    written = config_doc.DOC.read_text(encoding="utf-8")
    assert written == config_doc.render(), (
        "docs/configuration.md differs from the settings models; rewrite it with "
        "`python -m psilm.config_doc > docs/configuration.md`"
    )


def test_every_setting_says_what_it_does():
    assert "| - |" not in config_doc.render()  # a field without a description
