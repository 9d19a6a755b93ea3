"""Interface languages: English, French and Traditional Chinese (Hong Kong), with Flask-Babel.

The language of a page is, in order: the `lang` query parameter (`?lang=fr`, `?lang=zh-Hant`,
`?lang=en`), then the browser's Accept-Language, then English. A `lang` parameter is carried
by every page link the templates build with url_for (a url_defaults callback) and by the
search and filter forms, so a choice made with the switch in the header persists while
browsing; downloads and the API are not localised and never get it.

Only interface text is translated: record content (statements, summaries, titles, notes) stays
as written. Vocabulary labels are shown in the chosen language where kb/vocab gives one
(`labels: {fr: ..., zh-Hant: ...}`), else in English. Labels that the library computes in
English (record types, facet titles, verification statuses...) are declared here with N_ so
that `pybabel extract` finds them; the `tr` filter translates them when a template shows them.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

from babel import Locale
from flask import Flask, request, url_for
from flask_babel import Babel, format_date, format_number, get_locale, gettext

from .state import state

# URL code -> Babel locale. The URL code is the BCP 47 tag people write; Babel's catalogue
# directory is translations/<locale>/LC_MESSAGES.
LANGUAGES = {"en": "en", "fr": "fr", "zh-Hant": "zh_Hant_HK"}
LANGUAGE_NAMES = {"en": "English", "fr": "Français", "zh-Hant": "繁體中文"}
# Accept-Language: the first language of the header (by quality) that we have, matched on its
# primary subtag, so fr-CA is French and any Chinese tag (zh-HK, zh-TW, zh-Hant, zh-CN) gets
# the Traditional Chinese pages, the only Chinese we have.
PRIMARY = {"en": "en", "fr": "fr", "zh": "zh-Hant"}
DEFAULT = "en"
# Blueprints whose pages keep an explicit ?lang= in their links (downloads and the API do not).
HTML_BLUEPRINTS = ("pages", "history")


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown (the `tr` filter)."""
    return message


def language() -> str:
    """The URL code (en, fr, zh-Hant) of the request's language."""
    chosen = explicit_language()
    if chosen:
        return chosen
    for tag, _quality in request.accept_languages:  # highest quality first
        found = PRIMARY.get(tag.lower().replace("_", "-").split("-")[0])
        if found:
            return found
    return DEFAULT


def explicit_language() -> str | None:
    """The language the URL asks for (`?lang=`), or None."""
    code = request.args.get("lang", "")
    for known in LANGUAGES:
        if code.lower() in (known.lower(), LANGUAGES[known].lower().replace("_", "-")):
            return known
    if code.lower().startswith("zh"):
        return "zh-Hant"
    return None


def select_locale() -> str:
    return LANGUAGES[language()]


def html_lang() -> str:
    """The value of <html lang>: en, fr, zh-Hant-HK."""
    return {"en": "en", "fr": "fr", "zh-Hant": "zh-Hant-HK"}[language()]


def switch_links() -> list[dict[str, Any]]:
    """The language switch: this page in each language (its path and query, `lang` replaced)."""
    args: dict[str, Any] = {k: request.args.getlist(k) for k in request.args if k != "lang"}
    endpoint = request.endpoint if request.endpoint and _is_page(request.endpoint) else None
    links = []
    for code, name in LANGUAGE_NAMES.items():
        if endpoint:
            href = url_for(endpoint, **(request.view_args or {}), **args, lang=code)
        else:
            href = url_for("pages.home", lang=code)
        links.append({"code": code, "name": name, "href": href, "current": code == language()})
    return links


def keep_language(endpoint: str, values: dict[str, Any]) -> None:
    """url_defaults: page links keep an explicit `?lang=` choice."""
    if not _is_page(endpoint) or "lang" in values:
        return
    code = explicit_language() if request else None
    if code:
        values["lang"] = code


def _is_page(endpoint: str) -> bool:
    return endpoint.split(".", 1)[0] in HTML_BLUEPRINTS


@lru_cache(maxsize=8)
def _vocab_labels(generation: str, locale: str) -> dict[str, str]:
    """English vocabulary label -> label in `locale`, for the terms that have one."""
    del generation  # part of the cache key only
    code = next(c for c, loc in LANGUAGES.items() if loc == locale)
    out: dict[str, str] = {}
    for terms in state().index.vocab().terms.values():
        for term in terms.values():
            label = (getattr(term, "labels", None) or {}).get(code)
            if label:
                out.setdefault(term.label, label)
    return out


