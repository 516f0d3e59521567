"""The one cache utility: least recently used goes first, bounded by entries and by bytes."""

from __future__ import annotations

import threading

from app.engine.lru import LRUCache


def test_entries_bound_drops_the_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert (cache.hits, cache.misses) == (3, 0)


def test_bytes_bound_and_an_entry_too_heavy_to_keep() -> None:
    cache: LRUCache[str, bytes] = LRUCache(100, max_bytes=10, weigh=len)
    assert cache.put("a", b"12345") and cache.put("b", b"12345")
    assert cache.bytes == 10
    cache.put("c", b"123")
    assert "a" not in cache and cache.bytes == 8
    assert not cache.put("huge", b"x" * 11)  # heavier than the whole bound: not kept, nothing evicted for it
    assert len(cache) == 2 and cache.bytes == 8
    cache.put("b", b"1")  # replacing an entry re-weighs it
    assert cache.bytes == 4


def test_zero_keeps_nothing_and_pop_returns_the_entry() -> None:
    assert not LRUCache(0).put("a", 1)
    cache: LRUCache[str, int] = LRUCache(3, max_bytes=100, weigh=lambda v: v)
    cache.put("a", 7)
    assert cache.pop("a") == 7 and cache.bytes == 0 and cache.pop("a") is None


def test_threads_keep_the_books_straight() -> None:
    cache: LRUCache[int, int] = LRUCache(50, max_bytes=200, weigh=lambda v: v)

    def work(offset: int) -> None:
        for i in range(500):
            cache.put(offset + i % 80, 3)
            cache.get(offset + (i * 7) % 80)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 50 and cache.bytes == 3 * len(cache) <= 200
