"""The control socket: a running `serve` does `issue` and `revoke SERIAL` for the CLI.

A one-shot CLI process would import SQLAlchemy, redis-py and pkilint, build pkilint's validator
and open the store for one certificate (about a second of CPU, bench/RESULTS.md "CLI start-up");
`serve` has all of that warm. So when a `serve` runs on the data directory, the CLI reads and
checks its input, sends it over `data_dir/control.sock` and prints what `serve` answers: the same
output, messages and exit code as in process, since the same code (`issue_with`, `revoke_with`)
runs on the other side. Without a `serve` (no socket, or nobody listening) the CLI does the work
itself, as before.

The socket is mode 0600 in the data directory, which also holds the keys: whoever may use it
may run the CA anyway. The wire is one JSON object per line each way, bounded in size and time.
"""

from __future__ import annotations

# A request holds at most a CSR (ca.MAX_CSR_BYTES, 64 KiB) in base64 and a few options.
REQUEST_LIMIT = 256 * 1024
# An answer holds a certificate chain and a few lines of messages.
ANSWER_LIMIT = 1024 * 1024
# How long the server waits for a request line once a client connected.
REQUEST_TIMEOUT = 10.0
# How long the CLI waits for the answer: issuance lints, signs, commits and presigns; a
# revocation also publishes its CRL shard. Generous, like the API's clients.
ANSWER_TIMEOUT = 120.0
