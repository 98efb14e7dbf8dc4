"""A sender process for the fleet tests: ``python -m tests.support.alert_sender DB_URL NAME``.

Runs an AlertSender (short timeout and lease) until killed or until stdin closes.
"""

from __future__ import annotations

import sys
import threading

from db import open_store
from runner.check.policy import AddressPolicy
from runner.jobs.alerts import AlertSender


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    store = open_store(url, migrate=False)
    sender = AlertSender(store, AddressPolicy(), worker=name, poll=0.05, timeout=1.0, lease=1.0,
                         retry_initial=0.05, retry_max=0.2).start()
    print("ready", flush=True)
    threading.Thread(target=sys.stdin.read, daemon=True).run()  # returns when stdin closes
    sender.stop()
    store.close()


if __name__ == "__main__":
    main()
