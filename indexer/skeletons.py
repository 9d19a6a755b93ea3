"""Record skeletons for `tmskb new`: every field, a comment on each, nothing invented.

Required values are left as '' so `tmskb check` points at each one until it is filled in;
facts the source may not give start as null.
"""

from __future__ import annotations

STUDY = """\
# yaml-language-server: $schema=../../indexer/schemas/study.schema.json
# New study: fill in every '' and check every null against the source. Then run: tmskb check
id: {id}
type: study
reference: {key}              # BibTeX key in references.bib
condition: ''                 # indication id(s) from kb/vocab/indications.yaml, e.g. [neuropathic-pain]
design: ''                    # id from kb/vocab/designs.yaml: parallel-rct, crossover-rct, open-label...
randomised: null              # true / false; null when the source does not say
control: null                 # sham, active or none; null when not reported
sham_type: null               # how sham was delivered (sham coil, tilted coil...), or null
blinding: null                # double, assessor (outcome assessment masked), single, open, or null
patients: {{total: null, active: null}}   # all patients / patients on active stimulation
flaws: null                   # methodological flaws; [] = checked and none; null = not assessed
arms:                         # one entry per stimulation condition (10 Hz and 1 Hz arms are two)
  - label: null               # short name when there are several arms, e.g. '10 Hz'
    target: ''                # target id(s) from kb/vocab/targets.yaml, e.g. m1
    side: []                  # side id(s) from kb/vocab/sides.yaml; [] when not reported
    protocol: ''              # protocol id(s) from kb/vocab/protocols.yaml, e.g. hf-rtms
    frequency_hz: null        # pulse frequency in Hz
    intensity: null           # as reported, e.g. '80% RMT'
    pulses_per_session: null
    sessions: null            # number of sessions in this arm
    schedule: null            # e.g. daily, alternate days
    coil: []                  # coil id(s) from kb/vocab/coils.yaml; [] when not reported
    neuronavigation: null     # true / false / null
    result: null              # against control: positive, negative, mixed, inconclusive, or null
outcome_measure: null         # primary outcome measure (VAS, NRS, BPI...)
result: null                  # overall result on the primary outcome
summary: ''                   # one or two sentences in your own words
stated_class: null            # {{class: II, reference: KEY, location: Table 3}} when a source states it
source:
  location: ''                # where the facts were read: table, section, page, or 'abstract'
  url: null                   # https:// address the facts were checked against
verification: as-cited        # full-text, abstract, secondary (name it in notes) or as-cited (unverified)
notes: null                   # doubts, gaps, what to check
"""

RECOMMENDATION = """\
# yaml-language-server: $schema=../../indexer/schemas/recommendation.schema.json
# New recommendation: fill in every '' and check every null against the guideline. Then run: tmskb check
id: {id}
type: recommendation
guideline: {key}              # BibTeX key of the guideline
indication: ''                # id from kb/vocab/indications.yaml
outcome_domain: null          # id from kb/vocab/outcomes.yaml when the guideline names one
population: null              # population or stage when given, e.g. 'post-acute stage'
target: ''                    # target id(s) from kb/vocab/targets.yaml
side: []                      # side id(s) from kb/vocab/sides.yaml; [] when not stated
protocol: ''                  # protocol id(s) from kb/vocab/protocols.yaml
coil: []                      # coil id(s) when the guideline names one
level: null                   # A, B or C exactly as published; null when not published or not verified
level_bound: null             # below-A / below-B / below-C when only a bound is known
direction: null               # efficacy or inefficacy (required with a level)
statement: ''                 # the conclusion in your own words
question: null                # id of the question it answers (kb/questions/), if any
candidate_studies: []         # study ids you matched from their abstracts (NOT the guideline's own list)
counted_studies: []           # [{study: id, location: 'Table 3'}] studies the guideline itself counted
source:
  location: ''                # table, section or page of the guideline
  url: null                   # https:// address checked
verification: as-cited        # full-text, abstract, secondary (name it in notes) or as-cited (unverified)
notes: null                   # doubts, gaps, what to check
"""

SKELETONS = {"study": STUDY, "recommendation": RECOMMENDATION}


def skeleton(kind: str, record_id: str, key: str) -> str:
    """The skeleton text of a new record of `kind`."""
    return SKELETONS[kind].format(id=record_id, key=key)
