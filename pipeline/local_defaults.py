"""Where the local stack (`make up`) listens: the defaults every riskpipe command falls back on.

These credentials work only against the local stack. Real deployments set the environment
variables named in each command's ``--help`` (``RISKPIPE_PG_DSN``, ``RISKPIPE_MONGO_URI``,
``RISKPIPE_VALIDATOR_API_KEY``, ...).
Kept free of heavy imports so the simulator and the validator can use it cheaply.
"""

LOCAL_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_PG_DSN = "postgresql://riskpipe:riskpipe@127.0.0.1:5432/riskpipe"
LOCAL_MONGO_URI = "mongodb://127.0.0.1:27017"
LOCAL_S3_ENDPOINT = "http://127.0.0.1:9000"
LOCAL_S3_ACCESS_KEY = "riskpipe"
LOCAL_S3_SECRET_KEY = "riskpipe-secret"
LOCAL_VALIDATOR_URL = "http://127.0.0.1:8000"
# The key the local stack's validator requires (X-API-Key), and the job sends by default.
LOCAL_VALIDATOR_API_KEY = "riskpipe-local-validator-key"
