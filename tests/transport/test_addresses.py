"""AddressBook, sans-IO: which addresses are dialled, and for how long."""

from hypothesis import given
from hypothesis import strategies as st

from transport._addresses import AddressBook, Dial


def test_gossip_is_capped_and_unanswered_addresses_are_forgotten() -> None:
    book = AddressBook(forget_after_s=10, max_learned_addresses=3)
    assert [book.learn(f"10.0.0.{i}:7000", now=0) for i in range(5)] == [True] * 3 + [False] * 2
    assert book.dropped == 2
    assert not book.learn("10.0.0.0:7000", now=1)  # already known
    assert book.next_step("10.0.0.0:7000", now=10) is Dial.DIAL
    assert book.next_step("10.0.0.0:7000", now=11) is Dial.STOP
    assert book.forgotten == 1
    assert book.learned() == ["10.0.0.1:7000", "10.0.0.2:7000"]


def test_an_address_that_answered_once_is_probed_not_forgotten() -> None:
    book = AddressBook(forget_after_s=10)
    book.learn("10.0.0.1:7000", now=0)
    book.answered("10.0.0.1:7000", "b", now=5)
    assert book.next_step("10.0.0.1:7000", now=15) is Dial.DIAL
    assert book.next_step("10.0.0.1:7000", now=10_000) is Dial.PROBE  # a long split heals
    book.seen("10.0.0.1:7000", now=10_000)
    assert book.next_step("10.0.0.1:7000", now=10_005) is Dial.DIAL


def test_a_node_at_a_new_address_makes_its_old_one_go() -> None:
    book = AddressBook()
    book.set_seed("seed:7000", frozenset({"10.0.0.9:7000"}))
    book.answered("10.0.0.9:7000", "b", now=0)  # a seed stays
    assert book.answered("10.0.0.1:7000", "b", now=1)
    assert book.answered("10.0.0.2:7000", "b", now=2)  # b restarted with a new IP
    assert book.next_step("10.0.0.1:7000", now=3) is Dial.STOP
    assert book.next_step("10.0.0.9:7000", now=3) is Dial.DIAL
    assert book.node_at("10.0.0.9:7000") == "b"
    assert book.forgotten == 1


def test_a_proven_address_evicts_the_stalest_when_full() -> None:
    book = AddressBook(max_learned_addresses=2)
    book.learn("10.0.0.1:7000", now=0)
    book.learn("10.0.0.2:7000", now=1)
    assert not book.learn("10.0.0.3:7000", now=2)
    assert book.answered("10.0.0.3:7000", "c", now=2)
    assert book.learned() == ["10.0.0.2:7000", "10.0.0.3:7000"]


def test_seeds_are_dialled_while_they_resolve() -> None:
    book = AddressBook(forget_after_s=1)
    book.set_seed("svc:7000", frozenset({"10.0.0.1:7000", "10.0.0.2:7000"}))
    assert book.next_step("10.0.0.1:7000", now=1e9) is Dial.DIAL
    assert not book.learn("10.0.0.1:7000", now=0)  # a seed is not learned too
    book.set_seed("svc:7000", frozenset({"10.0.0.2:7000"}))  # the pod went away
    assert book.next_step("10.0.0.1:7000", now=1e9) is Dial.STOP


operations = st.lists(
    st.tuples(
        st.sampled_from(["learn", "answered", "seen", "step"]),
        st.integers(0, 30),  # address
        st.sampled_from("abcd"),  # node
        st.floats(0, 5),  # time advance
    ),
    max_size=200,
)


@given(operations)
def test_the_book_stays_bounded_and_every_address_ends(
    ops: list[tuple[str, int, str, float]],
) -> None:
    book = AddressBook(forget_after_s=10, max_learned_addresses=8)
    now = 0.0
    for op, i, node, advance in ops:
        now += advance
        address = f"10.0.0.{i}:7000"
        if op == "learn":
            book.learn(address, now)
        elif op == "answered":
            book.answered(address, node, now)
        elif op == "seen":
            book.seen(address, now)
        else:
            book.next_step(address, now)
        assert len(book.learned()) <= 8
        # A node is known at one learned address at most.
        nodes = [book.node_at(a) for a in book.learned() if book.node_at(a) is not None]
        assert len(nodes) == len(set(nodes))
    # Long after, nothing that never answered is still dialled.
    for address in book.learned():
        assert book.next_step(address, now + 11) in (Dial.PROBE, Dial.STOP)
    assert all(book.node_at(a) is not None for a in book.learned())


def test_per_source_limits_count_an_ipv6_slash_64_as_one_source() -> None:
    from transport._tcp import _source_of

    assert _source_of("127.0.0.2") == "127.0.0.2"
    assert _source_of("2001:db8::1") == _source_of("2001:db8::ffff:1") == "2001:db8::/64"
    assert _source_of("::ffff:10.0.0.1") == "10.0.0.1"
