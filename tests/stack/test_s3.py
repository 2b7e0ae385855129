"""S3 from the local stack, through Apache Beam's own S3 filesystem."""

import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions


def test_beam_filesystem_write_then_read(s3_config):
    FileSystems.set_options(PipelineOptions(s3_config["pipeline_args"]))
    path = f"s3://{s3_config['bucket']}/stack-test/{uuid.uuid4().hex}.txt"

    with FileSystems.create(path) as handle:
        handle.write(b"hello from riskpipe\n")
    with FileSystems.open(path) as handle:
        content = handle.read()
    FileSystems.delete([path])

    assert content == b"hello from riskpipe\n"


def test_pipeline_writes_text_files_to_s3(s3_config):
    prefix = f"s3://{s3_config['bucket']}/stack-test/{uuid.uuid4().hex}/part"
    options = PipelineOptions(s3_config["pipeline_args"])

    with beam.Pipeline(options=options) as pipeline:
        _ = pipeline | beam.Create(["a", "b", "c"]) | beam.io.WriteToText(prefix)

    FileSystems.set_options(options)
    files = [m.path for m in FileSystems.match([prefix + "*"])[0].metadata_list]
    lines = set()
    for path in files:
        with FileSystems.open(path) as handle:
            lines.update(handle.read().decode().split())
    FileSystems.delete(files)
    assert lines == {"a", "b", "c"}
