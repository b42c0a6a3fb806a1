"""Sender reputation and how the ensemble uses it (pure logic, no model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from daemon.mail.mime import ParsedMessage, parse_message
from daemon.spam.model import Ensemble
from daemon.spam.senders import MAX_COUNT, SenderReputation


def _message(sender: str) -> ParsedMessage:
    return parse_message(f"From: {sender}\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n".encode())


def test_with_ham_side_known_ham_sender_gets_positive_log_odds_and_spam_sender_negative() -> None:
    messages = [_message("Alice <alice@example.org>")] * 3 + [_message("Deals <offers@cheap.biz>")] * 2
    reputation = SenderReputation.fit(messages, [0, 0, 0, 1, 1], ham_side=True)
    features = reputation.features([_message("ALICE@Example.org"), _message("offers@cheap.biz"),
                                    _message("bob@example.org"), _message("nobody@elsewhere.net")])
    assert features.shape == (4, 2)
    assert features[0].tolist() == [math.log(4), math.log(4)]  # address and domain both seen 3x as ham
    assert features[1].tolist() == [math.log(1 / 3), math.log(1 / 3)]
    assert features[2].tolist() == [0.0, math.log(4)]  # unknown address at a known domain
    assert features[3].tolist() == [0.0, 0.0]


def test_by_default_a_sender_can_lose_credit_but_never_earn_it() -> None:
    # A spam forging a frequent correspondent's From must not be waved through on their credit.
    messages = [_message("alice@example.org")] * 50 + [_message("offers@cheap.biz")] * 2
    reputation = SenderReputation.fit(messages, [0] * 50 + [1, 1])
    forged, known_spammer = reputation.features([_message("alice@example.org"), _message("offers@cheap.biz")])
    assert forged.tolist() == [0.0, 0.0]
    assert known_spammer.tolist() == [math.log(1 / 3), math.log(1 / 3)]


def test_counts_are_capped_so_one_busy_list_cannot_dominate() -> None:
    messages = [_message("list@lists.example.org")] * (MAX_COUNT + 50)
    reputation = SenderReputation.fit(messages, [0] * len(messages), ham_side=True)
    assert reputation.features([messages[0]])[0, 0] == math.log(MAX_COUNT + 1)


def test_message_without_sender_has_no_reputation() -> None:
    reputation = SenderReputation.fit([_message("a@b.org")], [0])
    no_from = parse_message(b"Subject: x\r\n\r\nbody\r\n")
    assert reputation.features([no_from]).tolist() == [[0.0, 0.0]]


def test_saved_reputation_round_trips_without_plain_addresses(tmp_path: Path) -> None:
    messages = [_message("alice@example.org"), _message("offers@cheap.biz")]
    reputation = SenderReputation.fit(messages, [0, 1], ham_side=True)
    reputation.save(tmp_path)
    text = (tmp_path / "senders.json").read_text()
    assert "alice" not in text and "example.org" not in text and "cheap.biz" not in text
    loaded = SenderReputation.load(tmp_path)
    assert loaded is not None and loaded.ham_side
    assert np.array_equal(loaded.features(messages), reputation.features(messages))
    assert SenderReputation.load(tmp_path / "missing") is None


def test_ensemble_adds_weighted_sender_features_and_reads_old_json() -> None:
    ensemble = Ensemble(transformer=2.0, tokens=0.5, bias=-1.0, senders=(-1.5, -0.5))
    t, k = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    s = np.array([[0.0, 0.0], [2.0, 1.0]])
    assert ensemble.logit(t, k, s).tolist() == [2.0, 2.0 - 3.0 - 0.5]
    assert Ensemble.from_json(json.loads(json.dumps(ensemble.to_json()))) == ensemble
    old = Ensemble.from_json({"transformer": 2.0, "tokens": 0.5, "bias": -1.0})
    assert old.senders == () and old.logit(t, k, s).tolist() == [2.0, 2.0]
