"""riskpipe: real-time risk and fraud scoring of bank transactions on Apache Beam."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def pinned_versions() -> dict:
    """Reads versions.env, the one file that pins Beam, Flink and Kafka."""
    versions = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


BEAM_VERSION = pinned_versions()["BEAM_VERSION"]

setup(
    name="riskpipe",
    version="0.1.0",
    description="Real-time risk and fraud pipeline for banking transactions (Apache Beam)",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipeline*", "simulator*", "validator*"]),
    package_data={"validator": ["*.yaml"]},
    install_requires=[
        f"apache-beam[gcp,aws]=={BEAM_VERSION}",
        "confluent-kafka>=2.6,<3",
        "psycopg2-binary>=2.9,<3",
        "pymongo>=4.6,<5",
        "boto3>=1.34",
        "faker>=30",
        "orjson>=3.9",
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "prometheus-client>=0.20",
        "pyyaml>=6",
        "requests>=2.31",
        "sqlalchemy>=2",
        # The fraud model (models/), when --model_path names one: it runs in the SDK workers.
        "lightgbm>=4.5,<5",
    ],
    extras_require={
        # make train / make evaluate: the pictures of the evaluation.
        "ml": [
            "matplotlib>=3.8",
        ],
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "httpx>=0.27",
            "duckdb>=1.0",
            "moto[server]>=5",
            "pytest-xdist>=3.5",
        ],
        # The peers `make bench` compares the job with (tools/quix_peer.py). quixstreams 3.28
        # requires confluent-kafka < 2.13.
        "bench": [
            "quixstreams>=3.28,<3.29",
        ],
    },
    entry_points={
        "console_scripts": [
            "riskpipe-simulator=simulator.__main__:main",
            "riskpipe-validator=validator.__main__:main",
        ],
    },
)
