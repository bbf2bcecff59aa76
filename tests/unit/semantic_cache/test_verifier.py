"""The edit verifier refuses small edits that change the question and lets true paraphrases through."""
from __future__ import annotations

import pytest

from plugins.middleware.semantic_cache.guards import check, extract
from plugins.middleware.semantic_cache.verifier import verify


def edit(a: str, b: str) -> str | None:
    return verify(extract(a), extract(b))


# Every pair here passes the lexicon guards: the verifier is what refuses it.
@pytest.mark.parametrize("a,b,check_name", [
    ("Is a crocodile faster than a hippo?", "Is a hippo faster than a crocodile?", "reorder"),
    ("Convert cups to grams", "Convert grams to cups", "reorder"),
    ("Is tea healthier than coffee?", "Is coffee healthier than tea?", "reorder"),
    ("How do I zoom in on a Mac?", "How do I zoom out on a Mac?", "particle"),
    ("How do I turn on notifications?", "How do I turn off notifications?", "particle"),
    ("How do I log in to my account?", "How do I log out to my account?", "particle"),
    ("How do I follow someone on Instagram?", "How do I unfollow someone on Instagram?", "prefix"),
    ("How do I pin a message in Slack?", "How do I unpin a message in Slack?", "prefix"),
    ("Why does my mouse connect?", "Why does my mouse disconnect?", "prefix"),
    ("Why is the sky blue?", "When is the sky blue?", "wh"),
    ("Where can I learn to flirt?", "How can I learn to flirt?", "wh"),
])
def test_a_trap_that_passes_the_guards_is_refused(a, b, check_name):
    assert check(extract(a), extract(b)) is None
    assert edit(a, b) == check_name
    assert edit(b, a) == check_name


@pytest.mark.parametrize("a,b", [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the best way to clean a cast iron pan?", "How do I clean a cast iron pan?"),
    ("What is the difference between militants and terrorists?", "What is the difference between terrorists and militants?"),
    ("What is the best point and shoot underwater camera?", "What is the best underwater point and shoot camera?"),
    ("What causes rainbows?", "Why do rainbows form?"),
    ("When is the tax deadline?", "What is the deadline for taxes?"),
    ("Is a cheetah faster than a lion?", "Is a cheetah quicker than a lion?"),
    ("How do I fix a leaky faucet?", "How do I repair a leaky faucet?"),
    ("Cancel my subscription", "How do I end my subscription?"),
    ("Where did Hitler die?", "Where did Hitler actually die?"),
])
def test_a_paraphrase_is_accepted(a, b):
    assert edit(a, b) is None
    assert edit(b, a) is None


def test_the_same_words_are_always_accepted():
    assert edit("Translate from Japanese to Korean", "translate from japanese to korean") is None
