"""The FAISS index: scopes never mix, TTL and the per-project bound hold, eviction is batched."""
from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

from plugins.middleware.semantic_cache.entry import Entry  # noqa: E402
from plugins.middleware.semantic_cache.index import CacheIndex  # noqa: E402

pytestmark = pytest.mark.semantic


def vec(seed: int) -> "np.ndarray":
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def entry(i: int, *, project="p", scope="s", now=1000.0, ttl=100.0, v=None) -> Entry:
    return Entry(id=i, project=project, scope=scope, exact_key=f"k{i}", question=f"q{i}", context=(),
                 response={"i": i}, model="m", created=now, expires=now + ttl, vector=vec(i) if v is None else v)


def test_search_finds_the_entry_and_never_another_scope_or_project():
    idx = CacheIndex()
    idx.add(entry(1, scope="a"), now=1000)
    idx.add(entry(2, scope="b"), now=1000)
    idx.add(entry(3, project="q", scope="a"), now=1000)
    hits = idx.search("p", "a", vec(1), k=5, now=1001)
    assert [e.id for _, e in hits] == [1] and hits[0][0] == pytest.approx(1.0, abs=1e-5)
    assert idx.search("p", "c", vec(1), now=1001) == []


def test_expired_entries_are_never_returned():
    idx = CacheIndex()
    idx.add(entry(1, ttl=10), now=1000)
    assert idx.search("p", "s", vec(1), now=1011) == []
    assert idx.get_exact("p", "k1", now=1011) is None
    assert idx.get_exact("p", "k1", now=1005) is not None


def test_project_bound_evicts_the_oldest_in_one_batch():
    idx = CacheIndex(max_entries=100, eviction_batch=20)
    for i in range(1, 101):
        idx.add(entry(i), now=1000)
    evicted = idx.add(entry(101), now=1000)
    assert len(evicted) == 11  # the overflow plus a batch of max_entries // 10, in one remove_ids
    assert sorted(evicted) == list(range(1, 12))
    assert idx.size("p") == 90
    assert idx.search("p", "s", vec(1), now=1001)[0][1].id != 1
    assert idx.projects["p"].scopes["s"].index.ntotal == 90


def test_expired_entries_are_swept_before_live_ones_are_evicted():
    idx = CacheIndex(max_entries=10, eviction_batch=5)
    for i in range(1, 6):
        idx.add(entry(i, now=900, ttl=1), now=900)
    for i in range(6, 12):
        idx.add(entry(i, ttl=100), now=1000)
    assert idx.size("p") == 6  # the 11th insert overflowed: the 5 expired entries were the victims
    assert all(idx.get_exact("p", f"k{i}", now=1000) for i in range(6, 12))


def test_storing_the_same_request_again_replaces_the_old_entry():
    idx = CacheIndex()
    idx.add(entry(1), now=1000)
    e2 = entry(2)
    e2.exact_key = "k1"
    idx.add(e2, now=1000)
    assert idx.size("p") == 1 and idx.get_exact("p", "k1", now=1000).id == 2


def test_entry_round_trips_through_its_wire_form():
    e = entry(7)
    back = Entry.loads(e.dumps())
    assert back.id == 7 and back.response == {"i": 7} and np.allclose(back.vector, e.vector)
