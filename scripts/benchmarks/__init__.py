"""The benchmarks: a runner, one module per measurement, and the report.

runner.py parses the options and runs the measurements asked for; common.py holds the mitmdump
processes and the load they share; addons/ are the variants and helpers mitmdump loads with -s;
standalone/ are the load generator and the peers, each run in a process of its own.
"""
