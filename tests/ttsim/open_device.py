"""Open one simulated device with the real tt-metal, for `cargo xtask sim`.

    open_device.py --ready PATH [--close] [--hold-timeout SECONDS]

The environment (TT_METAL_SIMULATOR, TT_METAL_RUNTIME_ROOT, TT_METAL_CACHE, ...) is the caller's.
Runs `ttnn.open_device(device_id=0)`, then writes PATH atomically: one JSON object with its pid
and timings. Then:
  * --close: closes the device and exits 0 (slow dispatch: close works on the simulator);
  * otherwise waits to be killed (fast dispatch with stub dispatch kernels: close never returns
    on the simulator, so the caller SIGKILLs this process once PATH exists). Exits 4 if nobody
    did within --hold-timeout seconds.
"""

import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready", required=True)
    ap.add_argument("--close", action="store_true")
    ap.add_argument("--hold-timeout", type=float, default=300.0)
    args = ap.parse_args()

    t0 = time.monotonic()
    import ttnn  # noqa: E402 -- the environment is final before this

    t1 = time.monotonic()
    device = ttnn.open_device(device_id=0)
    t2 = time.monotonic()
    with open(args.ready + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "import_s": t1 - t0, "open_s": t2 - t1}, f)
    os.replace(args.ready + ".tmp", args.ready)
    print("open_device.py: device 0 open after %.2f s" % (t2 - t1), file=sys.stderr, flush=True)
    if args.close:
        ttnn.close_device(device)
        print("open_device.py: device 0 closed", file=sys.stderr, flush=True)
        return 0
    time.sleep(args.hold_timeout)
    print("open_device.py: nobody killed me", file=sys.stderr, flush=True)
    return 4


if __name__ == "__main__":
    sys.exit(main())
