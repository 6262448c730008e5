"""KafkaJS 2.2.4 (npm, node/): producer.send and a consumer in a group reading
until it has every message; admin createTopics/listTopics/deleteTopics.

The scripts in node/ print a JSON result on stdout and log to stderr; each
runs under its own time limit and a subprocess timeout."""

import json

from kafka_helpers import bootstrap, bound, run_node


def node_json(script, args, limit_s=20):
    r = run_node(script, list(args) + [int(bound(limit_s) * 1000)], timeout=limit_s + 5)
    assert r.returncode == 0, f"node {script} exited {r.returncode}\nstdout:\n{r.stdout}\n" \
                              f"stderr:\n{r.stderr[-6000:]}"
    lines = r.stdout.strip().splitlines()
    assert lines, f"node {script} printed no result\nstderr:\n{r.stderr[-6000:]}"
    return json.loads(lines[-1])


def test_kafkajs_send_and_group_consume(broker):
    res = node_json("produce_consume.js", [bootstrap(broker), "kjs", 1000, "kjs-group"])
    assert res["sent"] == 1000
    assert res["distinct"] == 1000, res
    assert res["duplicates"] == 0, res
    assert res["received"] == 1000, res
    assert res["partitions"] == [0], res
    assert res["offsetsDense"] and res["valuesMatch"], res


def test_kafkajs_admin_create_list_delete(broker):
    res = node_json("admin.js", [bootstrap(broker), "kjs-admin", 3])
    assert res == {
        "created": True,
        "listedAfterCreate": True,
        "partitions": [0, 1, 2],
        "createdAgain": False,  # KafkaJS answers false for TOPIC_ALREADY_EXISTS
        "listedAfterDelete": False,
    }
