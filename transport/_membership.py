"""Membership: which incarnations belong to the cluster, as a replicated set.

Sans-IO: no sockets and no clock. The node feeds it what it hears (a new incarnation,
a member silent for longer than the horizon) and gossips it; replicas merge by union.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import attrs

#: Why an incarnation left the member set.
REPLACED, EXPELLED, LEFT = "replaced", "expelled", "left"


def name_of(incarnation_id: str) -> str:
    """The node name of an incarnation id ``name/incarnation``."""
    return incarnation_id.rpartition("/")[0]


@attrs.define
class Membership:
    """The cluster's member set: a state-based CRDT of incarnation ids (``name/inc``).

    State, every part of it grow-only, merged by union:

    - ``cluster``: the id of the cluster (its first member's incarnation id and start
      time), set once; replicas of different clusters never merge;
    - ``admitted``: incarnation id -> its sponsors (the members that admitted it; none
      for the first member);
    - ``removed``: incarnation id -> why (`REPLACED`, `EXPELLED`, or `LEFT` when it
      stopped gracefully); removal is final;
    - ``votes``: ``("admit", incarnation id)`` -> the members who voted;
    - ``accusations``: ``(voter, target)`` -> ``(made, withdrawn)`` counts: the voter
      has not heard the target for the horizon while ``made > withdrawn``; it
      withdraws the accusation when it hears the target again (as SWIM members
      refute suspicion). Only the voter changes its own entries; merge takes maxima.

    Members are admitted and not removed. The rules (`decide`), applied by every
    replica to the same merged state:

    - a new incarnation of a member's name is admitted at once by the member that
      hears it (its sponsor), and the older incarnation is removed as `REPLACED`:
      a rolling restart needs no vote; so is a new incarnation of a name that was a
      member before (it left, or was expelled);
    - an incarnation of a new name needs votes from a strict majority of the members,
      so a minority cannot grow itself into a majority; only members vouched for by a
      majority vote and count (see ``vouched``);
    - a member is `EXPELLED` (after the runtime's horizon of silence) only by standing
      accusations from voting members that are a strict majority of all the members,
      the target and incarnations not vouched for yet counted, and only accusations
      by members nobody stands accusing count; but the accusations of a member that
      a majority of the members stands accusing (a member cut off from most, or
      dead) shield nobody, so a member that accused others and then died for good
      is still expelled. A replica counts only the accusers it still hears (see
      ``silent``): one cut off from it may have withdrawn unseen. A minority
      never removes the majority, neither half of an even split removes the other,
      and members that accuse each other (a split into three, say) cancel out:
      their tombstones wait for the heal rather than risk both sides removing each
      other;
    - ``vouched``: the incarnations a majority of members has sponsored (or voted in);
    - an incarnation not yet vouched for, all of whose sponsors were expelled, is
      expelled too: it took its state from replicas the majority had cut off (say, a
      node restarted on the minority side of a long split). Every member that hears
      an incarnation sponsors it, so in a connected cluster it is vouched for within
      a heartbeat or two, and a sponsor that dies later takes nobody with it.

    An expelled incarnation that comes back learns it from this set and must re-sync
    from empty under a new incarnation.
    """

    cluster: str | None = None
    admitted: dict[str, frozenset[str]] = attrs.field(factory=dict)
    removed: dict[str, str] = attrs.field(factory=dict)
    votes: dict[tuple[str, str], set[str]] = attrs.field(factory=dict)
    accusations: dict[tuple[str, str], tuple[int, int]] = attrs.field(factory=dict)
    vouched: set[str] = attrs.field(factory=set)
    _digest: bytes | None = attrs.field(default=None, eq=False, repr=False, alias="_digest")
    _members: frozenset[str] | None = attrs.field(
        default=None, eq=False, repr=False, alias="_members"
    )
    #: Set by the runtime that owns this replica: whether it has lost touch with a
    #: member (not heard for its failure timeout). Not state: never merged, compared
    #: or sent. An accusation is a claim about now; one whose accuser this replica
    #: no longer hears may have been withdrawn since, unseen, so it does not count
    #: toward an expulsion decided here (see `decide`).
    silent: Callable[[str], bool] | None = attrs.field(default=None, eq=False, repr=False)

    def _dirty(self) -> None:
        self._digest = self._members = None

    # -- reads -----------------------------------------------------------------------

    def members(self) -> frozenset[str]:
        """The incarnation ids admitted and not removed."""
        if self._members is None:
            removed = self.removed
            self._members = frozenset(i for i in self.admitted if i not in removed)
        return self._members

    def member_of_name(self, name: str) -> str | None:
        """The member incarnation with node name ``name``, if any."""
        for incarnation_id in self.members():
            if name_of(incarnation_id) == name:
                return incarnation_id
        return None

    def digest(self) -> bytes:
        """An 8-byte digest of the whole state: equal digests, equal states."""
        if self._digest is None:
            blob = repr(self.to_wire()).encode()
            self._digest = hashlib.blake2b(blob, digest_size=8).digest()
        return self._digest

    # -- changes -----------------------------------------------------------------------

    def found(self, me: str, cluster: str) -> bool:
        """Found a cluster with ``me`` as its first member (no-op if one is set)."""
        if self.cluster is not None:
            return False
        self._dirty()
        self.cluster = cluster
        self.admitted[me] = frozenset()
        self.vouched.add(me)
        return True

    def propose(self, candidate: str, voter: str, *, fresh: bool = True) -> bool:
        """``voter``, a member, heard ``candidate`` ask to join; record what follows.

        Args:
            candidate: the incarnation heard.
            voter: the member that heard it.
            fresh: the candidate holds no state yet (it is not synced). An
                incarnation this set does not know that already holds state took it
                from elsewhere (say, the minority side of a split): it is not admitted
                here, but learns this set and its fate from it.

        Returns:
            True if the state changed.
        """
        if candidate in self.vouched or candidate in self.removed:
            return False  # the common case: a heartbeat from a settled member
        if voter not in self.members():
            return False
        sponsors = self.admitted.get(candidate)
        if sponsors is None and not fresh:
            return False
        self._dirty()
        if sponsors is not None:
            # Sponsor it too, until a majority has: then it is vouched for.
            if candidate in self.vouched or voter in sponsors:
                return False
            self.admitted[candidate] = sponsors | {voter}
            self._dirty()
            self.decide()
            return True
        name = name_of(candidate)
        older = self.member_of_name(name)
        if older is not None:
            self.admitted[candidate] = frozenset([voter])
            self.removed[older] = REPLACED
            self._dirty()
            return True
        if any(name_of(i) == name for i in self.admitted):
            # A name the members counted before (its incarnation left or was expelled)
            # comes back: the member count does not grow past what a majority agreed.
            self.admitted[candidate] = frozenset([voter])
            self._dirty()
            return True
        changed = self._vote("admit", candidate, voter)
        return self.decide() or changed

    def leave(self, me: str) -> bool:
        """Record that member ``me`` stops gracefully (its writes handed over)."""
        if me not in self.members():
            return False
        self._dirty()
        self.removed[me] = LEFT
        return True

    def vote_expel(self, target: str, voter: str) -> bool:
        """``voter`` has not heard from member ``target`` for the horizon."""
        members = self.members()
        if voter not in members or target not in members or voter == target:
            return False
        made, withdrawn = self.accusations.get((voter, target), (0, 0))
        if made > withdrawn:
            return False
        self._dirty()
        self.accusations[(voter, target)] = (withdrawn + 1, withdrawn)
        self.decide()
        return True

    def withdraw(self, target: str, voter: str) -> bool:
        """``voter`` hears ``target`` again: its accusation, if any, no longer stands."""
        made, withdrawn = self.accusations.get((voter, target), (0, 0))
        if made <= withdrawn:
            return False
        self._dirty()
        self.accusations[(voter, target)] = (made, made)
        return True

    def accused_by(self, voter: str) -> frozenset[str]:
        """The members ``voter`` stands accusing."""
        return frozenset(t for (v, t), (m, w) in self.accusations.items() if v == voter and m > w)

    def second(self, voter: str) -> bool:
        """``voter``, a member, votes for every incarnation waiting to be admitted.

        A member that learns of a candidate from another member's gossip votes too:
        what the majority rule asks is that a majority of members be reachable, so
        hearing of a candidate second-hand is as good as hearing it.

        Returns:
            True if the state changed.
        """
        if voter not in self.members():
            return False
        self._dirty()
        changed = False
        for (what, target), voters in self.votes.items():
            if (
                what == "admit"
                and voter not in voters
                and target not in self.admitted
                and target not in self.removed
            ):
                voters.add(voter)
                changed = True
        return self.decide() or changed

    def _vote(self, what: str, target: str, voter: str) -> bool:
        self._dirty()
        voters = self.votes.setdefault((what, target), set())
        if voter in voters:
            return False
        voters.add(voter)
        return True

    def merge(self, other: Membership) -> bool:
        """Join ``other`` into this set (same cluster, or this one unset).

        Returns:
            True if the state changed.

        Raises:
            ValueError: ``other`` belongs to another cluster.
        """
        if other.cluster is None:
            if other.admitted or other.removed or other.votes or other.accusations:
                raise ValueError("a membership without a cluster must be empty")
            return False
        if self.cluster is not None and other.cluster != self.cluster:
            raise ValueError(f"cluster {other.cluster!r} is not {self.cluster!r}")
        before = self.digest()
        self._dirty()
        self.cluster = other.cluster
        self.vouched |= other.vouched
        for incarnation_id, sponsors in other.admitted.items():
            self.admitted[incarnation_id] = (
                self.admitted.get(incarnation_id, frozenset()) | sponsors
            )
        for incarnation_id, why in other.removed.items():
            # Both sides decided to remove it; keep the stronger reason.
            if self.removed.get(incarnation_id) != EXPELLED:
                self.removed[incarnation_id] = why
        for key, voters in other.votes.items():
            self.votes.setdefault(key, set()).update(voters)
        for key, (made, withdrawn) in other.accusations.items():
            mine = self.accusations.get(key, (0, 0))
            self.accusations[key] = (max(made, mine[0]), max(withdrawn, mine[1]))
        self.decide()
        return self.digest() != before

    def decide(self) -> bool:
        """Apply the voting and sponsor rules until nothing changes.

        Returns:
            True if anything was admitted or removed.
        """
        self._dirty()
        changed = False
        while True:
            self._dirty()
            members = self.members()
            # Only members a majority vouched for vote and count: an incarnation one
            # member admitted cannot help two sides of a split each find a majority.
            # If none is left (each restarted or left in turn), all members vote.
            voting = (members & self.vouched) or members
            quorum = len(voting) // 2 + 1
            # Vouch first: an incarnation a majority sponsored votes in what follows.
            newly = {
                i
                for i in members - self.vouched
                if len(self.admitted[i] & voting) >= quorum and voting != members
            }
            if newly:
                self.vouched |= newly
                continue
            step = False
            for (what, target), voters in sorted(self.votes.items()):
                if len(voters & voting) < quorum:
                    continue
                if what == "admit" and target not in self.admitted and target not in self.removed:
                    self.admitted[target] = frozenset(voters & voting)
                    self.vouched.add(target)
                    step = True
                    break  # the member set changed: recount
            if not step:
                standing = [
                    (v, t) for (v, t), (m, w) in self.accusations.items() if m > w and v in voting
                ]
                # A strict majority of all members, not of the voting ones: a member
                # replaced by an incarnation not vouched for yet (a restart heard by
                # one side just as a split heals) must not shrink the count, or one
                # half of an even split becomes a majority of what is left.
                majority = len(members) // 2 + 1
                # A member that a majority of the members stands accusing (whatever
                # accuses those) is cut off from most of the cluster, or dead: its
                # own accusations no longer shield their targets. Else a member that
                # accused others (over a one-way link, or during a split) and then
                # died for good would keep their accusations of it from counting, and
                # stay a member, holding tombstones back, forever. SWIM's refutation
                # in reverse: the accuser is refuted by a majority not hearing it.
                # Halves of an even split are no majority, and members of a split
                # into three or more are each accused by a majority: every accusation
                # is then disregarded, and they still cancel out.
                silent = self.silent or _never
                counts: dict[str, int] = {}
                for v, t in standing:
                    if not silent(v):
                        counts[t] = counts.get(t, 0) + 1
                suspects = {t for t, n in counts.items() if n >= majority}
                standing = [(v, t) for v, t in standing if v not in suspects]
                accused = {t for _, t in standing}
                for target in sorted({t for _, t in standing} & members):
                    # Accusers this replica still hears: a member cut off from it
                    # (a split just began) may have heard the target again and
                    # withdrawn, and that withdrawal cannot reach us. Counting its
                    # old accusation would let a minority of one, plus accusations
                    # its side never saw withdrawn, expel a member of the majority.
                    accusers = {
                        v for v, t in standing if t == target and v not in accused and not silent(v)
                    }
                    if len(accusers) >= max(quorum, majority) and voting - {target}:
                        self.removed[target] = EXPELLED
                        step = True
                        break
            if not step:
                by_name: dict[str, str] = {}
                for incarnation_id in sorted(members):
                    sponsors = self.admitted[incarnation_id]
                    if incarnation_id not in self.vouched and all(
                        self.removed.get(s) == EXPELLED for s in sponsors
                    ):
                        self.removed[incarnation_id] = EXPELLED
                        step = True
                        continue
                    # Two members of one name (admitted by different members at
                    # once): keep the greater id; the other learns it and joins again.
                    name = name_of(incarnation_id)
                    other = by_name.get(name)
                    if other is not None:
                        self.removed[min(other, incarnation_id)] = REPLACED
                        step = True
                    by_name[name] = max(other or incarnation_id, incarnation_id)
            if not step:
                self._compact()
                return changed
            changed = True

    def _compact(self) -> None:
        """Forget what no rule will read again, so the state stays O(members): votes
        already decided, and the sponsors of incarnations vouched for."""
        for incarnation_id in self.vouched:
            if self.admitted.get(incarnation_id):
                self.admitted[incarnation_id] = frozenset()
        for key in [k for k in self.votes if k[1] in self.removed or k[1] in self.admitted]:
            del self.votes[key]
        for pair in [p for p in self.accusations if p[0] in self.removed or p[1] in self.removed]:
            del self.accusations[pair]
        self._dirty()

    # -- wire form -----------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """A CBOR-ready, canonical (sorted) form."""
        return [
            self.cluster,
            sorted([i, sorted(sponsors)] for i, sponsors in self.admitted.items()),
            sorted(self.removed.items()),
            sorted([what, target, sorted(voters)] for (what, target), voters in self.votes.items()),
            sorted(self.vouched),
            sorted([v, t, m, w] for (v, t), (m, w) in self.accusations.items()),
        ]

    @classmethod
    def from_wire(cls, obj: object) -> Membership:
        """Rebuild from `to_wire`'s form.

        Raises:
            ValueError: ``obj`` is not of that shape.
        """
        if type(obj) is not list or len(obj) != 6:
            raise ValueError(
                "membership: expected [cluster, admitted, removed, votes, vouched, accusations]"
            )
        cluster, admitted, removed, votes, vouched, accusations = obj
        if type(accusations) is not list:
            raise ValueError("membership: accusations is not a list")
        if not _strings(vouched):
            raise ValueError("membership: vouched is not a list of str")
        if cluster is not None and type(cluster) is not str:
            raise ValueError("membership: cluster is not a str")
        result = cls(cluster=cluster)
        if type(admitted) is not list:
            raise ValueError("membership: admitted is not a list")
        for entry in admitted:
            if type(entry) is not list or len(entry) != 2 or not _strings(entry[1]):
                raise ValueError("membership: expected [incarnation, [sponsor, ...]]")
            if type(entry[0]) is not str:
                raise ValueError("membership: an incarnation id is not a str")
            result.admitted[entry[0]] = frozenset(entry[1])
        for pair in _pairs(removed):
            result.removed[pair[0]] = pair[1]
        if type(votes) is not list:
            raise ValueError("membership: votes is not a list")
        for vote in votes:
            if (
                type(vote) is not list
                or len(vote) != 3
                or vote[0] != "admit"
                or type(vote[1]) is not str
                or not _strings(vote[2])
            ):
                raise ValueError("membership: malformed vote")
            result.votes.setdefault((vote[0], vote[1]), set()).update(vote[2])
        result.vouched.update(vouched)
        for entry in accusations:
            if (
                type(entry) is not list
                or len(entry) != 4
                or not all(type(x) is str for x in entry[:2])
                or not all(type(x) is int and 0 <= x < 2**32 for x in entry[2:])
            ):
                raise ValueError("membership: malformed accusation")
            result.accusations[(entry[0], entry[1])] = (entry[2], entry[3])
        if any(why not in (REPLACED, EXPELLED, LEFT) for why in result.removed.values()):
            raise ValueError("membership: unknown removal reason")
        if cluster is None and (
            result.admitted or result.removed or result.votes or result.accusations
        ):
            raise ValueError("membership: entries without a cluster")
        return result


def _never(_: str) -> bool:
    return False


def _strings(obj: object) -> bool:
    return type(obj) is list and all(type(x) is str for x in obj)


def _pairs(obj: object) -> Iterable[list[str]]:
    if type(obj) is not list:
        raise ValueError("membership: expected a list of pairs")
    for pair in obj:
        if (
            type(pair) not in (list, tuple)
            or len(pair) != 2
            or not all(type(s) is str for s in pair)
        ):
            raise ValueError("membership: expected [str, str] pairs")
        yield pair
