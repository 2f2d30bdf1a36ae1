"""The six built-in tasks. Each needs a different mechanism; all share one vocabulary.

Every prompt is a string of space-separated words from :data:`VOCABULARY` (so the toy
models' word-level tokenizer covers them exactly), every answer is one word with a leading
space, and each counterfactual has the same number of words as its clean prompt with a
different correct answer, so it serves as a position-aligned patching baseline.

=================  ==================================================================  ============
task               clean prompt -> answer                                              mechanism
=================  ==================================================================  ============
ioi                When Mary and John went to the store , John gave a ring to -> Mary   name mover
induction          ka mo si tu ra ka mo -> si                                          induction
greater_than       the war started in 17 32 and ended in 17 45 , which is -> after      comparison
sva                the keys near the cabinet -> are                                    agreement
bracket_depth      depth of ( ( ) ( is -> 2                                            counting
bias_in_bios       Mary gives injections every day . she is a -> nurse                  shortcut
=================  ==================================================================  ============

Counterfactuals: ioi swaps the names (the second mention becomes the other name, so the
answer becomes the first); induction changes the token after the repeated one; greater_than
swaps the two years; sva flips the subject's number; bracket_depth flips one bracket;
bias_in_bios swaps the whole bio (name, pronoun and profession cue) to the other profession.
"""

from __future__ import annotations

import random

from ingest.errors import TaskError
from ingest.tasks.registry import Example, get_task, register_task

FEMALE = ("Mary", "Alice", "Sarah", "Anna", "Emma", "Lucy", "Kate", "Jane")
MALE = ("John", "Bob", "Tom", "James", "David", "Mark", "Paul", "Peter")
NAMES = FEMALE + MALE

_IOI_TEMPLATES = (
    "When {A} and {B} went to the {place} , {S} gave a {obj} to",
    "After {A} and {B} went to the {place} , {S} handed a {obj} to",
    "While {A} and {B} were working at the {place} , {S} gave a {obj} to",
    "Then , {A} and {B} had fun at the {place} . {S} gave a {obj} to",
)
_PLACES = ("store", "park", "school", "office", "garden", "station", "market", "beach")
_OBJECTS = ("drink", "ring", "book", "gift", "ball", "letter", "cake", "key")


@register_task("ioi", vocabulary=NAMES + _PLACES + _OBJECTS + tuple(
    w for t in _IOI_TEMPLATES for w in t.split() if not w.startswith("{")))
def ioi(rng: random.Random) -> Example:
    """Indirect-object identification (Wang et al. 2022): predict the name that is not the
    repeated subject. Counterfactual: the second mention is the other name."""
    a, b = rng.sample(NAMES, 2)
    s, io = (a, b) if rng.random() < 0.5 else (b, a)   # ABBA and BABA orders, balanced
    template = rng.choice(_IOI_TEMPLATES)
    place, obj = rng.choice(_PLACES), rng.choice(_OBJECTS)
    clean = template.format(A=a, B=b, S=s, place=place, obj=obj)
    cf = template.format(A=a, B=b, S=io, place=place, obj=obj)
    return Example(clean, cf, f" {io}", f" {s}", meta={"template": _IOI_TEMPLATES.index(template)})


SYLLABLES = tuple(c + v for c in "kstnhmr" for v in "aiueo")


@register_task("induction", vocabulary=SYLLABLES)
def induction(rng: random.Random, min_len: int = 5, max_len: int = 9) -> Example:
    """Induction (Olsson et al. 2022): a random sequence of distinct syllables, then a
    repeat of its first k; predict the (k+1)-th. Counterfactual: that token is replaced in
    the first occurrence, so the copied answer changes."""
    length = rng.randint(min_len, max_len)
    seq = rng.sample(SYLLABLES, length + 1)
    seq, spare = seq[:length], seq[length]
    k = rng.randint(1, length - 1)
    clean = seq + seq[:k]
    cf_seq = seq[:k] + [spare] + seq[k + 1:]
    cf = cf_seq + cf_seq[:k]
    return Example(" ".join(clean), " ".join(cf), f" {seq[k]}", f" {spare}",
                   meta={"length": length, "k": k})


