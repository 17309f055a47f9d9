"""SyncedBook rules: OKX prevSeqId chain and REST bridging, Binance U/u bridging,
crossed and malformed books, and the interleaved checksum vectors of PROTOCOLS.md §1.2."""

from __future__ import annotations

import orjson
import pytest

from scanner.book.checksum import okx_checksum
from scanner.book.errors import ChecksumMismatch, CrossedBook, SequenceGap
from scanner.book.sync import BadLevel, SnapshotTooOld, SyncedBook
from scanner.model import BookMsg, Level
from scanner.venues import binance, okx


def msg(seq: int, prev: int, bids: list[Level] | None = None, asks: list[Level] | None = None, *,
        snapshot: bool = False, checksum: int = 0, inst: str = "BTC-USDT") -> BookMsg:
    return BookMsg(inst, snapshot, bids or [], asks or [], seq, prev, checksum, 0, 0)


def top(sb: SyncedBook) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    return sb.book.bids.best(), sb.book.asks.best()


def okx_synced(seq: int = 100) -> SyncedBook:
    sb = okx.make_book("books")
    assert sb.on_message(msg(seq, -1, [["99", "1"], ["98", "2"]], [["101", "1"], ["102", "2"]], snapshot=True))
    return sb


# ------------------------------------------------------------------ OKX prevSeqId chain


def test_okx_chain_applies_when_prev_equals_last_seq() -> None:
    sb = okx_synced(100)
    assert sb.on_message(msg(107, 100, bids=[["100", "3"]]))  # seqId jumps: not +1, still fine
    assert sb.book.seq == 107 and top(sb)[0] == ("100", "3")
    assert sb.on_message(msg(111, 107, asks=[["101", "0"]]))  # "0" deletes
    assert top(sb)[1] == ("102", "2")


def test_okx_idle_keepalive_prev_equals_seq() -> None:
    sb = okx_synced(100)
    assert sb.on_message(msg(100, 100))  # empty update, prevSeqId == seqId
    assert sb.valid and sb.book.seq == 100 and top(sb) == (("99", "1"), ("101", "1"))
    assert sb.on_message(msg(105, 100, bids=[["99", "4"]]))
    assert top(sb)[0] == ("99", "4")


def test_okx_maintenance_reset_seq_below_prev() -> None:
    sb = okx_synced(100)
    assert sb.on_message(msg(7, 100, bids=[["99", "5"]]))  # seqId < prevSeqId, still chained
    assert sb.book.seq == 7
    assert sb.on_message(msg(9, 7, asks=[["101", "6"]]))  # normal rules resume from 7
    assert top(sb) == (("99", "5"), ("101", "6")) and sb.valid


def test_okx_stale_update_is_dropped() -> None:
    sb = okx_synced(100)
    assert not sb.on_message(msg(95, 90, bids=[["100", "9"]]))
    assert sb.valid and sb.book.seq == 100 and top(sb)[0] == ("99", "1")


def test_okx_gap_invalidates_and_buffers_until_snapshot() -> None:
    sb = okx_synced(100)
    with pytest.raises(SequenceGap):
        sb.on_message(msg(120, 110, bids=[["100", "1"]]))
    assert not sb.valid and len(sb.book.bids) == 0
    assert not sb.on_message(msg(130, 120))
    assert sb.buffered == 1
    assert sb.on_message(msg(130, -1, [["97", "1"]], [["103", "1"]], snapshot=True))
    assert sb.valid and sb.book.seq == 130 and sb.buffered == 0


def okx_rest(seq: int) -> BookMsg:
    body = orjson.dumps({"code": "0", "msg": "", "data": [{
        "asks": [["101", "1", "0", "1"]], "bids": [["99", "1", "0", "1"]], "ts": "1782450000000", "seqId": seq}]})
    return okx.parse_snapshot("BTC-USDT", body, 0)


def test_okx_rest_bridging_first_kept_straddles_snapshot() -> None:
    sb = okx.make_book("books")
    for m in (msg(100, 90, bids=[["50", "1"]]), msg(110, 100, bids=[["99", "2"]]), msg(120, 110, asks=[["101", "3"]])):
        assert not sb.on_message(m)  # no snapshot yet: buffered
    assert sb.buffered == 3
    assert sb.on_snapshot(okx_rest(105))  # drop seq<=105; keep prev 100 <= 105 < 110
    assert sb.valid and sb.book.seq == 120
    assert top(sb) == (("99", "2"), ("101", "3"))
    assert len(sb.book.bids) == 1  # the dropped diff's level "50" was not applied


def test_okx_rest_snapshot_older_than_buffer_is_too_old() -> None:
    sb = okx.make_book("books")
    sb.on_message(msg(110, 100, bids=[["99", "2"]]))
    with pytest.raises(SnapshotTooOld):
        sb.on_snapshot(okx_rest(95))
    assert not sb.valid


