"""The pull-request decision: exhaustive small cases and properties."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelogic.errors import PullRequestError
from pipelogic.pulling import decide, finished
from pipelogic.types import InputsPullOption, InputsPullRequest, StreamPullShift

S = StreamPullShift.from_fixed


def req(*options):
    return InputsPullRequest([InputsPullOption(list(o)) for o in options])


def test_fixed_one():
    r = req([S(0, 1, 1)])
    assert decide([0], r) is None
    assert decide([3], r).takes == ((0, 1),)


def test_skip_min_max():
    r = req([S(2, 1, 3)])
    assert decide([2], r) is None  # 2 < skip + min
    assert decide([3], r).takes == ((2, 1),)
    assert decide([10], r).takes == ((2, 3),)


def test_priority_first_satisfiable_wins():
    r = req([S(0, 4, 4), S(0, 0, 0)], [S(0, 1, 1), S(0, 1, 1)])
    assert decide([4, 0], r).option == 0
    assert decide([3, 1], r).option == 1
    assert decide([3, 0], r) is None


def test_never_an_empty_tick():
    r = req([S(0, 0, 5)])
    assert decide([0], r) is None
    assert decide([2], r).takes == ((0, 2),)


def test_finished_only_when_all_closed():
    r = req([S(0, 2, 2)])
    assert not finished([1], [False], r)
    assert finished([1], [True], r)
    assert not finished([2], [True], r)


@pytest.mark.parametrize(("skip", "mn", "mx"), [(-1, 0, 1), (0, 2, 1), (0, 0, -1)])
def test_malformed_shift(skip, mn, mx):
    with pytest.raises(PullRequestError):
        S(skip, mn, mx)


def test_malformed_requests():
    with pytest.raises(PullRequestError, match="consume nothing"):
        InputsPullOption([S(0, 0, 0)])
    with pytest.raises(PullRequestError, match="different numbers of shifts"):
        InputsPullRequest([InputsPullOption([S(0, 1, 1)]), InputsPullOption([S(0, 1, 1), S(0, 1, 1)])])
    with pytest.raises(PullRequestError, match="component c: pull request has 1 shift"):
        req([S(0, 1, 1)]).check_inputs(2, "c")
    with pytest.raises(PullRequestError, match="malformed pull request"):
        InputsPullRequest.from_wire([[["x"], None]])


def test_exhaustive_two_streams():
    shifts = [S(s, a, b) for s in range(2) for a in range(3) for b in range(a, 3)]
    for s0, s1 in itertools.product(shifts, repeat=2):
        if not (s0.consumes() or s1.consumes()):
            continue
        r = req([s0, s1])
        for n0, n1 in itertools.product(range(5), repeat=2):
            d = decide([n0, n1], r)
            ok = n0 >= s0.skip + s0.min_pull and n1 >= s1.skip + s1.min_pull
            if d is None:
                assert not ok or (
                    min(s0.max_pull, n0 - s0.skip) + s0.skip + min(s1.max_pull, n1 - s1.skip) + s1.skip == 0
                )
                continue
            for (skip, k), s, n in zip(d.takes, (s0, s1), (n0, n1)):
                assert skip == s.skip and s.min_pull <= k <= s.max_pull and skip + k <= n
                assert k == min(s.max_pull, n - skip)  # as many as available, up to max


shift_st = st.builds(lambda s, a, d: S(s, a, a + d), st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))


@given(
    st.lists(st.lists(shift_st, min_size=2, max_size=2), min_size=1, max_size=3),
    st.lists(st.integers(0, 12), min_size=2, max_size=2),
)
def test_properties(options, lengths):
    opts = [o for o in options if any(s.consumes() for s in o)]
    if not opts:
        return
    r = req(*opts)
    d = decide(lengths, r)
    satisfiable = [
        i
        for i, o in enumerate(opts)
        if all(n >= s.skip + s.min_pull for n, s in zip(lengths, o))
        and sum(s.skip + min(s.max_pull, n - s.skip) for n, s in zip(lengths, o)) > 0
    ]
    if d is None:
        assert not satisfiable
        return
    assert d.option == satisfiable[0]  # priority
    for (skip, k), s, n in zip(d.takes, opts[d.option], lengths):
        assert skip + k <= n  # never more than there is: nothing invented or duplicated
        assert s.min_pull <= k <= s.max_pull
