"""The demo's default corpus: English-like sentences from a small grammar written for rnnfast.

Nothing is downloaded or copied: the words and rules below are this project's own. The grammar
is small, but it has the structure a character-level model has to discover: spelling, spaces and
capitals, "a" versus "an", irregular plurals, and subject-verb agreement that reaches across a
prepositional phrase ("the fox near the bridges sleeps", "the mice under the lamp sleep").
The same seed gives the same text.
"""
from __future__ import annotations

import numpy as np

__all__ = ["generate", "default_text"]

# noun: (singular, plural)
NOUNS = [("fox", "foxes"), ("sailor", "sailors"), ("lamp", "lamps"), ("river", "rivers"), ("child", "children"),
         ("robot", "robots"), ("baker", "bakers"), ("mouse", "mice"), ("ship", "ships"), ("garden", "gardens"),
         ("owl", "owls"), ("bridge", "bridges"), ("clock", "clocks"), ("teacher", "teachers"),
         ("kettle", "kettles"), ("island", "islands"), ("letter", "letters"), ("engine", "engines")]
ADJECTIVES = ["old", "small", "quiet", "bright", "green", "clever", "tired", "wooden", "curious", "silver",
              "brave", "sleepy", "empty", "orange", "heavy", "ancient"]
# verb: (third person singular, plural)
TRANSITIVE = [("sees", "see"), ("finds", "find"), ("carries", "carry"), ("paints", "paint"), ("watches", "watch"),
              ("follows", "follow"), ("remembers", "remember"), ("builds", "build"), ("fixes", "fix"),
              ("opens", "open")]
INTRANSITIVE = [("sleeps", "sleep"), ("sings", "sing"), ("waits", "wait"), ("laughs", "laugh"), ("runs", "run"),
                ("dreams", "dream"), ("listens", "listen")]
ADVERBS = ["quietly", "slowly", "again", "at night", "every morning", "all day", "in the rain"]
PREPOSITIONS = ["near", "under", "behind", "beside", "across", "with", "above"]
DET_SINGULAR = ["the", "a", "this", "every", "my"]
DET_PLURAL = ["the", "some", "many", "these", "two", "three", "our"]
CONJUNCTIONS = ["and", "but", "because", "while"]


class _Grammar:
    def __init__(self, rng):
        self.rng = rng

    def pick(self, items):
        return items[self.rng.integers(len(items))]

    def chance(self, p):
        return self.rng.random() < p

    def noun_phrase(self, plural, allow_pp=True):
        det = self.pick(DET_PLURAL if plural else DET_SINGULAR)
        words = [self.pick(ADJECTIVES)] if self.chance(0.45) else []
        words.append(self.pick(NOUNS)[plural])
        if det == "a" and words[0][0] in "aeiou":
            det = "an"
        phrase = " ".join([det] + words)
        if allow_pp and self.chance(0.3):
            phrase += f" {self.pick(PREPOSITIONS)} {self.noun_phrase(self.chance(0.5), allow_pp=False)}"
        return phrase

    def verb_phrase(self, plural):
        r = self.rng.random()
        if r < 0.45:
            return f"{self.pick(TRANSITIVE)[plural]} {self.noun_phrase(self.chance(0.4))}"
        if r < 0.8:
            verb = self.pick(INTRANSITIVE)[plural]
            return f"{verb} {self.pick(ADVERBS)}" if self.chance(0.6) else verb
        return f"{'are' if plural else 'is'} {self.pick(ADJECTIVES)}"

    def clause(self):
        plural = self.chance(0.4)
        return f"{self.noun_phrase(plural)} {self.verb_phrase(plural)}"

    def sentence(self):
        r = self.rng.random()
        if r < 0.12:  # a question: do/does + base form
            plural = self.chance(0.4)
            verb = self.pick(TRANSITIVE)[1]
            text = f"{'do' if plural else 'does'} {self.noun_phrase(plural, False)} {verb} {self.noun_phrase(self.chance(0.4))}?"
        elif r < 0.3:
            text = f"{self.clause()} {self.pick(CONJUNCTIONS)} {self.clause()}."
        else:
            text = f"{self.clause()}."
        return text[0].upper() + text[1:]


def generate(n_sentences=4000, seed=0, sentences_per_line=4) -> str:
    """`n_sentences` sentences, `sentences_per_line` to a line, ending with a newline."""
    rng = np.random.default_rng(seed)
    g = _Grammar(rng)
    sentences = [g.sentence() for _ in range(n_sentences)]
    lines = [" ".join(sentences[i:i + sentences_per_line]) for i in range(0, n_sentences, sentences_per_line)]
    return "\n".join(lines) + "\n"


def default_text() -> str:
    """The demo's corpus: 4000 sentences, seed 0 (about 190 000 characters)."""
    return generate(4000, seed=0)
