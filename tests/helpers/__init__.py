"""Helpers shared by the test modules: workloads run in child processes
(`writer`) and file-tree snapshots (`tree`)."""
