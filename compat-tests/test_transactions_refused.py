"""Transactions are not implemented yet: weir refuses a transactional id with a
non-retriable error (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the one code librdkafka
and the Java clients treat as fatal when looking up a transaction coordinator), so
clients fail at once instead of retrying until their timeout. The idempotent
producer, which uses InitProducerId without a transactional id, keeps working."""

from __future__ import annotations

import time

import pytest

from lib.clients import JAVA_ENV, client_conf, create_topic, java_available, java_tool, produce, run


def test_init_transactions_fails_fast(weir):
    from confluent_kafka import KafkaError, KafkaException, Producer

    p = Producer(client_conf(weir.bootstrap, **{"transactional.id": "weir-compat-txn-refused"}))
    start = time.monotonic()
    with pytest.raises(KafkaException) as info:
        p.init_transactions(10)
    elapsed = time.monotonic() - start
    err = info.value.args[0]
    assert elapsed < 5, f"init_transactions took {elapsed:.1f}s to fail: {err}"
    assert err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, err
    assert err.fatal() and not err.retriable(), err
    assert "not supported by this broker" in err.str(), err


def test_idempotent_producer_still_works(weir, topic):
    create_topic(weir.bootstrap, topic)
    delivered = produce(weir.bootstrap, topic, [{"value": b"v%d" % i} for i in range(5)],
                        conf={"enable.idempotence": True, "acks": "all"})
    assert [d.offset for d in delivered] == list(range(5))


@pytest.mark.java
@pytest.mark.skipif(not java_available(), reason="java not on PATH (../shared/kafka-tools/install-deps.sh installs it)")
def test_kafka_transactions_describe_exits(weir):
    tool = java_tool("kafka-transactions")
    assert tool.exists(), f"{tool} missing"
    start = time.monotonic()
    p = run([str(tool), "--bootstrap-server", weir.bootstrap, "describe", "--transactional-id", "x"],
            timeout=30, check=False, env=JAVA_ENV)
    elapsed = time.monotonic() - start
    assert p.returncode != 0, f"describe succeeded:\n{p.stdout}\n{p.stderr}"
    # The Java Admin's own text for TRANSACTIONAL_ID_AUTHORIZATION_FAILED (CoordinatorStrategy).
    assert "failed due to authorization failure" in p.stdout + p.stderr, f"after {elapsed:.1f}s:\n{p.stdout}\n{p.stderr}"
