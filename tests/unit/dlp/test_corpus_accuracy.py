"""Precision and recall per detector on the labelled corpus (tests/data/dlp_corpus.jsonl).

A positive counts as found only when its detector reports exactly the labelled value
(a partial span would leak the rest). Any other finding, in a positive or a negative
snippet, is a false positive for the detector that made it. Regenerate the corpus with
``python -m tests.unit.dlp.make_corpus``.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from plugins.middleware.dlp import BUILTIN, Scanner

CORPUS = Path(__file__).resolve().parents[2] / "data" / "dlp_corpus.jsonl"
TARGET = 0.99


def _load() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def evaluate(rows: list[dict]) -> tuple[dict[str, dict[str, float]], list[str]]:
    scanner = Scanner(BUILTIN)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    positives: Counter[str] = Counter()
    errors: list[str] = []
    for r in rows:
        text, label = r["text"], r["label"]
        findings = scanner.scan(text)
        if label:
            positives[label] += 1
            start = text.index(r["value"])
            span = (start, start + len(r["value"]))
            hit = next((f for f in findings if f.detector == label and (f.start, f.end) == span), None)
            if hit is not None:
                tp[label] += 1
            else:
                errors.append(f"missed {label}: {text!r}")
            others = [f for f in findings if f is not hit]
        else:
            others = findings
        for f in others:
            fp[f.detector] += 1
            errors.append(f"false {f.detector} {text[f.start:f.end]!r} in {text!r}")
    report = {}
    for name in sorted(set(positives) | set(fp)):
        found = tp[name] + fp[name]
        report[name] = {
            "n": positives[name],
            "precision": tp[name] / found if found else 1.0,
            "recall": tp[name] / positives[name] if positives[name] else 1.0,
        }
    return report, errors


def test_corpus_is_big_enough_and_has_checksum_invalid_negatives():
    rows = _load()
    assert sum(1 for r in rows if r["label"]) >= 500
    assert sum(1 for r in rows if not r["label"]) >= 500
    near = Counter(r.get("near") for r in rows if not r["label"])
    assert near["credit_card"] >= 50 and near["iban"] >= 40  # Luhn- and mod-97-invalid numbers


def test_every_builtin_detector_has_at_least_50_positives():
    counts = Counter(r["label"] for r in _load() if r["label"])
    assert {d.name for d in BUILTIN} <= set(counts)
    assert min(counts.values()) >= 50


def test_precision_and_recall_per_detector_reach_the_target(capsys: pytest.CaptureFixture[str]):
    report, errors = evaluate(_load())
    with capsys.disabled():
        print(f"\n{'detector':24} {'n':>4} {'precision':>10} {'recall':>8}")
        for name, m in report.items():
            print(f"{name:24} {m['n']:>4} {m['precision']:>10.4f} {m['recall']:>8.4f}")
    below = {n: m for n, m in report.items() if m["precision"] < TARGET or m["recall"] < TARGET}
    assert not below, "below target:\n" + "\n".join(errors[:40])
