"""``loadtest-core serve``: gRPC and HTTP over one engine, a ticker, graceful shutdown."""
