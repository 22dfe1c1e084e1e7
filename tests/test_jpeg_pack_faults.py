"""A JPEG pack from a stranger: every fault is one sentence and nothing is written."""
import errno

import numpy as np
import pytest
from PIL import Image

import cascade_core as cc
from train import jpeg_pack


@pytest.fixture
def good(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(3):
        (src / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
            src / f"c{i % 2}" / f"{i}.jpg")
    jpeg_pack.pack(src, tmp_path / "p.npz")
    return dict(np.load(tmp_path / "p.npz"))


def _write(tmp_path, arrays):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, **arrays)
    return tmp_path / "bad.npz"


FAULTS = {
    "empty name": (lambda z: z.update(names=np.array(["", "c0/1.jpg", "c1/2.jpg"])), "file name"),
    "dot name": (lambda z: z.update(names=np.array([".", "c0/1.jpg", "c1/2.jpg"])), "file name"),
    "NUL": (lambda z: z.update(names=np.array(["a\x00b.jpg", "c0/1.jpg", "c1/2.jpg"])),
            "file name"),
    "parent": (lambda z: z.update(names=np.array(["c0/../../x.jpg", "b", "c"])), "leaves"),
    "absolute": (lambda z: z.update(names=np.array(["/etc/x.jpg", "b", "c"])), "leaves"),
    "duplicate": (lambda z: z.update(names=np.array(["a.jpg", "a.jpg", "c"])), "appears twice"),
    "file and folder": (lambda z: z.update(names=np.array(["a", "a/b.jpg", "c"])),
                        "both a file and a folder"),
    "offsets past the end": (lambda z: z["body_offsets"].__setitem__(-1, 10 ** 9),
                             "do not rise from 0"),
    "falling offsets": (lambda z: z["body_offsets"].__setitem__(1, z["body_offsets"][2] + 1),
                        "never falling"),
    "header index": (lambda z: z["header_index"].__setitem__(0, 7), "header index"),
    "negative header index": (lambda z: z["header_index"].__setitem__(0, -1), "header index"),
    "short index": (lambda z: z.update(header_index=z["header_index"][:1]), "wrong shape"),
    "names as bytes": (lambda z: z.update(names=np.array([b"a", b"b", b"c"])), "strings"),
    "no files": (lambda z: z.update(names=np.array([], dtype="<U1"),
                                    header_index=np.zeros(0, np.int32),
                                    body_offsets=np.zeros(1, np.int64),
                                    bodies=np.zeros(0, np.uint8)), "file count"),
    "missing array": (lambda z: z.pop("bodies"), "not a JPEG pack"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_faulty_pack_is_refused_before_anything_is_written(good, tmp_path, fault, capsys):
    change, message = FAULTS[fault]
    change(good)
    bad = _write(tmp_path, good)
    assert jpeg_pack.main(["unpack", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_truncated_or_inflated_pack_is_refused(good, tmp_path, capsys):
    data = _write(tmp_path, good).read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    assert jpeg_pack.main(["unpack", str(tmp_path / "cut.npz"), str(tmp_path / "o")]) == 2
    assert "truncated" in capsys.readouterr().err
    import zipfile
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bodies.npy", b"\0" * (8 * 2 ** 20))  # 8 MiB of zeros in a few KiB
    with pytest.raises(cc.CascadeError, match="declares"):
        jpeg_pack.unpack(tmp_path / "bomb.npz", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_unpack_wants_a_new_or_empty_folder_and_a_full_disk_leaves_none(good, tmp_path,
                                                                         monkeypatch):
    pack = _write(tmp_path, good)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(cc.CascadeError, match="holds files"):
        jpeg_pack.unpack(pack, tmp_path / "full")
    (tmp_path / "empty").mkdir()
    assert jpeg_pack.unpack(pack, tmp_path / "empty") == 3
    real_write = jpeg_pack.Path.write_bytes
    calls = []

    def fill_up(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(jpeg_pack.Path, "write_bytes", fill_up)
    with pytest.raises(cc.CascadeError, match="disk is full"):
        jpeg_pack.unpack(pack, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new")]


def test_pack_onto_a_folder_is_refused_and_leaves_no_temp_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.jpg")
    (tmp_path / "out.npz").mkdir()
    with pytest.raises(cc.CascadeError, match="is a folder"):
        jpeg_pack.pack(src, tmp_path / "out.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz", "src"]
