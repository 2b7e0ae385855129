"""The validator's API key on the job's side: the option, the graph, the preflight check.

The stack's side (its validator requires the key) is in tests/stack/test_supervisor.py, which
starts its own validator; the service's own checks are in tests/validator.
"""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.utils import proto_utils

from pipeline import main
from pipeline.errors import ConfigurationError
from pipeline.local_defaults import LOCAL_VALIDATOR_API_KEY
from pipeline.options import ValidatorOptions
from pipeline.preflight import check_validator
from stack import config
from validator.process import ValidatorProcess, free_port

# A real validator process (started here) answers these tests.
pytestmark = pytest.mark.services

KEY = "job-key-test"


def test_the_default_is_the_local_stacks_key(monkeypatch):
    monkeypatch.delenv("RISKPIPE_VALIDATOR_API_KEY", raising=False)
    assert ValidatorOptions([]).validator_api_key == LOCAL_VALIDATOR_API_KEY
    assert config.validator_api_key() == LOCAL_VALIDATOR_API_KEY


def test_the_environment_and_the_flag_set_it(monkeypatch):
    monkeypatch.setenv("RISKPIPE_VALIDATOR_API_KEY", "from-env")
    assert ValidatorOptions([]).validator_api_key == "from-env"
    assert ValidatorOptions(["--validator_api_key=from-flag"]).validator_api_key == "from-flag"


def test_help_names_the_variable_and_never_shows_the_key(monkeypatch):
    monkeypatch.setenv("RISKPIPE_VALIDATOR_API_KEY", "do-not-print-me")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.main", "--help"],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--validator_api_key" in done.stdout and "RISKPIPE_VALIDATOR_API_KEY" in done.stdout
    assert "do-not-print-me" not in done.stdout + done.stderr
    assert LOCAL_VALIDATOR_API_KEY not in done.stdout + done.stderr


def _validate_fn(pipeline: beam.Pipeline):
    """The validation step's DoFn as an SDK worker unpickles it from the submitted graph."""
    proto = pipeline.to_runner_api()
    (call,) = [
        t
        for t in proto.components.transforms.values()
        if "ValidateUnidentified/CallValidator/" in t.unique_name
        and t.spec.urn == common_urns.primitives.PAR_DO.urn
    ]
    payload = proto_utils.parse_Bytes(call.spec.payload, beam_runner_api_pb2.ParDoPayload)
    return pickler.loads(payload.do_fn.payload)[0]


def test_the_job_sends_the_key_and_keeps_it_out_of_its_options():
    options = PipelineOptions([f"--validator_api_key={KEY}", "--max_records=1"])
    pipeline = beam.Pipeline(runner="FnApiRunner", options=options)
    main.build(pipeline, options)  # builds the graph; connects to nothing
    assert _validate_fn(pipeline).api_key == KEY
    assert options.view_as(ValidatorOptions).validator_api_key is None
    assert KEY not in str(options.get_all_options())


def test_an_empty_key_sends_none():
    options = PipelineOptions(["--validator_api_key=", "--max_records=1"])
    pipeline = beam.Pipeline(runner="FnApiRunner", options=options)
    main.build(pipeline, options)
    assert _validate_fn(pipeline).api_key is None


@pytest.fixture(scope="module")
def keyed_validator():
    with ValidatorProcess(api_key=KEY) as server:
        yield server


def test_preflight_accepts_the_right_key_and_an_open_validator(keyed_validator):
    check_validator(keyed_validator.url, KEY)
    with ValidatorProcess() as open_server:
        check_validator(open_server.url, KEY)
        check_validator(open_server.url, None)


@pytest.mark.parametrize(
    ("key", "problem"), [("wrong", "refused the API key"), (None, "requires an API key")]
)
def test_preflight_refuses_a_key_the_validator_refuses(keyed_validator, key, problem):
    with pytest.raises(ConfigurationError) as error:
        check_validator(keyed_validator.url, key)
    assert str(error.value) == (
        f"validator: {keyed_validator.url} {problem} (--validator_api_key, env "
        "RISKPIPE_VALIDATOR_API_KEY); every unidentified transaction would go to review"
    )


def test_preflight_only_warns_when_the_validator_is_down(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    check_validator(url, KEY)
    assert f"validator at {url} does not answer" in caplog.text


def test_a_refused_key_ends_the_job_with_one_line(stack_up, keyed_validator):
    stack_up("kafka", "postgres", "mongo", "s3")
    secret = "wrong-and-secret-xyz"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pipeline.main", f"--validator_url={keyed_validator.url}",
            f"--validator_api_key={secret}",
        ],
        cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " WARNING " not in line]
    expected = (
        f"riskpipe: error: validator: {keyed_validator.url} refused the API key "
        "(--validator_api_key, env RISKPIPE_VALIDATOR_API_KEY); every unidentified "
        "transaction would go to review"
    )
    assert lines == [expected]
    assert secret not in proc.stdout + proc.stderr