def translate_label(value: Any) -> Any:
    """A label the library made in English, in the page's language: a vocabulary term's label
    (from kb/vocab), else its catalogue translation, else as it is."""
    if not isinstance(value, str) or not value:
        return value
    locale = str(get_locale() or DEFAULT)
    if locale == "en":
        return value
    try:
        generation = state().index.generation().name
        found = _vocab_labels(generation, locale).get(value)
    except Exception:  # no index: catalogue strings only
        found = None
    return found or gettext(value)


def localized_date(value: Any, fmt: str = "long") -> str:
    """A date (or an ISO date string) in the page's language; other values as they are."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return str(format_date(value, fmt))
    return str(value)


def localized_number(value: Any) -> Any:
    return format_number(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories="translations")
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.url_defaults(keep_language)
    app.add_template_filter(translate_label, "tr")
    app.add_template_filter(localized_date, "ldate")
    app.add_template_filter(localized_number, "num")

    @app.context_processor
    def language_helpers() -> dict[str, Any]:
        return {
            "html_lang": html_lang,
            "language_links": switch_links,
            "explicit_language": explicit_language,
        }


def locale_of(code: str) -> Locale:
    return Locale.parse(LANGUAGES[code])


# Labels the library (indexer/) computes in English and the pages show; tests/test_i18n.py
# checks that every one of them is listed here, so a new label cannot go untranslated.
LIBRARY_LABELS = (
    N_("Question"),
    N_("Recommendation"),
    N_("Verdict"),
    N_("Study"),
    N_("Reference"),
    N_("Background"),
    N_("Scale"),
    N_("Record type"),
    N_("Level"),
    N_("Level A"),
    N_("Level B"),
    N_("Level C"),
    N_("Below Level A"),
    N_("Below Level B"),
    N_("Below Level C"),
    N_("Direction"),
    N_("efficacy"),
    N_("inefficacy"),
    N_("Indication"),
    N_("Target"),
    N_("Side"),
    N_("Protocol"),
    N_("Study class"),
    N_("Class I"),
    N_("Class II"),
    N_("Class II or better (computed lower bound)"),
    N_("Class III"),
    N_("Class III or better (computed lower bound)"),
    N_("Class IV"),
    N_("Class IV or better (computed lower bound)"),
    N_("Year"),
    N_("Guideline (counted by)"),
    N_("Source of the verdict"),
    N_("Grade (in the source's scale)"),
    N_("Verification"),
    N_("Verified from full text"),
    N_("Verified from abstract"),
    N_("Verified from a secondary source"),
    N_("As cited (unverified)"),
    N_("Sessions"),
    N_("1 session"),
    N_("2-5 sessions"),
    N_("6-10 sessions"),
    N_("More than 10"),
    N_("Not reported in the source"),
    N_("Not recorded"),
    N_("Navigated (neuronavigation)"),
    N_("Navigated"),
    N_("Not navigated"),
    N_("Dose reporting completeness"),
    N_("All core parameters"),
    N_("75-99%"),
    N_("50-74%"),
    N_("Under 50%"),
    N_("checked against the full text."),
    N_("checked against the abstract or a bibliographic record (PubMed, publisher, repository)."),
    N_(
        "checked against a secondary source (a review's table, a summary), which the record names;"
        " the primary source itself was not read."
    ),
    N_("taken from a citing text; no source confirms it."),
    N_("reported"),
    N_("not reported in the source"),
    N_("not applicable"),
    N_("not recorded"),
    N_("Guideline recommendation"),
    N_("Systematic review"),
    N_("Meta-analysis"),
    N_("Consensus statement"),
    N_("for the intervention"),
    N_("against the intervention"),
    N_("no recommendation"),
    N_("Supporting: benefit shown"),
    N_("Opposing: no benefit over sham or control"),
    N_("Inconclusive or mixed"),
    N_("Result not reported"),
    N_("Linked but not counted for this question"),
    N_("Patients (n)"),
    N_("Class"),
    N_("Frequency (Hz)"),
    N_("Intensity"),
    N_("Pulses/session"),
    N_("Total pulses"),
    N_("Navigation"),
    N_("Coil"),
    N_("Result"),
    N_("direction not read"),
)
