"""A bad setting ends the job before it starts, with one line naming the setting."""

import subprocess
import sys

import pytest

from stack import config


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--mongo_uri=notauri", "riskpipe: error: mongo: invalid URI 'notauri' (--mongo_uri)"),
        ("--mongo_uri=mongodb://127.0.0.1:1", "riskpipe: error: mongo: cannot reach"),
        ("--s3_bucket=no-such-bucket", "riskpipe: error: s3: bucket 'no-such-bucket' not found"),
        ("--s3_endpoint_url=http://127.0.0.1:1", "riskpipe: error: s3: cannot reach"),
        ("--transactions_topic=no-such-topic", "riskpipe: error: kafka: topic(s) no-such-topic"),
    ],
)
def test_bad_setting_is_one_line(stack_up, flag, expected):
    stack_up("kafka", "postgres", "mongo", "s3")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.main", flag],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " WARNING " not in line]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--counterparty_shards=0",
         "error: argument --counterparty_shards: must be >= 1, got '0'"),
        ("--validator_batch_size=many",
         "error: argument --validator_batch_size: not a whole number: 'many'"),
        ("--model_path=/no/such/model",
         "riskpipe: error: model: /no/such/model (--model_path) is not a model artifact"),
    ],
)
def test_a_bad_flag_is_named_before_any_service_is_contacted(flag, expected):
    # Kafka, the first service the reachability checks contact, is given where nothing
    # listens: reaching the checks would end with "kafka: cannot reach" instead.
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.main", "--kafka_bootstrap=127.0.0.1:1", flag],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "kafka" not in proc.stderr and "Traceback" not in proc.stderr
