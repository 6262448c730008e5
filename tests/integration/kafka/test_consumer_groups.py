"""python3-confluent-kafka consumer groups: FindCoordinator, JoinGroup,
SyncGroup, Heartbeat, LeaveGroup, OffsetCommit and OffsetFetch as librdkafka
2.0.2 uses them (eager rebalancing, range assignor).

- a 6-partition topic is split between 2, then 3 members (disjoint, covering),
  and re-split when a member leaves;
- committed offsets are where a restarted consumer resumes;
- with manual commits, a clean rebalance neither loses nor duplicates a message.
"""

import collections
import time

import kafka_helpers as kh
from kafka_helpers import (assert_delivered, bound, close_consumer, consume_n, create_topics,
                           make_admin, make_consumer, make_producer, produce_all)

PARTITIONS = 6


class Member:
    """One group member: a subscribed consumer and the assignments it was given."""

    def __init__(self, broker, group, topic, name, commit_on_revoke=False):
        self.name = name
        self.assigned = []  # one sorted partition list per on_assign
        self.commit_on_revoke = commit_on_revoke
        self.consumer = make_consumer(broker, {
            "group.id": group,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
            "partition.assignment.strategy": "range",
            "client.id": name,
        })
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)

    def on_assign(self, consumer, partitions):
        self.assigned.append(sorted(p.partition for p in partitions))

    def on_revoke(self, consumer, partitions):
        if self.commit_on_revoke and partitions:
            commit_sync(consumer)

    def partitions(self):
        return sorted(p.partition for p in self.consumer.assignment())

    def close(self):
        close_consumer(self.consumer)


def commit_sync(consumer):
    """Commits the consumed positions; nothing consumed yet is not an error.

    Kafka's coordinator accepts OffsetCommit from a current-generation member
    while the group is PreparingRebalance (that is how an on_revoke commit
    works); only CompletingRebalance answers REBALANCE_IN_PROGRESS, and a
    member never commits then (it has revoked and waits for SyncGroup).
    """
    try:
        consumer.commit(asynchronous=False)
    except kh.confluent_kafka.KafkaException as e:
        err = e.args[0]
        if err.code() == kh.confluent_kafka.KafkaError._NO_OFFSET:
            return
        if err.code() == kh.confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS:
            raise AssertionError("OffsetCommit refused with REBALANCE_IN_PROGRESS from a "
                                 "current member; Kafka accepts it while PreparingRebalance: "
                                 f"{err}") from e
        raise


def settle(members, sizes, timeout=20):
    """Polls every member until their assignments are disjoint, cover the topic and
    have the given sizes (sorted); returns the assignments or fails."""
    deadline = time.monotonic() + bound(timeout)
    last = None
    while time.monotonic() < deadline:
        for m in members:
            msg = m.consumer.poll(0.05)
            assert msg is None or not msg.error(), f"{m.name}: {msg.error()}"
        last = [m.partitions() for m in members]
        flat = [p for a in last for p in a]
        if sorted(flat) == list(range(PARTITIONS)) and sorted(map(len, last)) == sorted(sizes):
            return last
    raise AssertionError(f"group did not settle on sizes {sizes} within {bound(timeout):.0f} s; "
                         f"last assignments {dict(zip((m.name for m in members), last))}")


def make_topic(broker, topic, messages=0):
    create_topics(make_admin(broker), [(topic, PARTITIONS)])
    if messages:
        sent = [{"key": b"key-%d" % i, "value": b"%d" % i} for i in range(messages)]
        assert_delivered(produce_all(make_producer(broker), topic, sent))


def test_group_splits_partitions_as_members_join(broker):
    make_topic(broker, "split")
    members = [Member(broker, "g-split", "split", "c1")]
    try:
        assert settle(members, [6]) == [list(range(6))]
        members.append(Member(broker, "g-split", "split", "c2"))
        two = settle(members, [3, 3])
        assert not set(two[0]) & set(two[1])
        members.append(Member(broker, "g-split", "split", "c3"))
        three = settle(members, [2, 2, 2])
        assert sorted(p for a in three for p in a) == list(range(6))
        # Every member went through a rebalance for each join.
        assert len(members[0].assigned) >= 3, members[0].assigned
        assert len(members[1].assigned) >= 2, members[1].assigned
    finally:
        for m in members:
            m.close()


