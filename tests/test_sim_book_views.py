"""The simulator book's incremental helpers agree with the plain definitions they replace."""

from __future__ import annotations

import random

from scanner.sim.book import BookShape, Grid, SimBook, canonical_rows, fixed_rows, view_update


def full_diff(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out += [(p, 0) for p in old if p not in new]
    return sorted(out)


def test_view_update_equals_the_diff_of_whole_views() -> None:
    for tick, lot, mid in (("0.01", "0.0001", 3400.0), ("0.00001", "1", 0.15), ("1", "1", 50.0)):
        book = SimBook(Grid(tick), Grid(lot), random.Random(5), BookShape(depth=60))
        rng, m = random.Random(2), mid
        book.step(m)
        book.collect()
        views = {n: (book.bids.top_map(n), book.asks.top_map(n)) for n in (1, 5, 20, 60, 150)}
        for i in range(600):
            m *= 1 + rng.gauss(0, 0.001)
            if i % 100 == 7:  # hand-set (sparse, sometimes empty) books, then back to the walk
                t = float(tick)
                book.set_levels([(max(1, int(m / t) - 3 * j), 5 + j) for j in range(rng.randint(0, 8))],
                                [(int(m / t) + 1 + 2 * j, 5 + j) for j in range(rng.randint(0, 8))])
            else:
                book.step(m)
            bch, ach, _, _ = book.collect()
            for n, (vb, va) in views.items():
                nb, na = book.bids.top_map(n), book.asks.top_map(n)
                want_b, want_a = full_diff(vb, nb), full_diff(va, na)
                assert sorted(view_update(book.bids, vb, n, bch)) == want_b
                assert sorted(view_update(book.asks, va, n, ach)) == want_a
                assert vb == nb and va == na
            assert book.bids.keys == sorted(book.bids.levels) and book.asks.keys == sorted(book.asks.levels)


def test_row_helpers_match_the_grid_methods() -> None:
    g, lot = Grid.shared("0.01"), Grid.shared("0.0001")
    assert Grid.shared("0.01") is g
    levels = [(340012, 44100), (340011, 0), (1, 123456789)]
    assert canonical_rows(g, lot, levels) == [[g.canonical(p), lot.canonical(q)] for p, q in levels]
    for pp, qp in ((8, 8), (2, 4), (3, 6)):
        assert fixed_rows(g, lot, levels, pp, qp) == [[g.fixed(p, pp), lot.fixed(q, qp)] for p, q in levels]
    assert fixed_rows(g, lot, levels)[0] == ["3400.12000000", "4.41000000"]
