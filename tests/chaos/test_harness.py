"""The chaos harness's own bookkeeping: what it may ask the registry to delete."""
from __future__ import annotations

from .harness import Expected


def test_an_index_whose_delete_was_lost_still_lists_its_children():
    # a DELETE cut short by a kill may not have happened: the index may still be there, and the
    # registry refuses (405) the delete of a manifest it lists (the CI failure of stop 12)
    e = Expected()
    e.manifests[("r", "idx")] = b"{}"
    e.children[("r", "idx")] = {"kid"}
    e.forget_manifest("r", "idx", deleted=False)
    assert ("r", "idx") not in e.manifests
    assert e.listed("r", "kid")


def test_an_acknowledged_delete_frees_the_children():
    e = Expected()
    e.manifests[("r", "idx")] = b"{}"
    e.children[("r", "idx")] = {"kid"}
    e.tags[("r", "multi")] = "idx"
    e.forget_manifest("r", "idx")
    assert not e.listed("r", "kid")
    assert ("r", "multi") not in e.tags
