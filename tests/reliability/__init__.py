"""Reliability harness: fault injection and simulated power loss.

`faultfs` holds the operating-system doubles (`FaultOS`, `CrashOS`) and
the tree snapshot; `crashcheck` the recorded workloads and the checker
that the power-loss and mutant tests share.
"""
