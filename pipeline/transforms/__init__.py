"""The job's transforms. Importing the package registers the records' coders
(:mod:`pipeline.transforms.coders`)."""

from pipeline.transforms import coders as _coders  # noqa: F401  (registers the coders)
