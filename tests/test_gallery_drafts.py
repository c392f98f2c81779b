"""gallery/drafts.py: what a browser was about to generate, kept across its visits."""
from __future__ import annotations

from pathlib import Path

from gallery import drafts


def test_a_draft_comes_back_as_it_was_left(tmp_path: Path):
    draft = {"content": [{"path": "/data/inputs/a.jpg", "name": "a.jpg"}], "form": {"p_size": 256}}
    assert drafts.load(tmp_path, "me000001") == {}
    assert drafts.save(tmp_path, "me000001", draft)
    assert drafts.load(tmp_path, "me000001") == draft
    assert drafts.load(tmp_path, "them0001") == {}


def test_only_owner_ids_name_a_file_and_nothing_big_or_broken_is_taken(tmp_path: Path):
    assert not drafts.save(tmp_path, "../../etc", {"x": 1}) and not (tmp_path.parent / "etc.json").exists()
    assert not drafts.save(tmp_path, "me000001", {"x": "y" * (drafts.MAX_BYTES + 1)})
    (tmp_path / "drafts").mkdir(exist_ok=True)
    (tmp_path / "drafts" / "me000002.json").write_text("[1, 2]")
    (tmp_path / "drafts" / "me000003.json").write_text("{not json")
    assert drafts.load(tmp_path, "me000002") == {} and drafts.load(tmp_path, "me000003") == {}
    assert not drafts.save(tmp_path, "me000004", {"x": object()})  # not JSON: not kept, not raised
