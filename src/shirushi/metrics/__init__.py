"""Prometheus metrics and the health endpoints (`metrics.listen`).

`registry` holds the metric definitions and the multiprocess directory that lets every process
of a `serve` (backend, presign workers, responder workers) count into one exposition; `http`
serves `/metrics`, `/healthz` and `/readyz`; `scrape` computes the gauges that are read at
scrape time from the store, the CRL files and Redis.
"""
