"""Large frames of retained messages, written once beside the recovery store's database
(backend_stub.spill): references in the rows, files removed only after the commit that
released their last row, and what a crash leaves swept at the next start."""

import os

from backend_stub.spill import SPILL_MIN, Spill

BIG = bytes(range(256)) * (SPILL_MIN // 256 + 1)


def _files(spill):
    return sorted(int(p) for p in os.listdir(spill.dir))


def test_a_large_frame_is_written_once_and_read_back(tmp_path):
    spill = Spill(tmp_path / "frames")
    rows = spill.pack_rows([("a.0", 0, [b"small", BIG]), ("a.0", 1, [b"x"])])
    assert spill.written == len(BIG)  # the large one, once; the small ones stay in the rows
    assert len(rows[0][2]) < 100 and _files(spill) == [1]
    again = Spill(tmp_path / "frames")  # a restarted broker
    assert again.unpack_row("a.0", 0, rows[0][2]) == (b"small", BIG)
    assert again.unpack_row("a.0", 1, rows[1][2]) == (b"x",)


def test_a_file_goes_once_its_last_row_is_released_and_committed(tmp_path):
    spill = Spill(tmp_path / "frames")
    spill.pack_rows([("a.0", 0, [BIG]), ("b.0", 0, [BIG])])  # commit 1: one file, two rows
    spill.committed()
    spill.pack_rows([("a.0", 1, [BIG])])  # commit 2
    spill.committed()
    spill.release_below("a.0", 2)
    assert _files(spill) == [1, 2]  # not before the commit that deletes the rows
    spill.committed()
    assert _files(spill) == [1]  # b.0's row still holds the first file
    spill.release_below("b.0", 1)
    spill.committed()
    assert _files(spill) == []


def test_a_start_sweeps_the_files_no_committed_row_references(tmp_path):
    spill = Spill(tmp_path / "frames")
    kept = spill.pack_rows([("a.0", 0, [BIG])])
    spill.pack_rows([("a.0", 1, [BIG])])  # a commit that never happened (a crash)
    again = Spill(tmp_path / "frames")
    again.unpack_row("a.0", 0, kept[0][2])
    again.sweep()
    assert _files(again) == [1]
    assert again.pack_rows([("a.0", 1, [BIG])]) and _files(again) == [1, 3]  # numbers are not reused