YEARS = tuple(f"{y:02d}" for y in range(100))


@register_task("greater_than", vocabulary=YEARS + ("the", "war", "started", "in", "17", "and",
                                                   "ended", ",", "which", "is", "after", "before"))
def greater_than(rng: random.Random) -> Example:
    """Greater-than on two-digit years (after Hanna et al. 2023): is the end year after the
    start year? Counterfactual: the two years swapped."""
    a, b = rng.sample(range(2, 99), 2)
    template = "the war started in 17 {} and ended in 17 {} , which is"
    answer, cf_answer = (" after", " before") if b > a else (" before", " after")
    return Example(template.format(f"{a:02d}", f"{b:02d}"), template.format(f"{b:02d}", f"{a:02d}"),
                   answer, cf_answer, meta={"start": a, "end": b})


_SVA_NOUNS = (("key", "keys"), ("author", "authors"), ("dog", "dogs"), ("teacher", "teachers"),
              ("car", "cars"), ("pilot", "pilots"), ("box", "boxes"), ("farmer", "farmers"),
              ("cabinet", "cabinets"), ("senator", "senators"))
_SVA_PREPS = ("near", "behind", "with", "of", "beside", "for")
_SVA_ADJ = ("old", "new", "small", "big", "red", "green")


@register_task("sva", vocabulary=tuple(w for pair in _SVA_NOUNS for w in pair) + _SVA_PREPS
               + _SVA_ADJ + ("the", "is", "are"))
def sva(rng: random.Random) -> Example:
    """Subject-verb agreement across a distractor noun (Linzen et al. 2016): the verb agrees
    with the subject, not the nearer noun, which has the other number half the time.
    Counterfactual: the subject's number flipped."""
    (s_sg, s_pl), (d_sg, d_pl) = rng.sample(_SVA_NOUNS, 2)
    plural, d_plural = rng.random() < 0.5, rng.random() < 0.5
    adj, prep = rng.choice(_SVA_ADJ), rng.choice(_SVA_PREPS)
    distractor = d_pl if d_plural else d_sg
    template = "the {adj} {subj} {prep} the {dist}"
    clean = template.format(adj=adj, subj=s_pl if plural else s_sg, prep=prep, dist=distractor)
    cf = template.format(adj=adj, subj=s_sg if plural else s_pl, prep=prep, dist=distractor)
    answer, cf_answer = (" are", " is") if plural else (" is", " are")
    return Example(clean, cf, answer, cf_answer,
                   meta={"plural": plural, "distractor_plural": d_plural})


DIGITS = tuple(str(d) for d in range(10))


def _depths(brackets: list[str]) -> list[int]:
    depth, out = 0, []
    for b in brackets:
        depth += 1 if b == "(" else -1
        out.append(depth)
    return out


@register_task("bracket_depth", vocabulary=DIGITS + ("depth", "of", "is", "(", ")"))
def bracket_depth(rng: random.Random, min_len: int = 4, max_len: int = 12,
                  max_depth: int = 6) -> Example:
    """Bracket depth: the nesting depth after a prefix of a bracket sequence that never goes
    below zero. Counterfactual: one bracket flipped (depth changes by 2, still valid)."""
    while True:
        length = rng.randint(min_len, max_len)
        seq = []
        for _ in range(length):
            depth = _depths(seq)[-1] if seq else 0
            seq.append("(" if depth == 0 or (depth < max_depth and rng.random() < 0.5) else ")")
        flips = [i for i in range(length)
                 if min(_depths(seq[:i] + [")" if seq[i] == "(" else "("] + seq[i + 1:])) >= 0
                 and max(_depths(seq[:i] + [")" if seq[i] == "(" else "("] + seq[i + 1:])) <= max_depth]
        if flips:
            break
    i = rng.choice(flips)
    cf_seq = seq[:i] + [")" if seq[i] == "(" else "("] + seq[i + 1:]
    d, cf_d = _depths(seq)[-1], _depths(cf_seq)[-1]
    return Example(f"depth of {' '.join(seq)} is", f"depth of {' '.join(cf_seq)} is",
                   f" {d}", f" {cf_d}", meta={"depth": d, "length": length})


