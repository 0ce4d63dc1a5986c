"""attention.zoo.relations: relations by name, parse_relation, mask_gallery; and check_entry."""
from __future__ import annotations

import pytest
import torch

from attention.mask_mods import causal_mod, materialize_mask, padding_mod, prefix_lm, sliding_window
from attention.verify import check_entry
from attention.zoo import RELATIONS, mask_gallery, parse_relation

T = 12

# ------------------------------------------------------------------------------------------------
# Pure-data helpers for the CLI and the dashboard view
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, reference", [
    ("causal", causal_mod),
    ("sliding:4", sliding_window(4)),
    ("prefix:2", prefix_lm(2)),
    ("sliding_window", sliding_window(3)),
])
def test_parse_relation_builds_the_named_mask_mod(spec, reference):
    ours = parse_relation(spec, 6)
    assert torch.equal(materialize_mask(ours, 1, 1, 6, 6), materialize_mask(reference, 1, 1, 6, 6))


def test_parse_relation_reads_document_ids_and_rejects_bad_specs():
    docs = parse_relation("document:0,0,1,1", 4)
    assert docs(0, 0, 3, 2) and not docs(0, 0, 2, 1)
    with pytest.raises(ValueError, match=r"needs one id per position \(T=5\) but found 4 ids"):
        parse_relation("document:0,0,1,1", 5)
    with pytest.raises(ValueError, match=r"bad relation 'sliding:0': expected window >= 1"):
        parse_relation("sliding:0", 5)
    with pytest.raises(ValueError, match=r"expected a relation among .* but found 'diagonal'"):
        parse_relation("diagonal", 5)
    assert set(RELATIONS) >= {"causal", "sliding_window", "prefix_lm", "document"}


def test_parse_relation_reads_padding_lengths_per_batch_item():
    pad = parse_relation("padding:2,4", 4)
    keep = materialize_mask(pad, 2, 1, 4, 4)[:, 0]                  # (B, T, S)
    want = torch.zeros(2, 4, 4, dtype=torch.bool)
    want[0, :, :2] = True                                           # item 0: inputs 0, 1 are real
    want[1] = True                                                  # item 1: all four are real
    want[0] |= torch.eye(4, dtype=torch.bool)                       # and every output sees itself
    assert torch.equal(keep, want)
    assert repr(pad) == "padding([2, 4])"
    with pytest.raises(ValueError, match=r"bad relation 'padding:2,9': padding:LENS needs lengths in "
                                         r"0..T=4 but found \[2, 9\]"):
        parse_relation("padding:2,9", 4)
    with pytest.raises(ValueError, match=r"bad relation 'padding:a'"):
        parse_relation("padding:a", 4)


def test_full_relation_allows_everything():
    assert bool(materialize_mask(parse_relation("full", 5), 1, 1, 5, 5).all())


def test_mask_gallery_holds_dense_keep_masks_of_the_mask_zoo():
    gallery = mask_gallery(8)
    assert len(gallery) >= 6
    for name, keep in gallery.items():
        assert keep.dtype == torch.bool and keep.dim() == 2, name
    assert torch.equal(gallery["causal"], torch.ones(8, 8, dtype=torch.bool).tril())
    assert gallery["causal (bottom-right)"].shape == (4, 8)
    assert gallery["causal (bottom-right)"][-1].all()            # last query sees every key


def test_mask_gallery_names_the_padding_tile_causal_as_it_is_drawn():
    T = 9
    gallery = mask_gallery(T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    padding = materialize_mask(padding_mod([T - 3]), 1, 1, T, T)[0, 0]     # keys >= 6 blocked
    assert not torch.equal(causal & padding, padding)       # padding alone is not causal
    names = [name for name in gallery if "padding" in name]
    assert names == [f"causal + padding (length {T - 3})"]
    assert torch.equal(gallery[names[0]], causal & padding)


def test_check_entry_returns_a_report_for_the_entrys_or_a_chosen_relation():
    own = check_entry("sliding_window", seq_len=8, dim=8, batch=1)
    assert own.passed and own.allowed_name == "sliding_window(3)"
    narrower = check_entry("sliding_window", seq_len=8, dim=8, batch=1, allowed="sliding:2")
    assert not narrower.passed and all(l.out_pos - l.in_pos == 2 for l in narrower.leaks)
    with pytest.raises(ValueError, match=r"expected a zoo entry among .* but found 'nope'"):
        check_entry("nope")
    with pytest.raises(ValueError, match=r"expected seq_len >= 5 for packed_without_document_mask"):
        check_entry("packed_without_document_mask", seq_len=3)