def test_group_rebalances_when_a_member_leaves(broker):
    make_topic(broker, "leave")
    members = [Member(broker, "g-leave", "leave", f"c{i}") for i in range(3)]
    try:
        settle(members, [2, 2, 2])
        leaving = members.pop()
        leaving.close()  # LeaveGroup: the others rebalance without waiting for a timeout
        start = time.monotonic()
        settle(members, [3, 3], timeout=5.5)  # well under session.timeout.ms (6 s) + rejoin
        assert time.monotonic() - start < bound(5.5)
    finally:
        for m in members:
            m.close()


def test_committed_offsets_resume_after_consumer_restart(broker):
    create_topics(make_admin(broker), [("resume", 1)])
    sent = [{"value": b"m%d" % i} for i in range(10)]
    assert_delivered(produce_all(make_producer(broker), "resume", sent))

    first = Member(broker, "g-resume", "resume", "first")
    try:
        got = consume_n(first.consumer, 4, allow_more=True)
        assert [m.offset() for m in got] == [0, 1, 2, 3]
        first.consumer.commit(message=got[-1], asynchronous=False)  # commits offset 4
    finally:
        first.close()

    probe = make_consumer(broker, {"group.id": "g-resume"})
    try:
        TP = kh.confluent_kafka.TopicPartition
        committed = probe.committed([TP("resume", 0)], timeout=bound(10))
        assert committed[0].offset == 4, committed
    finally:
        close_consumer(probe)

    second = Member(broker, "g-resume", "resume", "second")
    try:
        got = consume_n(second.consumer, 6)
        assert [m.offset() for m in got] == [4, 5, 6, 7, 8, 9]
        assert [m.value() for m in got] == [b"m%d" % i for i in range(4, 10)]
    finally:
        second.close()


def test_no_loss_or_duplicate_across_rebalance_with_manual_commits(broker):
    make_topic(broker, "exactly", messages=3000)
    seen = collections.Counter()  # (partition, offset) -> times processed
    members = [Member(broker, "g-exact", "exactly", "c1", commit_on_revoke=True)]

    def poll_round(member):
        batch = member.consumer.consume(num_messages=50, timeout=0.05)
        good = []
        for msg in batch:
            assert not msg.error(), f"{member.name}: {msg.error()}"
            good.append(msg)
        for msg in good:
            seen[(msg.partition(), msg.offset())] += 1
        if good:
            commit_sync(member.consumer)  # processed, then committed, before the next poll

    try:
        deadline = time.monotonic() + bound(15)
        while sum(seen.values()) < 1000:
            assert time.monotonic() < deadline, f"c1 got {sum(seen.values())} of 1000"
            poll_round(members[0])
        # Two more members join while c1 is mid-stream; more messages arrive too.
        members.append(Member(broker, "g-exact", "exactly", "c2", commit_on_revoke=True))
        members.append(Member(broker, "g-exact", "exactly", "c3", commit_on_revoke=True))
        more = [{"key": b"late-%d" % i, "value": b"late %d" % i} for i in range(1000)]
        assert_delivered(produce_all(make_producer(broker), "exactly", more))
        deadline = time.monotonic() + bound(25)
        while len(seen) < 4000 or sorted(map(len, (m.partitions() for m in members))) != [2, 2, 2]:
            assert time.monotonic() < deadline, \
                f"{len(seen)} of 4000 distinct messages; assignments " \
                f"{[m.partitions() for m in members]}"
            for m in members:
                poll_round(m)
        for m in members:  # nothing further may arrive
            for _ in range(3):
                poll_round(m)
        assert all(len(m.assigned) >= 1 for m in members[1:])
        dups = {k: n for k, n in seen.items() if n > 1}
        assert not dups, f"{len(dups)} messages processed twice, e.g. {list(dups.items())[:5]}"
        assert len(seen) == 4000
        per_partition = collections.defaultdict(list)
        for p, o in seen:
            per_partition[p].append(o)
        for p, offs in per_partition.items():
            assert sorted(offs) == list(range(len(offs))), f"gap in partition {p}"
    finally:
        for m in members:
            m.close()
