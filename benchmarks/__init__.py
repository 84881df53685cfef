"""The wsregistry benchmark suite: fan-out, slow consumers, churn, memory, cross-process.

Run it with ``python -m benchmarks`` (``--quick``, the default, or ``--full``). Every
server in the suite runs in its own process, driven by the same load client
process (``benchmarks.client``) over loopback, so the numbers of one run can be
compared with each other.
"""
