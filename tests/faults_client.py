"""The fault suite's load: a bounded number of requests, in a bounded time, from a process of its own.

    python faults_client.py PORT COUNT SECONDS THREADS SEED OUT.json

Each request is ``GET /r/<n>`` (now and then ``/reload/<n>``) on a connection of its own, with
``X-Forwarded-For`` naming one of ``CLIENTS``; its number, kind, client and status (or the error
it met) go to OUT.json, a list of records.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import sys
import threading
import time

#: The clients a request comes from (through the trusted proxy 127.0.0.1).
CLIENTS = {
    "blocked": "10.53.105.7",  # in the DENY list (and the ALLOW list) in every version
    "stranger": "1.2.3.4",  # in no list: denied by the final 'all'
    "named": "10.99.0.1",  # what the DENY host name resolves to; in no ALLOW list either
    "friend": "172.16.5.5",  # in the ALLOW list in every version, in no DENY list
}
#: How often each kind of request is sent (reloads come from the friend).
WEIGHTS = {"blocked": 5.0, "stranger": 5.0, "named": 3.0, "friend": 5.0, "reload": 0.3}


def main(argv: list[str]) -> int:
    port, count, seconds, threads = int(argv[1]), int(argv[2]), float(argv[3]), int(argv[4])
    seed, out = argv[5], argv[6]
    numbers = itertools.count()
    records: list[dict[str, object]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())

    def send(rng: random.Random) -> None:
        while time.monotonic() < deadline:
            with lock:
                n = next(numbers)
            if n >= count:
                return
            kind = rng.choices(kinds, weights)[0]
            client = CLIENTS["friend" if kind == "reload" else kind]
            path = f"/reload/{n}" if kind == "reload" else f"/r/{n}"
            record: dict[str, object] = {"n": n, "kind": kind, "client": client, "path": path}
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path, headers={"X-Forwarded-For": client, "Connection": "close"})
                response = conn.getresponse()
                response.read()
                conn.close()
                record["status"] = response.status
            except OSError as exc:
                record["error"] = repr(exc)
            with lock:
                records.append(record)

    workers = [threading.Thread(target=send, args=(random.Random(f"{seed}-{i}"),)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(records, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
