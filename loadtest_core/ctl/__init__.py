"""``loadtest-core test|agent|config``: the command line against a running ``serve``.

Importing these modules needs nothing beyond the core, so ``loadtest-core
--help`` and ``diagram`` work without the ``grpc`` extra; the stubs and
``loadtest_core.client`` are imported when a command runs.
"""
