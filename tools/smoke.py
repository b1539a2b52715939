"""`make smoke`: the conformance checks (``alive-harness``) against a server.

With ALIVE_ADDR set, it checks that running server (tokens from ALIVE_TOKEN / ALIVE_TOKEN2,
or the dev token in ALIVE_DATA_DIR); otherwise it starts a server of its own on a free port
with a temporary data directory, checks it as two users, and tears it down afterwards.
"""

from __future__ import annotations

import os
import sys

from alive_service import conformance
from tools.harness import temporary_server


def main() -> None:
    addr = os.environ.get("ALIVE_ADDR")
    if addr:
        from alive_service.client import default_token

        results = conformance.run(addr, default_token(), os.environ.get("ALIVE_TOKEN2"))
    else:
        with temporary_server() as server:
            print(f"started a server at {server.addr} (data in {server.data_dir})")
            results = conformance.run(server.addr, server.token("smoke"),
                                      server.token("smoke-other"))
            addr = server.addr
    conformance.print_table(results, f"smoke: {addr}")
    sys.exit(1 if any(r.status == "fail" for r in results) else 0)


if __name__ == "__main__":
    main()