PROFESSIONS = ("nurse", "professor")
_CUES = {
    "nurse": ("gives injections", "treats patients", "checks wards", "changes bandages"),
    "professor": ("teaches students", "writes papers", "grades exams", "gives lectures"),
}
_NEUTRAL_CUES = ("likes music", "drinks coffee", "reads novels", "walks dogs")
_TIMES = ("day", "morning", "evening", "week", "night")
_PRONOUNS = {"f": "she", "m": "he"}


@register_task("bias_in_bios", vocabulary=NAMES + PROFESSIONS + _TIMES
               + tuple(w for c in (*_CUES["nurse"], *_CUES["professor"], *_NEUTRAL_CUES)
                       for w in c.split()) + ("every", ".", "she", "he", "is", "a"))
def bias_in_bios(rng: random.Random, gender_bias: float = 1.0, neutral_fraction: float = 0.25,
                 variant: str = "biased") -> Example:
    """Profession from a short bio, in the spirit of Bias in Bios (De-Arteaga et al. 2019)
    and SHIFT (Marks et al. 2024). A cue phrase says the profession; in training the
    gender (name, pronoun) agrees with it with probability ``gender_bias`` (1.0: the
    ambiguous set where gender is a perfect shortcut), and ``neutral_fraction`` of bios have
    no cue at all, so only the gender shortcut answers them.

    ``variant="anti"`` gives anti-stereotypical bios (cue present, gender opposite to the
    profession) to measure reliance on the shortcut; ``"balanced"`` draws gender at random.
    Counterfactual: the whole bio swapped to the other profession (cue, name and pronoun).
    """
    if variant not in ("biased", "anti", "balanced"):
        raise TaskError(f"bias_in_bios variant must be biased, anti or balanced, not {variant!r}")
    profession = rng.choice(PROFESSIONS)
    stereotype = "f" if profession == "nurse" else "m"
    other = "m" if stereotype == "f" else "f"
    if variant == "anti":
        gender = other
    elif variant == "balanced":
        gender = rng.choice("fm")
    else:
        gender = stereotype if rng.random() < gender_bias else other
    neutral = variant == "biased" and rng.random() < neutral_fraction
    time = rng.choice(_TIMES)

    def bio(prof: str, g: str, cue_index: int, name_index: int) -> str:
        name = (FEMALE if g == "f" else MALE)[name_index]
        cue = _NEUTRAL_CUES[cue_index] if neutral else _CUES[prof][cue_index]
        return f"{name} {cue} every {time} . {_PRONOUNS[g]} is a"

    cue_i, name_i = rng.randrange(4), rng.randrange(len(FEMALE))
    cf_prof = PROFESSIONS[1 - PROFESSIONS.index(profession)]
    cf_gender = "m" if gender == "f" else "f"
    return Example(bio(profession, gender, cue_i, name_i), bio(cf_prof, cf_gender, cue_i, name_i),
                   f" {profession}", f" {cf_prof}",
                   meta={"gender": gender, "profession": profession, "neutral": neutral,
                         "stereotypical": gender == stereotype})


BUILTIN_TASKS = ("ioi", "induction", "greater_than", "sva", "bracket_depth", "bias_in_bios")


def builtin_task_names() -> list[str]:
    """The built-in tasks, in their canonical order (the toy models' training mixture)."""
    return list(BUILTIN_TASKS)


def vocabulary() -> list[str]:
    """Every word of every built-in task, sorted: the toy models' vocabulary."""
    return sorted({w for name in BUILTIN_TASKS for w in get_task(name).vocabulary})