# ------------------------------------------------------------------ Binance U/u bridging


def bn(first: int, last: int, bids: list[Level] | None = None, asks: list[Level] | None = None) -> BookMsg:
    return msg(last, first, bids, asks, inst="BTCUSDT")


def bn_rest(last_update_id: int) -> BookMsg:
    body = orjson.dumps({"lastUpdateId": last_update_id, "bids": [["99.00", "1.0"]], "asks": [["101.00", "1.0"]]})
    return binance.parse_snapshot("BTCUSDT", body, 0)


def test_binance_bridging_drops_old_and_first_straddles() -> None:
    sb = binance.make_book("depth@100ms")
    diffs = (bn(98, 100, bids=[["50.00", "1"]]), bn(101, 105, bids=[["99.50", "2"]]),
             bn(106, 110, asks=[["100.50", "3"]]))
    for m in diffs:
        assert not sb.on_message(m)
    assert sb.on_snapshot(bn_rest(102))  # u=100 <= 102 dropped; 101 <= 103 <= 105 applied
    assert sb.valid and sb.book.seq == 110
    assert top(sb) == (("99.50", "2"), ("100.50", "3"))
    assert "50.00" not in {p for p, _ in sb.book.bids.top(10)}


def test_binance_all_buffered_older_than_snapshot() -> None:
    sb = binance.make_book("depth@100ms")
    sb.on_message(bn(90, 95, bids=[["98.00", "7"]]))
    assert sb.on_snapshot(bn_rest(100))
    assert sb.valid and sb.book.seq == 100 and len(sb.book.bids) == 1


def test_binance_stale_and_gap_after_sync() -> None:
    sb = binance.make_book("depth@100ms")
    sb.on_snapshot(bn_rest(100))
    assert not sb.on_message(bn(95, 100))  # u <= local: ignored
    assert sb.on_message(bn(101, 104, bids=[["99.00", "3"]]))
    with pytest.raises(SequenceGap):
        sb.on_message(bn(106, 108))  # U > local + 1
    assert not sb.valid


def test_binance_snapshot_too_old_rule() -> None:
    # PROTOCOLS.md §1.1: too old when lastUpdateId < first buffered U - 1. At exactly U - 1 the
    # first diff still satisfies U <= lastUpdateId + 1 <= u (§3), so it bridges.
    old = binance.make_book("depth@100ms")
    old.on_message(bn(110, 115))
    with pytest.raises(SnapshotTooOld):
        old.on_snapshot(bn_rest(108))
    assert not old.valid
    edge = binance.make_book("depth@100ms")
    edge.on_message(bn(110, 115, bids=[["99.00", "2"]]))
    assert edge.on_snapshot(bn_rest(109))
    assert edge.valid and edge.book.seq == 115 and top(edge)[0] == ("99.00", "2")


# ------------------------------------------------------------------ crossed / bad levels / checksum


def test_crossed_snapshot_and_crossing_update() -> None:
    sb = okx.make_book("books")
    with pytest.raises(CrossedBook):
        sb.on_message(msg(1, -1, [["101", "1"]], [["101", "1"]], snapshot=True))
    assert not sb.valid
    sb = okx_synced(100)
    with pytest.raises(CrossedBook):
        sb.on_message(msg(101, 100, bids=[["101.5", "1"]]))
    assert not sb.valid and sb.buffered == 0


def test_bad_level_in_update_and_snapshot() -> None:
    sb = okx_synced(100)
    with pytest.raises(BadLevel):
        sb.on_message(msg(101, 100, bids=[["abc", "1"]]))
    assert not sb.valid and len(sb.book.bids) == 0
    sb = okx.make_book("books")
    with pytest.raises(BadLevel):
        sb.on_message(msg(1, -1, [["99", "x"]], [["101", "1"]], snapshot=True))
    assert not sb.valid


def test_checksum_vectors_from_protocols() -> None:
    assert okx_checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294
    assert okx_checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == 831078360


def test_checksum_checked_when_nonzero_only() -> None:
    bids: list[Level] = [["3366.1", "7"], ["3366", "6"]]
    asks: list[Level] = [["3366.8", "9"], ["3368", "8"]]
    sb = okx.make_book("books")
    assert sb.on_message(msg(10, -1, bids, asks, snapshot=True, checksum=-1881014294))
    # one level changes: the vector's second case is bids [3366.1:7] and three asks
    assert sb.on_message(msg(11, 10, bids=[["3366", "0"]], asks=[["3372", "8"]], checksum=831078360))
    assert sb.on_message(msg(12, 11, asks=[["3372", "9"]]))  # checksum 0: not checked
    with pytest.raises(ChecksumMismatch):
        sb.on_message(msg(13, 12, asks=[["3372", "8"]], checksum=831078361))
    assert not sb.valid


