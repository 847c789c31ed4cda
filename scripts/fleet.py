#!/usr/bin/env python3
"""A fleet of registry clients for scripts/bench-fleet.sh: N threads, each with its own HTTP
connection, pulling at the same moment from HOST (plain HTTP), every byte hashed and compared
with its digest.

  fleet.py HOST N layer REPO DIGEST SIZE    every client GETs the same blob
  fleet.py HOST N images IMAGES.TSV         client i pulls image i mod count: its manifest by
                                            tag, an index's children by digest, then every
                                            config and layer

Prints one line: `clients N requests R bytes B seconds S mibps M failures F`. Exits 1 when any
client got a wrong byte, a short body or an error status (after printing it).
"""
import hashlib
import http.client
import json
import sys
import threading
import time

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
INDEXES = ("application/vnd.oci.image.index.v1+json",
           "application/vnd.docker.distribution.manifest.list.v2+json")


class Client:
    def __init__(self, host):
        self.host = host
        self.conn = http.client.HTTPConnection(host, timeout=600)
        self.requests = 0
        self.bytes = 0

    def get(self, path, accept=None):
        """GET path; returns (status, content-type, sha256 hex, length, body or None). The
        body is kept only for manifests (small); blobs are hashed as they stream."""
        headers = {"Accept": accept} if accept else {}
        for attempt in range(3):
            try:
                self.conn.request("GET", path, headers=headers)
                r = self.conn.getresponse()
                break
            except (ConnectionError, http.client.HTTPException):
                # A server that closed an idle keep-alive connection: open a new one.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, timeout=600)
                if attempt == 2:
                    raise
        self.requests += 1
        h = hashlib.sha256()
        keep = [] if accept else None
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if keep is not None:
                keep.append(chunk)
        self.bytes += n
        body = b"".join(keep) if keep is not None else None
        return r.status, r.getheader("Content-Type", ""), h.hexdigest(), n, body

    def blob(self, repo, digest, size):
        status, _, hexd, n, _ = self.get(f"/v2/{repo}/blobs/{digest}")
        if status != 200 or n != size or "sha256:" + hexd != digest:
            raise RuntimeError(f"{repo}@{digest}: status {status}, {n} of {size} bytes, "
                               f"sha256:{hexd}")

    def image(self, repo, ref, digest):
        status, ctype, hexd, _, body = self.get(f"/v2/{repo}/manifests/{ref}", ACCEPT)
        if status != 200 or "sha256:" + hexd != digest:
            raise RuntimeError(f"{repo}:{ref}: status {status}, sha256:{hexd}, want {digest}")
        m = json.loads(body)
        if m.get("mediaType", ctype) in INDEXES or "manifests" in m:
            for c in m["manifests"]:
                self.image(repo, c["digest"], c["digest"])
            return
        for d in [m["config"]] + m.get("layers", []):
            self.blob(repo, d["digest"], d["size"])


def main():
    host, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "layer":
        repo, digest, size = sys.argv[4], sys.argv[5], int(sys.argv[6])
        work = [lambda c: c.blob(repo, digest, size)] * n
    elif mode == "images":
        images = []
        with open(sys.argv[4]) as f:
            for line in f:
                _, repo, tag, digest, _ = line.rstrip("\n").split("\t")
                images.append((repo, tag, digest))
        work = [(lambda c, im=images[i % len(images)]: c.image(*im)) for i in range(n)]
    else:
        sys.exit(f"unknown mode {mode}")
    clients = [Client(host) for _ in range(n)]
    failures = []
    start = threading.Barrier(n + 1)

    def run(c, job):
        start.wait()
        try:
            job(c)
        except Exception as e:  # every failure is reported, none stops the others
            failures.append(str(e))

    threads = [threading.Thread(target=run, args=(c, j)) for c, j in zip(clients, work)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    total = sum(c.bytes for c in clients)
    reqs = sum(c.requests for c in clients)
    print(f"clients {n} requests {reqs} bytes {total} seconds {secs:.2f} "
          f"mibps {total / secs / 1048576:.1f} failures {len(failures)}")
    for f in failures[:5]:
        print("failure:", f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
