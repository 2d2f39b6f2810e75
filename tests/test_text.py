"""Corpus loading, Markdown stripping, the character tokenizer, splits and batches."""

import jax
import numpy as np
import pytest

from grulm_edu.chars import UNKNOWN_ID, CharTokenizer
from grulm_edu.corpus import Play, load_plays, read_text_file, strip_markdown
from grulm_edu.data import epoch_order, make_batches, prepare, split_plays, split_text


def test_strip_markdown_play_excerpt():
    markdown = (
        "# Macbeth\n\n## ACT I\n\n### SCENE II. A camp near Forres.\n\n"
        "_Alarum within. Enter DUNCAN_\n\n**DUNCAN**  \nWhat bloody man is that?  \n"
        "The merciless Macdonwald\\--  \n__\\[Reads]_  \n*[Drawing his.]*\n\n\n\n1\\. A flourish.\n"
    )
    assert strip_markdown(markdown) == (
        "Macbeth\n\nACT I\n\nSCENE II. A camp near Forres.\n\n"
        "Alarum within. Enter DUNCAN\n\nDUNCAN:\nWhat bloody man is that?\n"
        "The merciless Macdonwald--\n[Reads]\n[Drawing his.]\n\n1. A flourish.\n"
    )


@pytest.fixture(scope="module")
def plays():
    return load_plays()


def test_load_plays_is_plain_text_in_fixed_order(plays):
    names = [p.name for p in plays]
    assert len(plays) == 38
    assert names == sorted(names)
    assert names[0] == "comedies/a-midsummer-night-s-dream"
    text = "".join(p.text for p in plays)
    for markup in ("**", "_", "\\", "#"):
        assert markup not in text
    macbeth = next(p for p in plays if p.name == "tragedies/macbeth").text
    assert "First Witch:\nWhen shall we three meet again\nIn thunder, lightning, or in rain?\n" in macbeth
    assert len(text) == 4_986_906


def test_split_plays_holds_out_whole_plays(plays):
    splits = split_plays(plays)
    assert splits.val_names == tuple(plays[i].name for i in (4, 14, 24, 34))
    assert splits.test_names == tuple(plays[i].name for i in (9, 19, 29))
    assert len(splits.train_names) == 31
    assert "tragedies/macbeth" in splits.val_names
    assert "Fair is foul, and foul is fair" in splits.val
    assert "Fair is foul, and foul is fair" not in splits.train
    with pytest.raises(ValueError, match="at least 10 plays"):
        split_plays([Play("a", "text")] * 3)


def test_split_text_by_position():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    splits = split_text(text)
    assert splits.train + splits.val + splits.test == text
    assert (len(splits.train), len(splits.val), len(splits.test)) == (900, 50, 50)


def test_read_text_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text_file(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError, match="directory"):
        read_text_file(tmp_path)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        read_text_file(latin1)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        read_text_file(empty)
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffhello\n".encode())
    assert read_text_file(good) == "hello\n"


def test_char_tokenizer_round_trip_and_unknown():
    tokenizer = CharTokenizer.from_text("hello world")
    assert tokenizer.vocab_size == len(set("hello world")) + 1
    ids = tokenizer.encode("hello")
    assert ids.dtype == np.int32
    assert tokenizer.decode(ids) == "hello"
    assert UNKNOWN_ID not in ids
    with pytest.raises(ValueError, match=r"'qz' \(first at index 5\).*errors='replace'"):
        tokenizer.encode("hold zq")
    replaced = tokenizer.encode("hez", errors="replace")
    assert replaced[-1] == UNKNOWN_ID
    assert tokenizer.decode(replaced) == "he\ufffd"
    assert CharTokenizer.from_dict(tokenizer.to_dict()) == tokenizer


def test_char_tokenizer_rejects_bad_ids():
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tokenizer.decode([1, 4])
    with pytest.raises(ValueError, match="'strict' or 'replace'"):
        tokenizer.encode("a", errors="ignore")


def test_make_batches_layout():
    ids = np.arange(2 * 3 * 4 + 5)  # 29 tokens: 28 targets, 7 windows of T=4
    batches = make_batches(ids, batch_size=3, seq_len=4)
    assert batches.tokens.shape == (2, 3, 5)
    # Row i of batch b is window i * num_batches + b, window k starts at k * T.
    for b in range(2):
        for i in range(3):
            k = i * 2 + b
            np.testing.assert_array_equal(batches.tokens[b, i], ids[k * 4 : k * 4 + 5])
    assert batches.mask.all()


def test_make_batches_eval_scores_every_target_once():
    ids = np.arange(1, 31)  # 30 tokens, 29 targets
    batches = make_batches(ids, batch_size=2, seq_len=4, drop_last=False)
    targets = batches.tokens[..., 1:][batches.mask.astype(bool)]
    assert sorted(targets.tolist()) == list(range(2, 31))
    assert batches.num_targets == 29


def test_make_batches_too_short():
    with pytest.raises(ValueError, match="too short"):
        make_batches(np.arange(10), batch_size=4, seq_len=8)


def test_epoch_order_is_a_seeded_permutation():
    key = jax.random.key(3)
    order = epoch_order(key, 50)
    assert sorted(order.tolist()) == list(range(50))
    np.testing.assert_array_equal(order, epoch_order(key, 50))
    assert not np.array_equal(order, epoch_order(jax.random.key(4), 50))


def test_prepare_counts_unknown_characters():
    text = "abcabcabc" * 40
    splits = split_text(text + "xyz" * 10, 0.05, 0.05)
    prepared = prepare(splits, batch_size=2, seq_len=8)
    assert "x" not in prepared.tokenizer.chars
    assert prepared.unknown_counts["train"] == 0
    assert prepared.unknown_counts["test"] > 0
