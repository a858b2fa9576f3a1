"""Counting lines: direction, wobble counted once, segment ends, class filter."""

from analytics.lines import LineConfig, LineCounter

# a vertical line x=100 from y=0 (A) down to y=200 (B): looking from A to B, moving +x crosses right → left: "in"
LINE = LineConfig(name="gate", points=((100, 0), (100, 200)))


def walk(counter, track_id, xs, y=100.0, name="bottle", start=0):
    """Frame i of the walk at pts i / 4 s."""
    events = []
    for i, x in enumerate(xs):
        events += counter.update(start + i, (start + i) / 4, track_id, name, (float(x), y))
    return events


def test_both_directions():
    counter = LineCounter([LINE])
    rightward = walk(counter, 1, [80, 90, 99, 101, 110])
    leftward = walk(counter, 2, [120, 105, 95, 90])
    crossings = [(e.track_id, e.direction, e.frame, e.pts) for e in rightward + leftward]
    assert crossings == [(1, "in", 3, 0.75), (2, "out", 2, 0.5)]
    assert counter.totals == {("gate", "bottle", "in"): 1, ("gate", "bottle", "out"): 1}


def test_invert_swaps_directions():
    counter = LineCounter([LINE.model_copy(update={"invert": True})])
    assert walk(counter, 1, [80, 120])[0].direction == "out"


def test_wobble_on_the_line_counts_once():
    counter = LineCounter([LINE])
    events = walk(counter, 1, [90, 99, 100, 101, 99, 100, 102, 98, 103, 97, 104, 120])
    assert len(events) == 1 and events[0].direction == "in"
    assert counter.totals == {("gate", "bottle", "in"): 1}


def test_touching_the_line_without_crossing_is_not_counted():
    counter = LineCounter([LINE])
    assert walk(counter, 1, [90, 100, 100, 95, 80]) == []


def test_passing_beyond_the_segment_ends_is_not_a_crossing():
    counter = LineCounter([LINE])
    assert walk(counter, 1, [80, 120], y=250) == []  # below B
    assert walk(counter, 2, [80, 120], y=-5) == []  # above A
    assert len(walk(counter, 3, [80, 120], y=199)) == 1


def test_class_filter_and_separate_lines():
    lines = [LINE.model_copy(update={"classes": ["person"]}), LineConfig(name="other", points=((150, 0), (150, 200)))]
    counter = LineCounter(lines)
    walk(counter, 1, [80, 160], name="bottle")
    walk(counter, 2, [80, 160], name="person")
    assert counter.totals == {("other", "bottle", "in"): 1, ("gate", "person", "in"): 1, ("other", "person", "in"): 1}


def test_forgotten_track_starts_a_new_path():
    counter = LineCounter([LINE])
    walk(counter, 1, [80, 120])
    counter.forget(1)
    assert walk(counter, 1, [130, 90])[0].direction == "out"  # an id reused after removal counts again