@pytest.mark.parametrize(("px", "sz"), [("NaN", "1"), ("98", "-1"), ("98", "nan")])
def test_non_finite_or_negative_level_is_bad(px: str, sz: str) -> None:
    sb = okx_synced(100)
    with pytest.raises(BadLevel):
        sb.on_message(msg(101, 100, bids=[[px, sz]]))
    assert not sb.valid


def test_buffer_keeps_only_diffs_within_the_age_bound_and_still_bridges() -> None:
    # A book waiting for a (rate-limited) REST snapshot: diffs older than max_buffer_ms before the newest
    # are ones a snapshot requested now already contains, so they are dropped; the bridge still works.
    sb = binance.make_book("depth")
    sb._buffer_ns = 1_000 * 1_000_000  # 1 s
    s = 1_000_000_000
    frames = [BookMsg("BTCUSDT", False, [[f"{90 + i}", "1"]], [], 10 * i + 9, 10 * i, 0, 0, i * s // 2)
              for i in range(1, 9)]  # U = 10i, u = 10i + 9, one every 0.5 s
    for m in frames:
        assert not sb.on_message(m)
    assert sb.buffered == 3  # received at 3.0, 3.5 and 4.0 s: within 1 s of the newest
    assert [m.seq for m in sb._buffer] == [69, 79, 89]
    snap = BookMsg("BTCUSDT", True, [["80", "1"]], [["200", "1"]], 72, 0, 0, 0, 4 * s)
    assert sb.on_snapshot(snap)  # lastUpdateId 72: bridges into the diff U=70..u=79
    assert sb.valid and sb.book.seq == 89 and top(sb)[0] == ("98", "1")


def test_a_broken_book_leaves_no_cyclic_garbage() -> None:
    # A frame holding the exception it raises makes frame -> exception -> traceback -> frame a cycle that
    # only the cyclic GC frees (the pipeline runs it once a second), and with it the whole message. Every
    # book's failure paths must leave nothing for it: gaps, crossed books, checksums, KuCoin's depth horizon.
    import gc

    from scanner.book.errors import BookError
    from scanner.venues import bybit, kraken, kucoin

    def snap(inst: str, seq: int) -> BookMsg:
        return BookMsg(inst, True, [["99", "1"]], [["101", "1"]], seq, -1, 0, 0, 0)

    def broken() -> list[tuple[SyncedBook, BookMsg, BookMsg]]:
        return [
            (okx.make_book("books"), snap("A", 10), msg(20, 15)),  # gap
            (okx.make_book("books"), snap("A", 10), msg(11, 10, bids=[["102", "1"]])),  # crossed
            (bybit.make_book("orderbook.50"), snap("B", 10), BookMsg("B", False, [], [], 12, 11, 0, 0, 0)),
            (bybit.make_book("orderbook.50"), snap("B", 10),
             BookMsg("B", False, [["102", "1"]], [], 11, 10, 0, 0, 0)),
            (kraken.make_book("book.10"), snap("C", 1), BookMsg("C", False, [["98", "1"]], [], 2, 1, 12345, 0, 0)),
            (kucoin.make_book("level2"), snap("D", 10), BookMsg("D", False, [], [], 12, 12, 0, 0, 0)),
            (kucoin.make_book("level2"), snap("D", 10),
             BookMsg("D", False, [["102", "1", "11"]], [], 11, 11, 0, 0, 0)),
        ]

    gc.collect()
    gc.disable()
    try:
        raised = 0
        for book, first, bad in broken():
            assert book.on_message(first)
            try:
                book.on_message(bad)
            except BookError:
                raised += 1
            assert not book.valid
        assert raised == 7
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_chained_books_skip_relation_only_where_it_would_say_apply() -> None:
    from scanner.book.sync import APPLY

    sb = okx.make_book("books")
    assert sb.chained
    for local, seq, first in [(100, 107, False), (100, 100, False), (100, 7, True), (100, 200, True)]:
        assert okx.relation(msg(seq, local), local, first) == APPLY  # what the inline check assumes
    calls: list[int] = []
    sb.relation = lambda m, local, first: calls.append(m.seq) or okx.relation(m, local, first)  # type: ignore[func-returns-value]
    assert sb.on_message(msg(100, -1, [["99", "1"]], [["101", "1"]], snapshot=True))
    assert sb.on_message(msg(105, 100, bids=[["99", "2"]]))  # chained: no relation call
    assert not sb.on_message(msg(90, 80))  # not chained: relation decides (stale)
    assert calls == [90] and sb.book.seq == 105
