"""The benchmark harness behind ``bench/run_all.py``: a whole stack of real processes on loopback, simulated agents
speaking the agent protocol over HTTP, the scenarios of issue 9, and the report (JSON, markdown, plots)."""
