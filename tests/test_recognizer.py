"""The command recognizer (TFLM micro_speech's RecognizeCommands, integer
arithmetic): minimum count, window span, averaging, threshold, suppression,
label changes, ignored labels; expected detections worked out by hand from
the documented rules (docs/pipeline.md "Decisions")."""

from __future__ import annotations

import pytest

from nanoml.errors import UsageError
from nanoml.pipeline.recognizer import MAX_RESULTS, Recognizer, score_u8
from nanoml.pipeline.spec import Decision

LABELS = ["silence", "unknown", "yes", "no"]
YES = [0, 0, 255, 0]
NO = [0, 0, 0, 255]
QUIET = [255, 0, 0, 0]


def feed(rec, items):
    """[(t_ms, scores)] -> [(t_ms, label, score)] of the detections."""
    out = []
    for t, s in items:
        d = rec.process(s, t)
        if d is not None:
            out.append((d.t_ms, d.label, d.score))
    return out


def rec(**kw):
    return Recognizer(Decision(**kw), LABELS, 4)


def test_needs_minimum_count_and_a_quarter_window_of_results():
    # t=0,100,200: 3 results but spanning 200 ms < 1000 // 4; t=300 spans 300 ms
    assert feed(rec(), [(t, YES) for t in (0, 100, 200)]) == []
    assert feed(rec(), [(t, YES) for t in (0, 100, 200, 300)]) == [(300, "yes", 255)]
    # minimum_count 5: 300 ms span is not enough, the 5th result (t=400) is
    assert feed(rec(minimum_count=5), [(t, YES) for t in range(0, 500, 100)]) == \
        [(400, "yes", 255)]


def test_suppression_after_a_detection_of_the_same_label():
    got = feed(rec(), [(t, YES) for t in range(0, 4000, 100)])
    # 300 detects; 300 + 1500 = 1800 is not "more than" 1500 later; 1900 is; then 3500
    assert got == [(300, "yes", 255), (1900, "yes", 255), (3500, "yes", 255)]


def test_another_label_is_not_suppressed():
    items = [(t, YES) for t in range(0, 1000, 100)] + [(t, NO) for t in range(1000, 2200, 100)]
    got = feed(rec(), items)
    # window of 1000 ms holds 11 results: "no" leads once its sum passes "yes"'s and the
    # integer average of 255*k//11 passes 200: k=9 at t=1800 (255*9//11 = 208)
    assert got[0] == (300, "yes", 255)
    assert got[1] == (1800, "no", 255 * 9 // 11)
    assert len(got) == 2


def test_threshold_is_strictly_above_on_the_integer_average():
    at = [0, 0, 200, 0]
    assert feed(rec(), [(t, at) for t in range(0, 600, 100)]) == []
    # averages 201, 201, 201 ... (201 + 202) // 2 = 201 -> above 200
    above = feed(rec(), [(t, [0, 0, 201 + (t // 100) % 2, 0]) for t in range(0, 600, 100)])
    assert above[0][:2] == (300, "yes") and above[0][2] == (201 + 202 + 201 + 202) // 4


def test_ignored_labels_are_not_reported_but_count_as_previous():
    r = rec()
    assert feed(r, [(t, QUIET) for t in range(0, 600, 100)]) == []
    # label 0 was the last "detection": the next label is never suppressed
    got = feed(r, [(t, YES) for t in range(600, 2000, 100)])
    assert got and got[0][1] == "yes"
    r2 = rec(ignore=[])
    assert feed(r2, [(t, QUIET) for t in range(0, 400, 100)]) == [(300, "silence", 255)]


def test_old_results_leave_the_window():
    r = rec(average_window_ms=300, minimum_count=2)
    # at t=1000 the window [700, 1000] holds only the two "no" results
    items = [(0, YES), (100, YES), (200, YES), (700, NO), (1000, NO)]
    got = feed(r, items)
    assert got[-1] == (1000, "no", 255)


def test_queue_holds_at_most_max_results():
    r = rec(average_window_ms=60000, minimum_count=1, threshold=254)
    for t in range(MAX_RESULTS):
        r.process(YES, t * 1000)
    # the queue's oldest leaves first: 50 NO results push every YES out
    got = feed(r, [(MAX_RESULTS * 1000 + t * 1000, NO) for t in range(MAX_RESULTS)])
    assert got == [((2 * MAX_RESULTS - 1) * 1000, "no", 255)]


def test_time_must_not_go_back():
    r = rec()
    r.process(YES, 500)
    with pytest.raises(UsageError, match="time order"):
        r.process(YES, 400)


def test_labels_must_match_the_scores():
    with pytest.raises(UsageError, match="3 labels for a model with 4 outputs"):
        Recognizer(Decision(), LABELS[:3], 4)
    with pytest.raises(UsageError, match="4 scores"):
        Recognizer(Decision(), None, 3).process(YES, 0)


def test_scores_from_outputs():
    assert score_u8([-128, 0, 127], [0.0, 0.5, 0.996], "int8") == [0, 128, 255]
    assert score_u8([0, 200], [0.0, 0.78], "uint8") == [0, 200]
    assert score_u8(None, [0.0, 0.5, 1.0, -1.0, 0.999], "float32") == [0, 128, 255, 0, 255]
