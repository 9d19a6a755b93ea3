#!/usr/bin/env python3
"""Benchmark: build the search index from a synthetic, evidence-like KB of N records.

Not a test. Run from the checkout:

    .venv/bin/python bench/index_build.py                       # N = 1000, 10000
    .venv/bin/python bench/index_build.py --sizes 10000 --profile --out bench/out

N counts indexed records (references, studies, recommendations), as the index and its
"record type" facet do; --count evidence makes N the number of studies + recommendations.

For each N the script
  1. writes references.bib + kb/studies (~85%) + kb/recommendations (~15%) with the real
     vocabularies and rule set copied from kb/, and checks pipeline.load(...).problems == [];
  2. times the build step by step (fingerprint, load = parse+validate+grade, documents,
     Whoosh write) exactly as ensure_index chains them, then the whole
     ensure_index(force=True, quiet=True) into an empty index directory, and (unless
     --no-cli) `tmskb index --force` in a fresh process (interpreter start-up and imports
     included);
  3. measures the size of the live generation, the no-op re-run (median of 5) and the
     incremental update after editing one study file;
  4. loads the same documents (id, title, summary, body) into SQLite FTS5 as a peer.

Targets: 10 000 records built in <= 10 s on a 2-core machine; no-op re-run < 1 s.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=SyntaxWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import yaml  # noqa: E402

from indexer import documents, leftout, parsecache, pipeline  # noqa: E402
from indexer import index as idx  # noqa: E402
from indexer.build import ensure_index  # noqa: E402
from indexer.query import Query  # noqa: E402
from indexer.search import SearchIndex  # noqa: E402
from indexer.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET_NOOP_S = 1.0
NOOP_RUNS = 5
SEED = 20240501

# ---------------------------------------------------------------------------------------------
# Synthetic content
# ---------------------------------------------------------------------------------------------

# (BibTeX surname, ASCII form for keys, given names) -- accents written the BibTeX way.
AUTHORS = [
    (r"M{\"u}ller", "mueller", 'J{\\"o}rg'),
    (r"Andr{\'e}-Obadia", "andreobadia", "Nathalie"),
    (r"Filipovi{\'c}", "filipovic", r"Sa{\v{s}}a R."),
    (r"Garc{\'i}a-Larrea", "garcialarrea", "Luis"),
    (r"Sch{\"o}nfeldt-Lecuona", "schonfeldt", "Carlos"),
    (r"Haanp{\"a}{\"a}", "haanpaa", "Maija"),
    (r"J{\"a}{\"a}skel{\"a}inen", "jaaskelainen", "Satu K."),
    (r"Nu{\~n}ez", "nunez", r"Mar{\'i}a"),
    (r"Br{\o}nnum", "bronnum", "Lars"),
    (r"{\O}stergaard", "ostergaard", "Karen"),
    (r"Gonz{\'a}lez", "gonzalez", "Pablo"),
    (r"Devanne", "devanne", r"Herv{\'e}"),
    ("Lefaucheur", "lefaucheur", "Jean-Pascal"),
    ("Ayache", "ayache", "Samar S."),
    ("Hosomi", "hosomi", "Koichi"),
    ("Khedr", "khedr", "Eman M."),
    ("Mhalla", "mhalla", "Alaa"),
    ("Attal", "attal", "Nadine"),
    ("Bouhassira", "bouhassira", "Didier"),
    ("Chen", "chen", "Wei"),
    ("Zhang", "zhang", "Li"),
    ("Wang", "wang", "Xiao-Ming"),
    ("Kim", "kim", "Ji-Hoon"),
    ("Pasqualetti", "pasqualetti", "Patrizio"),
    ("Treede", "treede", "Rolf-Detlef"),
    ("Cruccu", "cruccu", "Giorgio"),
    ("Nurmikko", "nurmikko", "Turo"),
    ("Hansson", "hansson", "Per"),
    ("Rossi", "rossi", "Simone"),
    ("Rothwell", "rothwell", "John C."),
    ("Ziemann", "ziemann", "Ulf"),
    ("Paulus", "paulus", "Walter"),
    ("Oliviero", "oliviero", "Antonio"),
    ("Koch", "koch", "Giacomo"),
    ("Langguth", "langguth", "Berthold"),
    ("Padberg", "padberg", "Frank"),
    ("Baeken", "baeken", "Chris"),
    ("Stagg", "stagg", "Charlotte J."),
    ("Siebner", "siebner", "Hartwig R."),
    ("de Carvalho", "decarvalho", "Mamede"),
    ("Di Lazzaro", "dilazzaro", "Vincenzo"),
    ("De Ridder", "deridder", "Dirk"),
    ("Valls-Sol{\\'e}", "vallssole", "Josep"),
    ("Poulet", "poulet", "Emmanuel"),
    ("Tanaka", "tanaka", "Hiroshi"),
    ("Saitoh", "saitoh", "Youichi"),
    ("O'Connell", "oconnell", "Neil E."),
    ("Moisset", "moisset", "Xavier"),
    ("Quesada", "quesada", "Charles"),
    ("Peyron", "peyron", "Roland"),
    ("Nardone", "nardone", "Raffaele"),
    ("Fregni", "fregni", "Felipe"),
]
JOURNALS = [
    "Pain",
    "Clinical Neurophysiology",
    "Brain Stimulation",
    "Neurology",
    "European Journal of Pain",
    "Journal of Neurology, Neurosurgery, and Psychiatry",
    "Neurophysiologie Clinique",
    "The Journal of Pain",
    "Neuromodulation: Technology at the Neural Interface",
    "Journal of Pain Research",
    r"Brain {\&} Behavior",
    "Frontiers in Neurology",
    "Cephalalgia",
    "Journal of Affective Disorders",
    "Schizophrenia Research",
    "Archives of Physical Medicine and Rehabilitation",
]
WORDS = """
analgesia analgesic patients randomised sham-controlled double-blind cross-over parallel trial
stimulation cortex motor prefrontal dorsolateral contralateral ipsilateral hemisphere neuropathic
pain intensity relief score scale visual analogue numerical rating questionnaire baseline follow-up
week month session sessions daily maintenance induction protocol frequency high-frequency
low-frequency theta-burst intermittent continuous pulses train intensity threshold resting motor
navigated neuronavigation coil figure-of-eight deep responders response rate effect size
significant improvement reduction decrease increase placebo sham active arm group cohort
enrolled completed dropout adverse events headache tolerability safety seizure mild transient
depression anxiety mood sleep fatigue quality life disability function allodynia hyperalgesia
spinal cord injury stroke thalamic trigeminal neuralgia postherpetic fibromyalgia migraine
complex regional syndrome central peripheral nerve lesion plasticity excitability inhibition
cortical silent period evoked potential amplitude opioid descending modulation thalamus insula
cingulate connectivity imaging functional magnetic resonance electroencephalography outcome
primary secondary endpoint analysis intention-to-treat per-protocol multicentre single-centre
pilot open-label observational registry meta-analysis heterogeneity bias blinding allocation
concealment masked assessor durable sustained short-lived cumulative duration weeks months
""".split()
TITLE_PATTERNS = [
    "{rTMS} of the {target} for {condition}: a randomised sham-controlled trial",
    "Repetitive transcranial magnetic stimulation of the {target} in {condition}",
    "Analgesic effects of {proto} over the {target} in patients with {condition}",
    "Long-term {rTMS} of the {target} relieves {condition}: a {w1} {w2} study",
    "Navigated {rTMS} targeting the {target} in chronic {condition}",
    "{proto} and {w1} {w2} in {condition}: a multicentre trial",
]
SUMMARY_OPENERS = ["In", "Among", "Across", "For"]
VERBS = ["reduced", "improved", "did not change", "modulated", "relieved", "was compared for"]


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=96, initial_indent=indent, subsequent_indent=indent)


def _q(value: Any) -> str:
    """A scalar as YAML (JSON is a subset of YAML, so strings are always safe)."""
    return json.dumps(value, ensure_ascii=False)


def _flow(values: list[str]) -> str:
    if len(values) == 1 and random.random() < 0.6:
        return values[0]
    return "[" + ", ".join(values) + "]"


@dataclass
class Vocab:
    ids: dict[str, list[str]]
    labels: dict[str, dict[str, str]]


def read_vocab(vocab_dir: Path) -> Vocab:
    ids: dict[str, list[str]] = {}
    labels: dict[str, dict[str, str]] = {}
    for path in sorted(vocab_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text("utf-8"))
        ids[data["vocabulary"]] = [t["id"] for t in data["terms"]]
        labels[data["vocabulary"]] = {t["id"]: t["label"] for t in data["terms"]}
    return Vocab(ids, labels)


@dataclass
class Generated:
    root: Path
    studies: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    guidelines: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0


def _sentence(rng: random.Random, n: int) -> str:
    words = rng.choices(WORDS, k=n)
    return " ".join(words)


def _summary(rng: random.Random, vocab: Vocab, condition: str, target: str, words: int) -> str:
    """30-60 words: a lead-in naming the condition and target, then drawn words in sentences."""
    n_patients = rng.randint(8, 250)
    lead = (
        f"{rng.choice(SUMMARY_OPENERS)} {n_patients} patients with "
        f"{vocab.labels['indications'][condition].lower()}, stimulation of the "
        f"{vocab.labels['targets'][target]} {rng.choice(VERBS)}"
    )
    remaining = max(words - len(lead.split()), 10)
    parts, left = [], remaining
    while left > 0:
        k = min(left, rng.randint(8, 16))
        parts.append(_sentence(rng, k))
        left -= k
    return lead + " " + "; ".join(parts[:1]) + ". " + ". ".join(p.capitalize() for p in parts[1:]) + "."


def _authors(rng: random.Random) -> tuple[str, str]:
    """(BibTeX author field, ASCII surname of the first author)."""
    picked = rng.sample(AUTHORS, rng.randint(1, 9))
    names = [f"{last}, {first}" for last, _, first in picked]
    if len(picked) > 5 and rng.random() < 0.3:
        names.append("others")
    lines, line = [], ""
    for name in names:
        piece = name + " and "
        if len(line) + len(piece) > 80:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    text = "\n             ".join(x.rstrip() for x in lines).removesuffix(" and").rstrip()
    return text.removesuffix(" and"), picked[0][1]


def _bib_entry(
    rng: random.Random, key: str, author: str, title: str, year: int, *, journal: str | None = None
) -> str:
    volume = rng.randint(1, 180)
    first = rng.randint(1, 2400)
    pmid = rng.randint(7_000_000, 39_999_999)
    doi = f"10.{rng.randint(1000, 9999)}/{key.replace('-', '.')}.{year}.{rng.randint(10, 999)}"
    lines = [
        f"@article{{{key},",
        f"  author  = {{{author}}},",
        f"  title   = {{{title}}},",
        f"  journal = {{{journal or rng.choice(JOURNALS)}}},",
        f"  year    = {{{year}}},",
        f"  volume  = {{{volume}}},",
    ]
    if rng.random() < 0.7:
        lines.append(f"  number  = {{{rng.randint(1, 12)}}},")
    lines.append(f"  pages   = {{{first}--{first + rng.randint(4, 30)}}},")
    if rng.random() < 0.9:
        lines.append(f"  doi     = {{{doi}}},")
    if rng.random() < 0.85:
        lines.append(f"  pmid    = {{{pmid}}},")
    if rng.random() < 0.2:
        lines.append(f"  note    = {{{_sentence(rng, rng.randint(6, 14)).capitalize()}.}},")
    lines.append(f"  verification = {{{rng.choice(['full-text', 'abstract', 'abstract', 'as-cited'])}}}")
    lines.append("}")
    return "\n".join(lines) + "\n"


INTENSITIES = ["null", '"80% RMT"', '"90% RMT"', '"110% RMT"', '"120% MT"']
SCHEDULES = ["null", "daily", '"5 daily sessions, then weekly"', "alternate days"]
SHAM_TYPES = ["null", '"sham coil"', '"tilted coil"']
OUTCOME_MEASURES = ["VAS", '"VAS; SF-MPQ"', "NRS", '"BPI; LANSS"', "null"]
FLAWS = ["null", "[]", '["high dropout", "unclear allocation concealment"]', "[baseline imbalance]"]
POPULATIONS = ["null", '"post-acute stage"', '"drug-resistant"']
FREQ = {
    "hf-rtms": [5, 10, 10, 20, None],
    "lf-rtms": [1, 0.5, None],
    "itbs": [50],
    "ctbs": [50],
    "deep-tms": [10, 20],
    "rtms": [None, 10],
}


def _unique(key: str, seen: set[str]) -> str:
    out, n = key, 1
    while out in seen:
        n += 1
        out = f"{key}-{n}"
    seen.add(out)
    return out


def generate(root: Path, n: int, vocab_src: Path, rules_src: Path, seed: int = SEED) -> Generated:
    """Write a valid KB of n records (~85% studies, ~15% recommendations) under root."""
    started = time.perf_counter()
    rng = random.Random(seed + n)
    random.seed(seed + n)  # _flow
    if root.exists():
        shutil.rmtree(root)
    (root / "kb" / "studies").mkdir(parents=True)
    (root / "kb" / "recommendations").mkdir(parents=True)
    shutil.copytree(vocab_src, root / "kb" / "vocab")
    shutil.copytree(rules_src, root / "kb" / "rulesets")
    vocab = read_vocab(root / "kb" / "vocab")
    v = vocab.ids
    out = Generated(root)
    n_recs = max(1, round(n * 0.15))
    n_studies = n - n_recs
    n_guidelines = max(1, n_recs // 8)  # a guideline grades several indications and protocols
    keys: set[str] = set()
    bib = ["% Synthetic bibliography written by bench/index_build.py; not real references.\n"]

    # Guidelines: the rule set cites lefaucheur2014guidelines, so that key exists too.
    for i in range(n_guidelines):
        year = rng.randint(1995, 2024)
        author, surname = _authors(rng)
        key = "lefaucheur2014guidelines" if i == 0 else _unique(f"{surname}{year}guidelines", keys)
        keys.add(key)
        title = (
            f"Evidence-based guidelines on the therapeutic use of repetitive transcranial "
            f"magnetic stimulation ({{rTMS}}): update {i + 1}"
        )
        bib.append(
            _bib_entry(rng, key, author, title, 2014 if i == 0 else year, journal="Clinical Neurophysiology")
        )
        out.guidelines.append(key)

    # Studies: one BibTeX entry and one YAML file each.
    studies_meta: list[tuple[str, str, str]] = []  # id, condition, result
    for _ in range(n_studies):
        year = rng.randint(1995, 2024)
        author, surname = _authors(rng)
        conditions = rng.sample(v["indications"], 1 if rng.random() < 0.85 else 2)
        target = rng.choice(v["targets"])
        proto = rng.choice(v["protocols"])
        w1, w2 = rng.sample(WORDS, 2)
        title = rng.choice(TITLE_PATTERNS).format(
            rTMS="{rTMS}",
            target=vocab.labels["targets"][target].replace("(M1)", "({M1})").replace("(DLPFC)", "({DLPFC})"),
            condition=vocab.labels["indications"][conditions[0]].lower(),
            proto=vocab.labels["protocols"][proto].split(" (")[0],
            w1=w1,
            w2=w2,
        )
        word = re.sub(r"[^a-z]", "", conditions[0].split("-")[0])[:10]
        key = _unique(f"{surname}{year}{word}", keys)
        bib.append(_bib_entry(rng, key, author, title, year))
        result = rng.choice(["positive", "positive", "negative", "mixed", "inconclusive", None])
        text = _study_yaml(rng, vocab, key, conditions, target, proto, result, out.guidelines)
        path = root / "kb" / "studies" / f"{key}.yaml"
        path.write_text(text, "utf-8")
        out.bytes += len(text.encode())
        out.studies.append(key)
        studies_meta.append((key, conditions[0], result or ""))

    # Recommendations: cite a guideline, link 0-5 supporting studies.
    for i in range(n_recs):
        guideline = rng.choice(out.guidelines)
        indication = rng.choice(v["indications"])
        target = rng.choice(v["targets"])
        proto = rng.choice(v["protocols"])
        rid = f"{guideline}-{indication}-{target}-{proto}-{i:05d}"
        supporting = rng.sample(out.studies, rng.randint(0, min(5, len(out.studies))))
        text = _recommendation_yaml(rng, vocab, rid, guideline, indication, target, proto, supporting)
        path = root / "kb" / "recommendations" / f"{rid}.yaml"
        path.write_text(text, "utf-8")
        out.bytes += len(text.encode())
        out.recommendations.append(rid)

    bib_text = "\n".join(bib)
    (root / "references.bib").write_text(bib_text, "utf-8")
    out.bytes += len(bib_text.encode())
    out.seconds = time.perf_counter() - started
    return out


def _study_yaml(
    rng: random.Random,
    vocab: Vocab,
    key: str,
    conditions: list[str],
    target: str,
    proto: str,
    result: str | None,
    guidelines: list[str],
) -> str:
    v = vocab.ids
    design = rng.choice(v["designs"])
    randomised = {"parallel-rct": True, "crossover-rct": True, "open-label": False, "case-series": False}.get(
        design, rng.choice([True, None, False])
    )
    uncontrolled = design in ("open-label", "case-series")
    control = "none" if uncontrolled else rng.choice(["sham", "sham", "active", None])
    total = rng.randint(6, 260)
    active = None if design == "crossover-rct" or rng.random() < 0.2 else max(1, total // rng.randint(1, 3))
    flaws = rng.choice(FLAWS)
    arms = []
    for a in range(1 if rng.random() < 0.8 else 2):
        p = proto if a == 0 else rng.choice(v["protocols"])
        freq = rng.choice(FREQ.get(p, [None]))
        arm_target = target if a == 0 else rng.choice(v["targets"])
        side = rng.choice([[], [rng.choice(v["sides"])], [rng.choice(v["sides"])]])
        coil = rng.choice([[], [], [rng.choice(v["coils"])]])
        lines = []
        if a or rng.random() < 0.1:
            lines.append("label: " + _q(f"{freq:g} Hz" if freq else f"arm {a + 1}"))
        lines += [
            f"target: {_flow([arm_target])}",
            f"side: {_flow(side) if side else '[]'}",
            f"protocol: {p}",
            f"frequency_hz: {'null' if freq is None else freq}",
            f"intensity: {rng.choice(INTENSITIES)}",
            f"pulses_per_session: {rng.choice(['null', 500, 1000, 1200, 1500, 2000, 3000])}",
            f"sessions: {rng.choice(['null', 1, 5, 10, 14, 20])}",
            f"schedule: {rng.choice(SCHEDULES)}",
            f"coil: {_flow(coil) if coil else '[]'}",
            f"neuronavigation: {rng.choice(['null', 'true', 'false'])}",
            f"result: {rng.choice(['positive', 'negative', 'mixed', 'null'])}",
        ]
        arms.append("  - " + "\n    ".join(lines))
    stated = "null"
    if rng.random() < 0.1:
        stated = (
            f"{{class: {rng.choice(['I', 'II', 'III', 'IV'])}, reference: {rng.choice(guidelines)}, "
            f"location: {_q('Table ' + str(rng.randint(1, 12)))}}}"
        )
    summary = _summary(rng, vocab, conditions[0], target, rng.randint(30, 60))
    notes = "null" if rng.random() < 0.6 else _q(_sentence(rng, rng.randint(8, 20)).capitalize() + ".")
    return (
        "# yaml-language-server: $schema=../../indexer/schemas/study.schema.json\n"
        f"id: {key}\ntype: study\nreference: {key}\n"
        f"condition: {_flow(conditions)}\ndesign: {design}\n"
        f"randomised: {'null' if randomised is None else str(randomised).lower()}\n"
        f"control: {'null' if control is None else control}\n"
        f"sham_type: {rng.choice(SHAM_TYPES)}\n"
        f"blinding: {rng.choice(['double', 'assessor', 'single', 'open', 'null'])}\n"
        f"patients: {{total: {total}, active: {'null' if active is None else active}}}\n"
        f"flaws: {flaws}\n"
        "arms:\n" + "\n".join(arms) + "\n"
        f"outcome_measure: {rng.choice(OUTCOME_MEASURES)}\n"
        f"result: {'null' if result is None else result}\n"
        f"summary: >\n{_wrap(summary)}\n"
        f"stated_class: {stated}\n"
        "source:\n  location: abstract (PubMed)\n"
        f"  url: https://pubmed.ncbi.nlm.nih.gov/{rng.randint(7_000_000, 39_999_999)}/\n"
        f"verification: {rng.choice(['full-text', 'abstract', 'abstract', 'as-cited'])}\n"
        f"notes: {notes}\n"
    )


def _recommendation_yaml(
    rng: random.Random,
    vocab: Vocab,
    rid: str,
    guideline: str,
    indication: str,
    target: str,
    proto: str,
    supporting: list[str],
) -> str:
    v = vocab.ids
    level = rng.choice(["A", "B", "C", None])
    bound = "null" if level else rng.choice(["null", "below-A", "below-B", "below-C"])
    direction = (
        rng.choice(["efficacy", "efficacy", "inefficacy"]) if level else rng.choice(["efficacy", "null"])
    )
    statement = _summary(rng, vocab, indication, target, rng.randint(30, 60))
    side = rng.choice(v["sides"])
    return (
        "# yaml-language-server: $schema=../../indexer/schemas/recommendation.schema.json\n"
        f"id: {rid}\ntype: recommendation\nquestion: null\nguideline: {guideline}\nindication: {indication}\n"
        f"outcome_domain: {rng.choice([*v['outcomes'], 'null'])}\n"
        f"population: {rng.choice(POPULATIONS)}\n"
        f"target: {target}\nside: {side}\nprotocol: {proto}\n"
        f"coil: {rng.choice(['[]', '[]', rng.choice(v['coils'])])}\n"
        f"level: {level or 'null'}\nlevel_bound: {bound}\ndirection: {direction}\n"
        f"statement: >\n{_wrap(statement)}\n"
        f"candidate_studies: [{', '.join(supporting)}]\ncounted_studies: []\n"
        f"source:\n  location: {_q(f'Table {rng.randint(1, 20)}, p. {rng.randint(100, 2200)}')}\n"
        f"  url: https://doi.org/10.1016/j.clinph.{rng.randint(2000, 2024)}."
        f"{rng.randint(1, 99):02d}.{rng.randint(1, 999):03d}\n"
        f"verification: {rng.choice(['full-text', 'abstract', 'as-cited'])}\n"
        f"notes: {'null' if rng.random() < 0.5 else _q(_sentence(rng, rng.randint(8, 24)).capitalize())}"
        "\n"
    )


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


def _du(path: Path) -> tuple[int, int, int]:
    """(apparent bytes, disk bytes as du counts them, number of files) under path."""
    apparent = disk = files = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            apparent += st.st_size
            disk += st.st_blocks * 512
            files += 1
    return apparent, disk, files


def _fts5(docs: list[dict[str, Any]], db: Path) -> tuple[float, int]:
    """Load id/title/summary/body into a table plus an external-content FTS5 index."""
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE docs(rowid INTEGER PRIMARY KEY, id TEXT UNIQUE, title TEXT, summary TEXT, body TEXT);
        CREATE VIRTUAL TABLE docs_fts USING fts5(title, summary, body, content='docs', content_rowid='rowid',
                                                 tokenize='porter unicode61 remove_diacritics 2');
    """)
    with con:
        # The same searchable text our index gets: "text" holds title, summary and the rest.
        rows = [(i, d["id"], d["title"], d["summary"], d["text"]) for i, d in enumerate(docs, 1)]
        con.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT INTO docs_fts(rowid, body) VALUES (?, ?)", [(r[0], r[4]) for r in rows])
    hits = con.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'neuropathic'").fetchone()[0]
    con.close()
    seconds = time.perf_counter() - started
    assert hits > 0
    return seconds, db.stat().st_size


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def code_stamp() -> str:
    """Which indexer code was measured: a hash of indexer/*.py and its newest modification time."""
    files = sorted((REPO / "indexer").glob("*.py"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    newest = time.strftime("%H:%M:%S", time.localtime(max(f.stat().st_mtime for f in files)))
    return f"indexer/*.py sha256 {digest}, newest file {newest}"


CODE_STAMP = code_stamp()
RUN_STARTED = time.strftime("%Y-%m-%d %H:%M:%S")


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s")


def _fmt_b(x: int) -> str:
    return f"{x / 1024 / 1024:.1f} MiB"


@dataclass
class Result:
    n: int
    gen: Generated
    n_refs: int = 0
    n_docs: int = 0
    writer_mode: str = ""
    steps: bool = False
    t_fingerprint: float = 0.0
    t_load: float = 0.0
    t_documents: float = 0.0
    t_write: float = 0.0
    t_full: float = 0.0
    full_report: idx.BuildReport | None = None
    t_cli: float | None = None
    cli_line: str = ""
    size_apparent: int = 0
    size_disk: int = 0
    size_files: int = 0
    noop: list[float] = field(default_factory=list)
    edits: list[float] = field(default_factory=list)  # edit -> ensure_index -> search finds it
    edit_builds: list[float] = field(default_factory=list)  # of which ensure_index
    # edit -> `tmskb index` in a new process (interpreter, imports, cold caches) -> search finds it
    cli_edits: list[float] = field(default_factory=list)
    edit_report: idx.BuildReport | None = None
    t_fts5: float = 0.0
    fts5_size: int = 0
    maxrss_mb: float = 0.0
    load_before: str = ""
    load_after: str = ""


# Index records per evidence record: the study, its own reference, and a share of a guideline.
RECORDS_PER_EVIDENCE = 1 + 0.85 + 0.15 / 8
EDITS = 3  # edit-to-searchable runs per size (different studies), median and max reported


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(n: int, base: Path, run_cli: bool, count: str = "records", steps: bool = True) -> Result:
    root = base / f"kb-{n}"
    evidence = round(n / RECORDS_PER_EVIDENCE) if count == "records" else n
    gen = generate(root, evidence, REPO / "kb" / "vocab", REPO / "kb" / "rulesets")
    res = Result(n, gen, steps=steps, load_before=_loadavg())
    print(
        f"[{n}] generated {len(gen.studies)} studies, {len(gen.recommendations)} recommendations, "
        f"{len(gen.guidelines)} guidelines in {gen.seconds:.1f} s -> {root}; load average {res.load_before}",
        flush=True,
    )

    # (a1) The steps of ensure_index, timed one by one, into an empty index directory (no cache).
    if steps:
        step_settings = Settings.for_root(root, base / f"index-{n}-steps")
        t = time.perf_counter()
        fingerprint = pipeline.fingerprint(step_settings)
        res.t_fingerprint = time.perf_counter() - t
        t = time.perf_counter()
        kb = pipeline.load(step_settings)
        res.t_load = time.perf_counter() - t
        _check_generated(kb, evidence)
        t = time.perf_counter()
        docs = documents.build_documents(kb)
        res.t_documents = time.perf_counter() - t
        s0, c0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        idx.build_index(
            docs,
            step_settings.index_dir,
            fingerprint=fingerprint,
            extra={idx.VOCAB: kb.vocab.to_json()},
            force=True,
        )
        res.t_write = time.perf_counter() - t
        # CPU of this process and of any writer processes Whoosh forks, so the table shows how the
        # write actually ran instead of what a constant says.
        parent, workers = _cpu(resource.RUSAGE_SELF) - s0, _cpu(resource.RUSAGE_CHILDREN) - c0
        res.writer_mode = (
            f"cpu {parent:.1f}+{workers:.1f} s" if workers > 0.05 else f"1 proc, cpu {parent:.1f} s"
        )
        print(
            f"[{n}] steps: fingerprint {_fmt_s(res.t_fingerprint)}, load {_fmt_s(res.t_load)}, "
            f"documents {_fmt_s(res.t_documents)}, whoosh write {_fmt_s(res.t_write)}",
            flush=True,
        )
        res.t_fts5, res.fts5_size = _fts5(docs, base / f"fts5-{n}.sqlite")
        del kb, docs
        shutil.rmtree(step_settings.index_dir, ignore_errors=True)

    # (a2) The whole path `tmskb index` takes, from scratch into an empty index directory: no
    # generation and no parse cache (both live in the index directory).
    settings = Settings.for_root(root, base / f"index-{n}")
    assert not settings.index_dir.exists()
    t = time.perf_counter()
    report = ensure_index(settings, force=True)
    res.t_full = time.perf_counter() - t
    res.full_report = report
    assert report is not None and report.full and report.parse_reused == 0, report
    res.n_docs = report.added
    print(
        f"[{n}] cold full build, ensure_index: {_fmt_s(res.t_full)} (build_index {_fmt_s(report.seconds)}, "
        f"{report.parsed} files parsed); load average {_loadavg()}",
        flush=True,
    )

    # (b) Size of the live generation.
    live = idx.current_dir(settings.index_dir)
    assert live is not None
    res.size_apparent, res.size_disk, res.size_files = _du(live)

    # (c) No-op re-runs.
    for _ in range(NOOP_RUNS):
        t = time.perf_counter()
        again = ensure_index(settings)
        res.noop.append(time.perf_counter() - t)
        assert again is None, f"no-op re-run rebuilt: {again}"

    # (d) Edit one study's summary, refresh as `tmskb index` does, then open a searcher and find
    # the edited text: what a curator waits for before the preview shows the edit.
    for i in range(EDITS):
        study = gen.studies[(len(gen.studies) * (i + 1)) // (EDITS + 1)]
        word = f"benchmarkedit{'abcdefghij'[i]}word"
        t = _edit_study(root, study, word)
        r = ensure_index(settings)
        built = time.perf_counter()
        hits = SearchIndex(settings.index_dir).search(Query.make(text=word), cache=False).hits
        res.edits.append(time.perf_counter() - t)
        res.edit_builds.append(built - t)
        assert [h.id for h in hits] == [study], (word, [h.id for h in hits])
        assert r is not None and not r.full, r
        assert (r.added, r.updated, r.deleted) == (0, 1, 0), f"expected exactly 1 updated: {r}"
        res.edit_report = r
        print(
            f"[{n}] edit {i + 1}: searchable after {_fmt_s(res.edits[-1])} "
            f"(ensure_index {_fmt_s(built - t)}: {r.parsed} parsed, {r.documents} documents built, "
            f"{r.updated} updated, {r.unchanged} unchanged)",
            flush=True,
        )

    # (e) The same, as a curator runs it: `tmskb index` in a new process after each edit (this
    # process has just built the whole KB, and its fragmented heap makes (d) slower at 100k).
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
    exe = Path(sys.executable).with_name("tmskb")
    for i in range(EDITS):
        study = gen.studies[(len(gen.studies) * (i + 1)) // (EDITS + 1) + 1]
        word = f"benchmarkclieditword{'abcdefghij'[i]}"
        t = _edit_study(root, study, word)
        cmd = [str(exe), "index", "--root", str(root), "--index-dir", str(settings.index_dir)]
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        hits = SearchIndex(settings.index_dir).search(Query.make(text=word), cache=False).hits
        res.cli_edits.append(time.perf_counter() - t)
        assert [h.id for h in hits] == [study], (word, [h.id for h in hits])
        print(
            f"[{n}] edit {i + 1}, tmskb index in a new process: searchable after {_fmt_s(res.cli_edits[-1])}"
        )

    if not steps:  # FTS5 peer on the very same documents (built here from the parse cache)
        with parsecache.opened(settings.index_dir) as cache:
            kb = pipeline.load(settings, cache=cache)
        docs = documents.build_documents(leftout.partition(kb)[0])
        res.t_fts5, res.fts5_size = _fts5(docs, base / f"fts5-{n}.sqlite")
        del kb, docs
    print(f"[{n}] peer: SQLite FTS5 loads the same documents in {_fmt_s(res.t_fts5)}", flush=True)

    # A fresh process: what a user waits for (interpreter, imports, cold caches).
    if run_cli:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
        exe = Path(sys.executable).with_name("tmskb")
        cmd = [str(exe), "index", "--force", "--root", str(root), "--index-dir", str(base / f"index-{n}-cli")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        res.t_cli = time.perf_counter() - t
        res.cli_line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        print(f"[{n}] tmskb index --force (new process, cold cache): {_fmt_s(res.t_cli)}", flush=True)

    res.maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res.load_after = _loadavg()
    return res


def _edit_study(root: Path, study: str, word: str) -> float:
    """Add `word` to a study's summary; the perf_counter time just before the file was written."""
    edited = root / "kb" / "studies" / f"{study}.yaml"
    text = edited.read_text("utf-8")
    started = time.perf_counter()
    edited.write_text(text.replace("summary: >\n", f"summary: >\n  Edited by the benchmark: {word}.\n", 1))
    return started


def _check_generated(kb: pipeline.KB, evidence: int) -> None:
    if kb.problems:
        for problem in kb.problems[:20]:
            print("  PROBLEM", problem)
        raise AssertionError(f"{len(kb.problems)} problems in the generated KB (first ones above)")
    assert len(kb.records) == evidence, (len(kb.records), evidence)


def machine_info() -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    mem = "?"
    try:
        kb_total = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb_total / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    from importlib.metadata import version

    libs = ", ".join(
        f"{p} {version(p)}" for p in ("Whoosh-Reloaded", "bibtexparser", "PyYAML", "jsonschema", "pylatexenc")
    )
    return [
        f"machine : nproc {nproc}, CPU {model}, RAM {mem}, {platform.system()} {platform.release()}",
        f"python  : {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"libs    : {libs}, libyaml {yaml.__with_libyaml__}, SQLite {sqlite3.sqlite_version}",
        f"code    : {CODE_STAMP}; run started {RUN_STARTED}",
    ]


TARGET_EDIT_S = {10_000: 1.0, 100_000: 3.0}
TARGET_FULL_100K_S = 90.0


def print_table(results: list[Result]) -> None:
    cols = [f"N={r.n}" for r in results]
    w0, w = 44, 22

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<{w0}}" + "".join(f"{x:>{w}}" for x in values))

    def sep() -> None:
        print("-" * (w0 + w * len(results)))

    print()
    for line in machine_info():
        print(line)
    print(
        f"targets : edit one study -> searchable <= {TARGET_EDIT_S[10_000]:.0f} s at 10k, "
        f"<= {TARGET_EDIT_S[100_000]:.0f} s at 100k; full 100k build <= {TARGET_FULL_100K_S:.0f} s; "
        f"no-op < {TARGET_NOOP_S:.0f} s"
    )
    sep()
    row("", cols)
    sep()
    row("load average (1/5/15 min) before", [r.load_before for r in results])
    row("load average after", [r.load_after for r in results])
    row(
        "records (studies + recommendations)",
        [f"{len(r.gen.studies)}+{len(r.gen.recommendations)}" for r in results],
    )
    row("index documents", [str(r.n_docs) for r in results])
    row("KB source size", [_fmt_b(r.gen.bytes) for r in results])
    sep()
    if any(r.steps for r in results):
        row(
            "(a) steps, no cache: fingerprint", [_fmt_s(r.t_fingerprint) if r.steps else "-" for r in results]
        )
        row("    load: parse+validate+grade", [_fmt_s(r.t_load) if r.steps else "-" for r in results])
        row("    build_documents", [_fmt_s(r.t_documents) if r.steps else "-" for r in results])
        row("    whoosh write (build_index)", [_fmt_s(r.t_write) if r.steps else "-" for r in results])
        row("    whoosh write: CPU parent(+workers)", [r.writer_mode or "-" for r in results])
    row("(a) FULL build, cold (empty index dir)", [_fmt_s(r.t_full) for r in results])
    row(
        "    of which build_index",
        [_fmt_s(r.full_report.seconds if r.full_report else None) for r in results],
    )
    row("    tmskb index --force, new process", [_fmt_s(r.t_cli) for r in results])
    row("    docs/s", [f"{r.n_docs / r.t_full:,.0f}" for r in results])
    sep()
    row("(b) live generation size (du)", [_fmt_b(r.size_disk) for r in results])
    row("    apparent size / files", [f"{_fmt_b(r.size_apparent)} / {r.size_files}" for r in results])
    sep()
    row(f"(c) no-op re-run, median of {NOOP_RUNS}", [_fmt_s(statistics.median(r.noop)) for r in results])
    row("    min .. max", [f"{_fmt_s(min(r.noop))}..{_fmt_s(max(r.noop))}" for r in results])
    sep()
    row(
        f"(d) edit 1 study -> searchable, median of {EDITS}",
        [_fmt_s(statistics.median(r.edits)) for r in results],
    )
    row("    max", [_fmt_s(max(r.edits)) for r in results])
    row("    of which ensure_index (median)", [_fmt_s(statistics.median(r.edit_builds)) for r in results])
    row(
        "    of which build_index (last)",
        [_fmt_s(r.edit_report.seconds if r.edit_report else None) for r in results],
    )
    row(
        "    parsed / documents built / unchanged",
        [f"{e.parsed} / {e.documents} / {e.unchanged}" if (e := r.edit_report) else "-" for r in results],
    )
    row(
        f"(e) the same with `tmskb index` (new process), median of {EDITS}",
        [_fmt_s(statistics.median(r.cli_edits)) if r.cli_edits else "-" for r in results],
    )
    row("    max", [_fmt_s(max(r.cli_edits)) if r.cli_edits else "-" for r in results])
    sep()
    row("peer: SQLite FTS5 load (same docs)", [_fmt_s(r.t_fts5) for r in results])
    row("    FTS5 database size", [_fmt_b(r.fts5_size) for r in results])
    row("    full build / FTS5 load", [f"{r.t_full / r.t_fts5:.1f}x" for r in results])
    row("peak RSS of this process", [f"{r.maxrss_mb:.0f} MiB" for r in results])
    sep()
    for r in results:
        edit = statistics.median(r.edits)
        verdict = []
        if r.n in TARGET_EDIT_S:
            ok = max(r.edits) <= TARGET_EDIT_S[r.n]
            verdict.append(
                f"edit->searchable median {edit:.2f} s, max {max(r.edits):.2f} s "
                f"{'<=' if ok else '>'} {TARGET_EDIT_S[r.n]:.0f} s: {'PASS' if ok else 'FAIL'}"
            )
        if r.n == 100_000:
            ok = r.t_full <= TARGET_FULL_100K_S
            verdict.append(
                f"full build {r.t_full:.1f} s {'<=' if ok else '>'} {TARGET_FULL_100K_S:.0f} s: "
                f"{'PASS' if ok else 'FAIL'} (FTS5 {r.t_fts5:.1f} s)"
            )
        noop = statistics.median(r.noop)
        verdict.append(f"no-op {noop * 1000:.0f} ms: {'PASS' if noop < TARGET_NOOP_S else 'FAIL'}")
        print(f"N={r.n}: " + "; ".join(verdict))
    for r in results:
        if r.cli_line:
            print(f"N={r.n} tmskb says: {r.cli_line}")


def profile(n: int, base: Path, top: int) -> None:
    """cProfile of ensure_index(force=True) into an empty directory. Work done in forked writer
    processes (if the indexer uses any) is not profiled; it shows up as waiting in the parent."""
    root = base / f"kb-{n}"
    settings = Settings.for_root(root, base / f"index-{n}-profile")
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    prof = cProfile.Profile()
    prof.enable()
    ensure_index(settings, force=True)
    prof.disable()
    out = base / f"profile-{n}.pstats"
    prof.dump_stats(out)
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        text = buf.getvalue()
        print(f"\n=== cProfile of ensure_index(force=True), N={n}, sorted by {key} (saved {out}) ===")
        print(text[text.find("   ncalls") :].rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument(
        "--sizes", nargs="+", default=["1000,10000"], help="record counts (space- or comma-separated)"
    )
    parser.add_argument(
        "--steps",
        choices=["auto", "yes", "no"],
        default="auto",
        help="also time parse/documents/write one by one without cache (auto: below 50000 records)",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip `tmskb index --force` in a new process")
    parser.add_argument("--profile", action="store_true", help="also cProfile ensure_index for the largest N")
    parser.add_argument("--top", type=int, default=30, help="rows of profile output")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--count",
        choices=["records", "evidence"],
        default="records",
        help="N counts every indexed record (references too, as the bundled KB does) or only "
        "studies + recommendations",
    )
    args = parser.parse_args()
    sizes = [int(s) for arg in args.sizes for s in arg.split(",") if s.strip()]
    if args.out:
        base = args.out.resolve()
        base.mkdir(parents=True, exist_ok=True)
        for child in base.iterdir():  # start every size from empty index directories
            if child.name.startswith(("index-", "kb-", "fts5-", "profile-")):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        base = Path(tempfile.mkdtemp(prefix="tmskb-bench-"))
    print(f"working directory: {base}; N counts {args.count}; code: {CODE_STAMP}", flush=True)
    try:
        results = [
            measure(
                n,
                base,
                not args.no_cli,
                args.count,
                args.steps == "yes" or (args.steps == "auto" and n < 50_000),
            )
            for n in sizes
        ]
        print_table(results)
        if args.profile:
            profile(max(sizes), base, args.top)
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
