"""Developer tools around the riskpipe job: benchmarks, chaos runs, the demo, evaluation and
reconciliation. They drive the local stack (``stack``) and the job (``pipeline``); the job
imports nothing from here."""
